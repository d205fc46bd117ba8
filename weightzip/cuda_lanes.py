"""Decoding compressed module weights on a CUDA device (csrc/cuda/lanes_kernel.cu).

The coding is csrc/lanes.hpp's (exponent plane in lanes of 4096 rANS-coded symbols, other
planes raw), made on the CPU by `_C.lanes_encode`; the coded tensors live on the device and
`decode` writes the weights straight into a device tensor, bit-identical to the CPU decoder
`_C.lanes_decode` (same functions). The kernel library is, in this order: $WEIGHTZIP_CUDA_LIB;
the one built into the package (libwzlanes.so next to _C, when the wheel was built where a
CUDA compiler was); or one built on first use with nvcc (`-arch=native`) into
~/.cache/weightzip/ from the sources of a checkout. The first that loads and decodes a test
tensor exactly as the CPU does on the current GPU is used (a packaged library without code
for this GPU fails that, and the next is tried); without any, `library()` is None and
compress_module decodes on the CPU instead.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _C

SOURCES = Path(__file__).resolve().parent.parent / "csrc"
TRANSFORMS = {torch.bfloat16: 1, torch.float16: 2, torch.float32: 3}
_LIB: list[ctypes.CDLL | None] = []


def build(out_dir: Path, arch: str = "native") -> Path:
    """Compile the kernel library into out_dir (CalledProcessError with nvcc's message if it fails)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / "libwzlanes.so"
    tmp = out_dir / f".libwzlanes.{os.getpid()}.so"
    subprocess.run([nvcc, "-std=c++17", "-O3", f"-arch={arch}", "-shared", "-Xcompiler", "-fPIC",
                    str(SOURCES / "cuda" / "lanes_kernel.cu"), "-o", str(tmp)], check=True, capture_output=True,
                   text=True, timeout=600)
    os.replace(tmp, lib)
    return lib


def _candidates() -> Iterator[str]:
    """Kernel libraries to try, in order; the checkout build only when the others fail."""
    if os.environ.get("WEIGHTZIP_CUDA_LIB"):
        yield os.environ["WEIGHTZIP_CUDA_LIB"]
    packaged = Path(_C.__file__).resolve().parent / "libwzlanes.so"
    if packaged.exists():
        yield str(packaged)
    if (SOURCES / "cuda" / "lanes_kernel.cu").exists():
        key = hashlib.sha256(b"".join((SOURCES / f).read_bytes() for f in
                                      ("cuda/lanes_kernel.cu", "lanes.hpp"))).hexdigest()[:16]
        out = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "weightzip" / f"cuda-{key}"
        yield str(out / "libwzlanes.so") if (out / "libwzlanes.so").exists() else str(build(out))


def _load(path: str) -> ctypes.CDLL | None:
    """The library at path if it decodes a test tensor on the current GPU as the CPU does."""
    lib = ctypes.CDLL(path)
    lib.wz_lanes_decode_cuda.restype = ctypes.c_int
    lib.wz_lanes_decode_cuda.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_uint64, ctypes.c_int] + \
        [ctypes.c_void_p] * 3
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(3 * 4096 + 17, generator=g) * 0.02).to(torch.bfloat16).cuda()
    try:
        ok = torch.equal(_decode_with(lib, encode(t)).cpu(), t.cpu())
    except (RuntimeError, ValueError):  # no code for this GPU, launch errors
        ok = False
    return lib if ok else None


def library() -> ctypes.CDLL | None:
    """The kernel library (see the module's docstring); None where CUDA decoding is not available."""
    if _LIB:
        return _LIB[0]
    lib = None
    if torch.cuda.is_available():
        try:
            for path in _candidates():  # the last one builds: its failure ends the search
                try:
                    lib = _load(path)
                except OSError:
                    lib = None
                if lib is not None:
                    break
        except (OSError, subprocess.SubprocessError):  # nvcc missing or failing
            lib = None
    _LIB.append(lib)
    return lib


@dataclass
class LanesTensor:
    """A tensor coded as lanes, its parts on the device."""

    freqs: torch.Tensor  # uint8 view of 256 x u16
    offsets: torch.Tensor  # uint8 view of (lanes + 1) x u32
    bytes: torch.Tensor
    raw: torch.Tensor
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return sum(int(t.numel()) for t in (self.freqs, self.offsets, self.bytes, self.raw))


def encode(t: torch.Tensor) -> LanesTensor:
    """Code t (BF16, FP16 or FP32) on the CPU; the parts go to t's device."""
    raw = t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
    parts = _C.lanes_encode(raw, TRANSFORMS[t.dtype])
    dev = [torch.from_numpy(np.ascontiguousarray(a).view(np.uint8)).to(t.device) for a in parts]
    return LanesTensor(*dev, dtype=t.dtype, shape=tuple(t.shape))  # type: ignore[misc]


def decode(c: LanesTensor) -> torch.Tensor:
    """The tensor, decoded on its device by the kernel."""
    lib = library()
    if lib is None:
        raise RuntimeError("CUDA lanes decoding is not available")
    return _decode_with(lib, c)


def _decode_with(lib: ctypes.CDLL, c: LanesTensor) -> torch.Tensor:
    out = torch.empty(c.shape, dtype=c.dtype, device=c.bytes.device)
    failed = torch.zeros(1, dtype=torch.int32, device=c.bytes.device)
    err = lib.wz_lanes_decode_cuda(c.freqs.data_ptr(), c.offsets.data_ptr(), c.bytes.data_ptr(), c.raw.data_ptr(),
                                   out.numel(), TRANSFORMS[c.dtype], out.data_ptr(), failed.data_ptr(),
                                   ctypes.c_void_p(torch.cuda.current_stream(c.bytes.device).cuda_stream))
    if err:
        raise RuntimeError(f"lanes kernel launch failed (cudaError {err})")
    if int(failed.item()):
        raise ValueError("corrupt lanes data")
    return out


def decode_cpu(c: LanesTensor, threads: int = 1) -> torch.Tensor:
    """The same on the CPU (the reference the kernel must match)."""
    out = torch.empty(c.shape, dtype=c.dtype)
    parts = [t.cpu().numpy() for t in (c.freqs, c.offsets, c.bytes, c.raw)]
    _C.lanes_decode(parts[0].view(np.uint16), parts[1].view(np.uint32), parts[2], parts[3], TRANSFORMS[c.dtype],
                    out.reshape(-1).view(torch.uint8).numpy(), threads)
    return out
