"""Never lose a user's data (weightzip side, and what both CLIs share): no file the tool did
not create is replaced or deleted without --force, hidden temporaries never outlive a run
(errors, Ctrl-C, SIGTERM; a kill -9's are removed by the next run), errors name the user's
path in one line, `info` verifies what it shows, and exit statuses mean the same in both
command lines."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from common import REPO, sha256_file, tmpfs, tree_hashes
from wz_helpers import handmade_safetensors

import weightzip
from weightzip.atomic import atomic_folder, atomic_path, check_writable, remove_stale

TMP_GLOB = ".*.tmp"


def cli(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "weightzip", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def one_error_line(r: subprocess.CompletedProcess, prog: str = "weightzip") -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), r.stderr
    return lines[0]


def hidden_temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(TMP_GLOB))


def folder_wz(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"a": 1}')
    (src / "sub" / "w.npy").write_bytes(b"\x93NUMPY" + os.urandom(300))
    return src, weightzip.pack(src, tmp_path / "model.wz")


# ------------------------------------------------------------- no overwrites, no deletions

def test_unpack_into_existing_folder_with_force_deletes_nothing(tmp_path):
    src, wz = folder_wz(tmp_path)
    out = tmp_path / "existing"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "sub" / "keep.bin").write_bytes(b"keep")
    (out / "config.json").write_text("old config")
    r = cli("unpack", wz, "-o", out, "-f", "-q")
    assert r.returncode == 0, r.stderr
    got = tree_hashes(out)
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "keep.bin").read_bytes() == b"keep"
    del got["notes.txt"], got["sub/keep.bin"]
    assert got == tree_hashes(src)  # config.json replaced: it is one the archive restores
    assert hidden_temps(tmp_path) == [] and hidden_temps(out) == []


def test_unpack_into_existing_folder_without_force_refuses_before_writing(tmp_path):
    src, wz = folder_wz(tmp_path)
    out = tmp_path / "existing"
    out.mkdir()
    (out / "config.json").write_text("old config")
    before = tree_hashes(out)
    err = one_error_line(cli("unpack", wz, "-o", out))
    assert "config.json" in err and "--force" in err
    assert tree_hashes(out) == before and hidden_temps(tmp_path) == []
    # no collision: the archive's files are added, nothing else changes
    (out / "config.json").unlink()
    (out / "mine.txt").write_text("x")
    assert cli("unpack", wz, "-o", out, "-q").returncode == 0
    got = tree_hashes(out)
    assert got.pop("mine.txt") and got == tree_hashes(src)


def test_existing_outputs_are_never_replaced_without_force(tmp_path):
    st = tmp_path / "m.safetensors"
    handmade_safetensors(st)
    (tmp_path / "m.safetensors.wz").write_bytes(b"user's file")
    err = one_error_line(cli("pack", st))
    assert "m.safetensors.wz" in err and "--force" in err and ".tmp" not in err
    assert (tmp_path / "m.safetensors.wz").read_bytes() == b"user's file"
    with pytest.raises(FileExistsError):
        weightzip.pack(st)  # the API's default is overwrite=False too
    with pytest.raises(FileExistsError):
        weightzip.save({"a": np.zeros(3, np.float32)}, tmp_path / "m.safetensors.wz")
    assert cli("pack", st, "-f", "-q").returncode == 0
    wz = tmp_path / "m.safetensors.wz"
    # unpack's default output is the original file, which is still there: refused
    err = one_error_line(cli("unpack", wz))
    assert "m.safetensors" in err
    # an existing folder as -o receives the file under its original name
    (tmp_path / "dir").mkdir()
    assert cli("unpack", wz, "-o", tmp_path / "dir", "-q").returncode == 0
    assert sha256_file(tmp_path / "dir" / "m.safetensors") == sha256_file(st)


def test_unpack_without_output_restores_the_original_name(tmp_path):
    st = tmp_path / "model.safetensors"
    handmade_safetensors(st)
    digest = sha256_file(st)
    assert cli("pack", st, "-o", tmp_path / "m.wz", "-q").returncode == 0
    st.unlink()
    r = cli("unpack", tmp_path / "m.wz", "-q")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.wz", "model.safetensors"]
    assert sha256_file(st) == digest
    src, wz = folder_wz(tmp_path)
    os.rename(src, tmp_path / "moved")
    assert cli("unpack", wz, "-q").returncode == 0
    assert tree_hashes(tmp_path / "model") == tree_hashes(tmp_path / "moved")


# ------------------------------------------------------------- info verifies, exit codes

def test_info_verifies_the_payload(tmp_path, small_st_wz):
    blob = bytearray(small_st_wz[1])
    blob[40] ^= 0x10  # inside the first chunk's payload; the index is intact
    p = tmp_path / "bad.wz"
    p.write_bytes(bytes(blob))
    err = one_error_line(cli("info", p))
    assert "checksum" in err.lower() or "corrupt" in err.lower()
    r = cli("info", p, "--no-verify")
    assert r.returncode == 0 and "NOT verified" in r.stdout
    good = tmp_path / "good.wz"
    good.write_bytes(small_st_wz[1])
    r = cli("info", good)
    assert r.returncode == 0 and "all chunks verified" in r.stdout
    assert weightzip.info(good)["verified"] is True


@pytest.mark.parametrize("args", [("pack", "x", "--threads", "0"), ("unpack", "x", "--threads", "-2"),
                                  ("verify", "x", "--threads", "zero"), ("frobnicate",)])
def test_usage_errors_exit_2(args):
    r = cli(*args)
    assert r.returncode == 2 and "usage" in r.stderr


def test_api_rejects_bad_thread_counts(tmp_path):
    st = tmp_path / "m.safetensors"
    handmade_safetensors(st)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            weightzip.pack(st, tmp_path / "o.wz", threads=bad)
    assert not (tmp_path / "o.wz").exists()


def test_missing_input_is_one_line_naming_it(tmp_path):
    err = one_error_line(cli("pack", tmp_path / "nope.safetensors"))
    assert "nope.safetensors" in err


# ------------------------------------------------------------- temporaries

def test_stale_temporaries_of_killed_runs_are_removed(tmp_path):
    dst = tmp_path / "out.wz"
    dead = tmp_path / ".out.wz.~999999999.0123abcd.tmp"  # no such PID
    dead.write_bytes(b"x" * 100)
    alive = tmp_path / f".out.wz.~{os.getpid()}.0123abcd.tmp"  # a live run's: kept
    alive.write_bytes(b"y")
    other = tmp_path / ".other.wz.~999999999.0123abcd.tmp"  # another output's: not ours to judge
    other.write_bytes(b"z")
    legacy = tmp_path / ".out.wz.89abcdef.tmp"  # previous release's naming, an hour old
    legacy.write_bytes(b"w")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    assert sorted(remove_stale(dst)) == sorted([dead, legacy])
    assert alive.exists() and other.exists() and not dead.exists()


def test_atomic_helpers_leave_nothing_on_error(tmp_path):
    dst = tmp_path / "f.bin"
    with pytest.raises(RuntimeError), atomic_path(dst) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "d") as tmp:
        (tmp / "a").write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError) as e:
        check_writable(tmp_path / "no" / "such" / "dir" / "f.bin")
    assert "f.bin" in str(e.value)


def _big_float_file(path: Path, mb: int = 48) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    save_file({"w": rng.standard_normal(mb << 18).astype(np.float32)}, str(path))


def _wait_for_temp(folder: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    t0 = time.time()
    while not hidden_temps(folder):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "no temporary output appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_remove_the_temporary(tmp_path, sig, status):
    src = tmp_path / "big.safetensors"
    _big_float_file(src)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # A background job of a non-interactive shell (CI) starts with SIGINT ignored, and Python
    # then keeps ignoring it: restore the default, as an interactive terminal has it.
    p = subprocess.Popen([sys.executable, "-m", "weightzip", "pack", str(src), "--level", "max", "-q",
                          "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_temp(tmp_path, p)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == status, err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["big.safetensors"]


_SELF_TERM = """
import os, signal, sys, threading, time
from weightzip.atomic import atomic_path
from weightzip.clitools import run

