"""Lanes (csrc/lanes.hpp): the GPU-friendly in-memory coding of float tensors. The CPU decoder
is exact on every bit pattern; the CUDA kernel compiles wherever nvcc is (and matches the CPU
decoder bit for bit where a GPU is)."""
from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import weightzip
from weightzip import _C

REPO = Path(__file__).resolve().parents[2]
DTYPES = [(ml_dtypes.bfloat16, 1), (np.float16, 2), (np.float32, 3)]


def roundtrip(a: np.ndarray, transform: int, threads: int = 1) -> np.ndarray:
    f, o, b, r = _C.lanes_encode(a.view(np.uint8), transform)
    assert f.dtype == np.uint16 and f.size == 256 and int(f.astype(np.int64).sum()) == 4096
    assert o.size == -(-a.size // 4096) + 1 and o[-1] == b.size
    out = np.empty_like(a)
    _C.lanes_decode(f, o, b, r, transform, out.view(np.uint8), threads)
    return out


@pytest.mark.parametrize("dtype,transform", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 4095, 4096, 4097, 70001])
def test_roundtrip_sizes(dtype, transform, n):
    a = (np.random.default_rng(n).standard_normal(n) * 0.02).astype(dtype)
    assert roundtrip(a, transform, threads=2).tobytes() == a.tobytes()


@pytest.mark.parametrize("transform", [1, 2])
def test_every_16_bit_pattern(transform):
    bits = np.arange(1 << 16, dtype=np.uint16)
    assert roundtrip(bits, transform).tobytes() == bits.tobytes()


def test_fp32_random_bits_and_constants():
    x = np.random.default_rng(1).integers(0, 1 << 32, 50_000, dtype=np.uint32)
    assert roundtrip(x, 3).tobytes() == x.tobytes()
    one = np.ones(10_000, ml_dtypes.bfloat16)  # a lone exponent: the table needs a second symbol
    assert roundtrip(one, 1).tobytes() == one.tobytes()


def test_size_is_close_to_the_fast_level():
    a = (np.random.default_rng(2).standard_normal(1 << 20) * 0.02).astype(ml_dtypes.bfloat16)
    f, o, b, r = _C.lanes_encode(a.view(np.uint8), 1)
    lanes = f.nbytes + o.nbytes + b.size + r.size
    fast = len(weightzip.compress(a, level="fast"))
    assert lanes < 0.68 * a.nbytes and lanes < 1.01 * fast


def test_corrupt_input_raises():
    a = (np.random.default_rng(3).standard_normal(10_000) * 0.02).astype(ml_dtypes.bfloat16)
    f, o, b, r = _C.lanes_encode(a.view(np.uint8), 1)
    out = np.empty_like(a)
    with pytest.raises(weightzip.FormatError):
        _C.lanes_decode(f, o, b[: o[1] - 8], r, 1, out.view(np.uint8))  # offsets past the bytes
    bad = f.copy()
    bad[0] += 1
    with pytest.raises(weightzip.FormatError):
        _C.lanes_decode(bad, o, b, r, 1, out.view(np.uint8))
    short = o.copy()
    short[1:] = 4  # every lane 4 bytes: the decoder would read past them
    short[0] = 0
    with pytest.raises(weightzip.FormatError):
        _C.lanes_decode(f, short, b, r, 1, out.view(np.uint8))
    with pytest.raises(ValueError):
        _C.lanes_decode(f, o, b, r[:-1], 1, out.view(np.uint8))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_kernel_compiles(tmp_path):
    r = subprocess.run(["nvcc", "-std=c++17", "-O3", "-arch=sm_90", "-shared", "-Xcompiler", "-fPIC",
                        str(REPO / "csrc" / "cuda" / "lanes_kernel.cu"), "-o", str(tmp_path / "lib.so")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def test_cuda_decoder_matches_the_cpu_one():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from weightzip import cuda_lanes
    if cuda_lanes.library() is None:
        pytest.skip("the CUDA lanes library could not be built")
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        t = (torch.randn(3000, 700) * 0.02).to(dtype).cuda()
        c = cuda_lanes.encode(t)
        gpu = cuda_lanes.decode(c)
        assert torch.equal(gpu.cpu().view(torch.uint8), cuda_lanes.decode_cpu(c).view(torch.uint8))
        assert torch.equal(gpu.view(torch.uint8), t.view(torch.uint8))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_the_build_packages_the_cuda_library_where_nvcc_is():
    import ctypes

    lib = Path(_C.__file__).resolve().parent / "libwzlanes.so"
    assert lib.exists(), "CMake found no CUDA compiler although nvcc is on PATH"
    assert ctypes.CDLL(str(lib)).wz_lanes_decode_cuda  # loads without a GPU (static CUDA runtime)


def test_library_takes_the_first_candidate_that_decodes_exactly(monkeypatch):
    torch = pytest.importorskip("torch")
    from weightzip import cuda_lanes

    monkeypatch.setenv("WEIGHTZIP_CUDA_LIB", "/from/env.so")
    packaged = Path(_C.__file__).resolve().parent / "libwzlanes.so"
    order = list(itertools.islice(cuda_lanes._candidates(), 2 if packaged.exists() else 1))
    assert order == ["/from/env.so", str(packaged)][:len(order)]  # env first, then the packaged one

    tried = []

    def fake_load(path):  # the env library has no code for this GPU; the next one works
        tried.append(path)
        return None if path == "/from/env.so" else f"lib:{path}"

    monkeypatch.setattr(cuda_lanes, "_load", fake_load)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda_lanes, "_LIB", [])
    monkeypatch.setattr(cuda_lanes, "_candidates", lambda: iter(["/from/env.so", "/packaged.so", "/built.so"]))
    assert cuda_lanes.library() == "lib:/packaged.so"
    assert tried == ["/from/env.so", "/packaged.so"]
    assert cuda_lanes.library() == "lib:/packaged.so" and len(tried) == 2  # decided once per process

    def failing_build():
        yield "/from/env.so"
        raise subprocess.CalledProcessError(1, "nvcc")

    monkeypatch.setattr(cuda_lanes, "_LIB", [])
    monkeypatch.setattr(cuda_lanes, "_candidates", failing_build)
    assert cuda_lanes.library() is None  # nvcc failing ends the search: decode on the CPU
