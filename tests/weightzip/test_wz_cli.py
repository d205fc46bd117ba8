"""The `weightzip` command line (run as `python -m weightzip`): round trips, info, verify, and
errors reported as exactly one `weightzip: error: ...` line with a non-zero exit status."""
from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from common import assert_cli_error, run_cli, sha256_file

import weightzip


@pytest.fixture
def st_file(tmp_path, small_st_wz):
    p = tmp_path / "m.safetensors"
    p.write_bytes(small_st_wz[0])
    return p


def test_help():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("pack", "unpack", "info", "verify"):
        assert cmd in r.stdout
    for cmd in ("pack", "unpack", "info", "verify"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stderr


def test_console_script_installed():
    exe = Path(sys.executable).parent / "weightzip"
    if not exe.exists():
        pytest.skip("weightzip console script not installed next to this python")
    import subprocess
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "unpack" in r.stdout


def test_pack_unpack_roundtrip(tmp_path, st_file):
    before = sha256_file(st_file)
    r = run_cli("pack", st_file, "-o", tmp_path / "x.wz", "--level", "max", "--threads", "1", "-q", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
    r = run_cli("unpack", tmp_path / "x.wz", "-o", tmp_path / "back.safetensors", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "->" in r.stdout  # a summary line when not quiet
    assert sha256_file(tmp_path / "back.safetensors") == before == sha256_file(st_file)
    # default names, then -f to overwrite
    r = run_cli("pack", st_file.name, "-q", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "m.safetensors.wz").exists(), r.stderr
    r = run_cli("pack", st_file.name, "-q", "-f", "--level", "fast", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    st_file.unlink()
    r = run_cli("unpack", "m.safetensors.wz", "-q", cwd=tmp_path)
    assert r.returncode == 0 and sha256_file(st_file) == before, r.stderr


def test_info_table_and_json(tmp_path, small_st_wz):
    p = tmp_path / "m.safetensors.wz"
    p.write_bytes(small_st_wz[1])
    r = run_cli("info", p)
    assert r.returncode == 0, r.stderr
    for name in small_st_wz[2]:
        assert name in r.stdout
    lines = r.stdout.splitlines()
    total = [ln for ln in lines if ln.startswith("total")]
    assert len(total) == 1 and f"{len(small_st_wz[2])} tensors" in total[0], r.stdout
    r = run_cli("info", p, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {e["name"] for e in d["entries"] if e["kind"] == "tensor"} == set(small_st_wz[2])
    assert d["file_bytes"] == p.stat().st_size and d["total_bytes"] == len(small_st_wz[0])


def test_verify_good_and_corrupt(tmp_path, small_st_wz, st_file):
    good = tmp_path / "good.wz"
    good.write_bytes(small_st_wz[1])
    r = run_cli("verify", good)
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stderr
    r = run_cli("verify", good, st_file)
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stderr
    other = tmp_path / "other.safetensors"
    other.write_bytes(small_st_wz[0][:-1] + bytes([small_st_wz[0][-1] ^ 1]))
    assert_cli_error(run_cli("verify", good, other))
    bad = tmp_path / "bad.wz"
    blob = bytearray(small_st_wz[1])
    blob[len(blob) // 3] ^= 0x08  # in the payload
    bad.write_bytes(bytes(blob))
    assert_cli_error(run_cli("verify", bad))


def _errors(tmp: Path, small_st_wz) -> dict[str, list]:
    (tmp / "m.safetensors").write_bytes(small_st_wz[0])
    (tmp / "m.safetensors.wz").write_bytes(small_st_wz[1])
    (tmp / "plain.wz").write_bytes(small_st_wz[1])
    (tmp / "noext").write_bytes(small_st_wz[1])
    (tmp / "junk.wz").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (tmp / "frame.wz").write_bytes(weightzip.compress(np.ones(10, np.float32)))
    (tmp / "plain").write_bytes(b"exists")
    (tmp / "adir").mkdir()
    return {
        "pack missing": ["pack", "missing.safetensors"],
        "unpack missing": ["unpack", "missing.wz"],
        "info missing": ["info", "missing.wz"],
        "verify missing": ["verify", "missing.wz"],
        "info directory": ["info", "adir"],
        "unpack junk": ["unpack", "junk.wz", "-o", "x"],
        "info junk": ["info", "junk.wz"],
        "verify junk": ["verify", "junk.wz"],
        "info source file": ["info", "m.safetensors"],
        "pack output exists": ["pack", "m.safetensors", "-q"],
        "unpack output exists": ["unpack", "plain.wz", "-q"],
        "unpack cannot guess name": ["unpack", "noext"],
        "unpack a compress frame": ["unpack", "frame.wz", "-o", "f.out"],
        "pack into own folder": ["pack", "adir", "-o", "adir/x.wz", "-q"],
        "verify missing original": ["verify", "plain.wz", "missing.safetensors"],
    }


def test_errors_are_one_line(tmp_path, small_st_wz):
    before = None
    for label, args in _errors(tmp_path, small_st_wz).items():
        before = sorted(os.listdir(tmp_path))
        r = run_cli(*args, cwd=tmp_path)
        try:
            assert_cli_error(r)
        except AssertionError as e:
            raise AssertionError(f"{label}: {e}") from None
        assert sorted(os.listdir(tmp_path)) == before, f"{label}: left files behind"
    assert (tmp_path / "plain").read_bytes() == b"exists"  # never overwritten without -f


def test_usage_errors_exit_2(tmp_path):
    for args in (["pack"], ["pack", "x", "--level", "ultra"], ["frobnicate"], []):
        r = run_cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and "error:" in r.stderr, (args, r.stderr)


def _bad_safetensors(p: Path, header: dict) -> None:
    js = json.dumps(header).encode()
    p.write_bytes(struct.pack("<Q", len(js)) + js + bytes(8))


@pytest.mark.parametrize("case", ["random .bin", "pickled module .pt", "offsets as strings", "dtype as list"])
def test_unusual_inputs_fail_with_one_line_or_succeed(tmp_path, case):
    if case == "random .bin":
        src = tmp_path / "blob.bin"
        src.write_bytes(os.urandom(3000))
    elif case == "pickled module .pt":
        import torch
        src = tmp_path / "model.pt"
        torch.save(torch.nn.Linear(2, 2), src)  # a whole module, not a state dict
    else:
        src = tmp_path / "h.safetensors"
        t = {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]} if case == "offsets as strings" else \
            {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}
        _bad_safetensors(src, {"a": t})
    r = run_cli("pack", src, "-q", cwd=tmp_path)
    if case == "pickled module .pt":  # read without unpickling: always packs, byte-exact
        assert r.returncode == 0 and r.stderr == "", r.stderr
    if r.returncode == 0:  # stored opaque: must then round-trip byte-exact
        out = run_cli("unpack", f"{src}.wz", "-o", tmp_path / "back", cwd=tmp_path)
        assert out.returncode == 0 and (tmp_path / "back").read_bytes() == src.read_bytes()
    else:
        assert_cli_error(r)
