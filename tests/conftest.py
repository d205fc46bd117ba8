"""Shared helpers for the weightzip test suite.

Besides fixtures, this module knows the .wz layout (see weightzip/container.py) well enough to
locate regions of a file (preamble, payload, index, footer) and to build files with a
hand-made index, so that the robustness tests can aim corruption precisely.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import weightzip

LEVELS = ("fast", "default", "max")

# safetensors dtype name -> numpy dtype (bf16 / fp8 from ml_dtypes)
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")

MAGIC = b"\x89WZP\r\n\x1a\n"
FOOTER_MAGIC = b"WZINDEX\x00"
PREAMBLE_SIZE = 16
FOOTER_SIZE = 32
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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


def random_bits(dtype, shape, seed=0) -> np.ndarray:
    """An array whose elements are uniformly random bit patterns (every NaN payload too)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8)
    if dtype == np.dtype("?"):
        b &= 1  # numpy bools must be 0/1
    return b.view(dtype).reshape(shape)


# ---------------------------------------------------------------- .wz layout

def wz_regions(blob: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges [start, end) of the parts of a valid .wz file."""
    size = len(blob)
    ioff, ilen, _h, magic = struct.unpack("<QQQ8s", blob[-FOOTER_SIZE:])
    assert magic == FOOTER_MAGIC and ioff + ilen + FOOTER_SIZE == size
    return {"preamble": (0, PREAMBLE_SIZE), "payload": (PREAMBLE_SIZE, ioff),
            "index": (ioff, ioff + ilen), "footer": (size - FOOTER_SIZE, size)}


def read_index(blob: bytes) -> tuple[dict, bytes]:
    """(index JSON, chunk table bytes) of a valid .wz file, decoded with the C core."""
    from weightzip import _C
    ioff, ilen, _h, _m = struct.unpack("<QQQ8s", blob[-FOOTER_SIZE:])
    iblob = blob[ioff:ioff + ilen]
    jlen, clen, jhash = struct.unpack_from("<III", iblob)
    js = np.empty(jlen, np.uint8)
    tab = np.array([[0, clen, jlen, jhash]], np.uint64)
    _C.decode_chunks(iblob[12:12 + clen], tab, 1, 0, js, 1, True)
    return json.loads(js.tobytes()), iblob[12 + clen:]


def xxh64(data: bytes) -> int:
    from weightzip import _C
    return _C.xxh64(data)


def build_wz(payload: bytes, index, table: bytes, version: int = 1,
             json_bytes: bytes | None = None, index_blob: bytes | None = None) -> bytes:
    """A .wz file with a hand-made index; every checksum is made valid, so only the reader's
    own validation stands between the file and the decoders. The JSON is stored with the
    stored chunk form: u8 0xFF, then the bytes."""
    if index_blob is None:
        js = json_bytes if json_bytes is not None else json.dumps(index).encode()
        coded = b"\xff" + js
        index_blob = struct.pack("<III", len(js), len(coded), xxh64(js) & 0xFFFFFFFF) + coded + table
    ioff = PREAMBLE_SIZE + len(payload)
    return (MAGIC + struct.pack("<HHI", version, 0, 0) + payload + index_blob
            + struct.pack("<QQQ8s", ioff, len(index_blob), xxh64(index_blob), FOOTER_MAGIC))


def rebuild_wz(blob: bytes, mutate_index) -> bytes:
    """Re-emit a valid .wz after mutate_index(index_dict) edits its index in place."""
    index, table = read_index(blob)
    mutate_index(index)
    ioff = struct.unpack("<Q", blob[-FOOTER_SIZE:][:8])[0]
    return build_wz(blob[PREAMBLE_SIZE:ioff], index, table)


# ---------------------------------------------------------------- processes

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


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def one_torch_thread():
    """Torch on one intra-op thread, seeded (fast, repeatable small-model tests)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def small_st_wz(tmp_path_factory):
    """(safetensors bytes, .wz bytes, tensors) of a small multi-dtype safetensors file."""
    from safetensors.numpy import save_file
    d = tmp_path_factory.mktemp("small_st")
    rng = np.random.default_rng(7)
    tensors = {
        "emb.weight": rng.standard_normal((64, 48)).astype(np.float32),
        "ln.bias": rng.standard_normal(33).astype(np.float16),
        "steps": np.arange(5, dtype=np.int64),
        "mask": rng.integers(0, 2, 17).astype(bool),
    }
    src = d / "m.safetensors"
    save_file(tensors, str(src), metadata={"format": "np"})
    out = weightzip.pack(src, d / "m.safetensors.wz", level="default")
    return src.read_bytes(), out.read_bytes(), tensors


# ---------------------------------------------------------------- decoding in a child process

WORKER = Path(__file__).resolve().parent / "_decode_worker.py"


def decode_in_child(blobs: list[bytes], api: str, workdir: Path, timeout: float = 120) -> list[list[str]]:
    """Decode every blob with `api` in one child process (see _decode_worker.py). Returns one
    [status, detail] per blob. A crash (segfault, abort) or a hang fails the test, naming the
    case and saving its blob for reproduction."""
    from _decode_worker import write_cases
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


# ---------------------------------------------------------------- format helpers

def roundtrip(src, tmp_path, level="default", name="out"):
    """pack + unpack; asserts the input is unchanged and verify() passes. Returns (wz, out)."""
    before = tree_hashes(src) if src.is_dir() else sha256_file(src)
    wz = weightzip.pack(src, tmp_path / f"{name}.wz", level=level)
    out = weightzip.unpack(wz, tmp_path / name)
    assert (tree_hashes(src) if src.is_dir() else sha256_file(src)) == before, "input was modified"
    assert weightzip.verify(wz).startswith("OK")
    assert weightzip.verify(wz, src).startswith("OK")
    return wz, out


def torch_tensors():
    import torch
    g = torch.Generator().manual_seed(0)
    return OrderedDict([
        ("embed.weight", torch.randn(50, 16, generator=g)),
        ("layer.0.w", torch.randn(16, 16, generator=g).to(torch.bfloat16)),
        ("layer.0.b", torch.randn(16, generator=g).to(torch.float16)),
        ("layer.0.f8", torch.randn(8, 4, generator=g).to(torch.float8_e4m3fn)),
        ("pos_ids", torch.arange(40, dtype=torch.int64).reshape(1, 40)),
        ("mask", torch.rand(7, generator=g) > 0.5),
        ("scale", torch.tensor(0.5, dtype=torch.float64)),
    ])


def handmade_safetensors(path, gap=13, trailing=b"TRAILING-bytes\x00\xff"):
    """Tensors stored out of header order, with unclaimed bytes between and after them and a
    header padded with spaces: all legal enough for readers, and must survive byte-exact."""
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.array([1, -2, 3], dtype=np.int16)
    off_b = 0
    off_a = b.nbytes + gap
    header = {"a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [off_a, off_a + a.nbytes]},
              "b": {"dtype": "I16", "shape": [3], "data_offsets": [off_b, off_b + b.nbytes]},
              "__metadata__": {"k": "v"}}
    js = json.dumps(header).encode() + b"   "
    data = b.tobytes() + bytes(range(gap)) + a.tobytes() + trailing
    path.write_bytes(struct.pack("<Q", len(js)) + js + data)
    return {"a": a, "b": b}


def pytest_configure(config):
    # also declared in pyproject.toml; repeated so the suite runs cleanly from anywhere
    config.addinivalue_line("markers", "data: tests that need ../shared/data (skipped when absent)")
    config.addinivalue_line("markers", "slow: long-running tests, excluded by default (run with -m slow)")


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


@pytest.fixture(scope="session")
def tiny_image_codec(tmp_path_factory) -> str:
    """A tiny random image codec folder (tests/_tiny_codec.py), exported once per session."""
    from _tiny_codec import make_tiny_codec

    return str(make_tiny_codec(tmp_path_factory.mktemp("codec")))


@pytest.fixture(scope="session")
def tiny_audio_codec(tmp_path_factory) -> str:
    """A tiny random audio codec folder (tests/_tiny_codec.py), exported once per session."""
    from _tiny_codec import make_tiny_audio_codec

    return str(make_tiny_audio_codec(tmp_path_factory.mktemp("acodec")))