def write():
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"partial")
        print("writing", flush=True)
        time.sleep(60)

def command():
    {call}
    return 0

{entry}
"""


@pytest.mark.parametrize("mode", ["cli", "cli-worker-thread", "library"])
def test_sigterm_removes_open_temporaries_without_raising(tmp_path, mode):
    """The SIGTERM handler removes the open hidden siblings, wherever they are being written
    (another thread too), then ends the process: 143 and one line under a CLI, death by SIGTERM
    in a library caller. It never raises, so it cannot abort inside an extension's C++."""
    call = ("t = threading.Thread(target=write, daemon=True); t.start(); time.sleep(60)"
            if mode == "cli-worker-thread" else "write()")
    entry = "write()" if mode == "library" else "sys.exit(run('weightzip', command, (OSError,)))"
    code = _SELF_TERM.format(call=call, entry=entry)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out.bin")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    assert p.stdout.readline() == "writing\n"
    assert len(hidden_temps(tmp_path)) == 1
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    if mode == "library":
        assert p.returncode == -signal.SIGTERM, err
    else:
        assert (p.returncode, err) == (143, "weightzip: terminated\n")
    assert list(tmp_path.iterdir()) == []


def test_kill_9_leftover_is_removed_by_the_next_run(tmp_path):
    src = tmp_path / "big.safetensors"
    _big_float_file(src, 24)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "weightzip", "pack", str(src), "--level", "max", "-q",
                          "--threads", "1"], env=env)
    _wait_for_temp(tmp_path, p)
    p.kill()
    p.wait(timeout=30)
    assert len(hidden_temps(tmp_path)) == 1  # cannot be caught...
    assert cli("pack", src, "--level", "fast", "-q").returncode == 0
    assert hidden_temps(tmp_path) == []  # ...but the next run on the same output removes it
    assert (tmp_path / "big.safetensors.wz").exists()


# ------------------------------------------------------------- read-only and full folders

def test_read_only_and_full_folders_name_the_users_path(tmp_path):
    st = tmp_path / "m.safetensors"
    _big_float_file(st, 2)
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as ro:
        err = one_error_line(cli("pack", st, "-o", ro / "m.wz"))
        assert str(ro / "m.wz") in err and ".tmp" not in err
    with tmpfs(tmp_path / "full", "64k") as full:
        err = one_error_line(cli("pack", st, "-o", full / "m.wz", "--level", "fast"))
        assert str(full / "m.wz") in err and "no space left on device" in err and ".tmp" not in err
        assert list(full.iterdir()) == []
