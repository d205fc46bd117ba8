"""Helpers both halves' tests share: hashes, child processes, CLI runs, tmpfs mounts, and
decoding in a child process (decode_worker.py)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _zstd_loaded() -> bool:
    from weightzip import _C
    return _C.zstd_available()


# Tests whose data or expectations need zstd streams skip where libzstd is absent (or forced
# off with WEIGHTZIP_NO_ZSTD=1; tests/weightzip/test_no_zstd.py covers that case).
needs_zstd = pytest.mark.skipif(not _zstd_loaded(), reason="libzstd.so.1 is not loaded")


def sha256_bytes(b) -> str:
    return hashlib.sha256(memoryview(b).cast("B")).hexdigest()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def tree_hashes(root) -> dict[str, str]:
    """relative posix path -> sha256 of every file under root (symlinks followed)."""
    root = Path(root)
    out = {}
    for dirpath, _dirs, files in os.walk(root, followlinks=True):  # what a user sees in the tree
        for n in files:
            p = Path(dirpath) / n
            out[p.relative_to(root).as_posix()] = sha256_file(p)
    return dict(sorted(out.items()))


def raw(a) -> bytes:
    """The exact bytes of an array (C order), whatever its dtype."""
    a = np.ascontiguousarray(a)
    return a.reshape(-1).view(np.uint8).tobytes()


def assert_same_array(got, want) -> None:
    """Same dtype, same shape, same bits (NaN payloads and -0.0 included)."""
    assert isinstance(got, np.ndarray), type(got)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert raw(got) == raw(want)


def run_python(code: str, timeout: float = 60, cwd=None, input: bytes | None = None):
    """Run a Python snippet in a fresh interpreter (crashes and hangs stay outside pytest)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          timeout=timeout, cwd=cwd, input=input)


def run_cli(*args, cwd=None, timeout: float = 120):
    """`python -m weightzip ARGS`; returns CompletedProcess with text output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "weightzip", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def assert_cli_error(r) -> None:
    """Non-zero exit, and stderr is exactly one line starting with 'weightzip: error:'."""
    assert r.returncode != 0, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("weightzip: error:"), r.stderr


@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False):
    """A small (or read-only) tmpfs mounted at path for the block; skips without root."""
    path.mkdir()
    opts = f"size={size}" + (",ro" if readonly else "")
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    except FileNotFoundError:  # no mount(8)
        pytest.skip("cannot mount a tmpfs here (no mount command)")
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


WORKER = Path(__file__).resolve().parent / "decode_worker.py"


def decode_in_child(blobs: list[bytes], api: str, workdir: Path, timeout: float = 120) -> list[list[str]]:
    """Decode every blob with `api` in one child process (see decode_worker.py). Returns one
    [status, detail] per blob. A crash (segfault, abort) or a hang fails the test, naming the
    case and saving its blob for reproduction."""
    from decode_worker import write_cases
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cases = workdir / "cases.bin"
    n = write_cases(cases, blobs)
    stderr, rc, timed_out = "", None, False
    try:
        r = subprocess.run([sys.executable, str(WORKER), str(cases), api, str(workdir)],
                           capture_output=True, text=True, timeout=timeout)
        stdout, stderr, rc = r.stdout, r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        timed_out = True
    outcomes = [line.split(" ", 2)[1:] for line in stdout.splitlines() if line.strip()]
    if len(outcomes) < n or rc not in (0, None):
        i = min(len(outcomes), n - 1)
        bad = workdir / f"failing_case_{i}.wz"
        bad.write_bytes(blobs[i])
        how = f"hung (> {timeout} s)" if timed_out else f"died (exit code {rc})"
        raise AssertionError(f"{api}: decoder {how} on case {i} of {n}; blob saved to {bad}\n{stderr[-3000:]}")
    return outcomes


def assert_safe_outcomes(outcomes, expected_digest: str, labels=None) -> dict[str, int]:
    """Every outcome is a FormatError/ChecksumError, or a success with identical output.
    Returns counts per status."""
    bad, counts = [], {}
    for i, (status, detail) in enumerate(outcomes):
        counts[status] = counts.get(status, 0) + 1
        if status == "FMT" or (status == "OK" and detail == expected_digest):
            continue
        what = "WRONG OUTPUT returned silently" if status == "OK" else f"{status} {detail}"
        bad.append(f"case {i} ({labels[i] if labels else ''}): {what}")
    assert not bad, f"{len(bad)} unsafe outcomes:\n" + "\n".join(bad[:30])
    return counts
