"""weightzip.core: the public, numpy-only core that other layers (neurocodec) build on.

Everything here wraps the C++ core (weightzip._C) or is plain Python; nothing imports torch.

* Indexed rANS: :func:`encode_indexed` / :func:`decode_indexed` code int32 symbols, each with
  the quantized CDF table an index names (CompressAI's conventions, below).
* Checksums: :func:`xxh64` (64 bits) and :func:`checksum32` (its low 32 bits, as every
  weightzip and .nc format stores them).
* Varints: :func:`write_varint` / :func:`read_varint` (unsigned LEB128, bounded).
* Atomic files: :func:`atomic_path`, :func:`write_atomic`, :func:`check_writable` (write to a
  temporary sibling, then rename; an existing file is replaced only when asked).
* Levels: :data:`LEVELS` (name -> the C++ core's code), :data:`DEFAULT_LEVEL`.
* Errors: :class:`FormatError` (corrupt or truncated data, a ``ValueError``),
  :class:`ChecksumError`.
* ARM latent coder (:mod:`weightzip.core_arm`, re-exported here): :func:`arm_encode` /
  :func:`arm_decode` code pyramids of integer latent grids with a fixed-point autoregressive MLP
  (:class:`ArmNet`) and discretised Laplace probabilities, bit-exact on every machine;
  :func:`arm_params` / :func:`arm_cdf` expose the exact model (rates, fitting).
* Upsampler and synthesis of overfitted image decoders (also :mod:`weightzip.core_arm`):
  :func:`synth_upsample`, :func:`synth_forward`, :func:`synth_decode` (latents to pixels), exact
  fixed point.

Indexed CDF tables (``compressai.entropy_models`` buffers ``_quantized_cdf``, ``_cdf_length``,
``_offset`` can be passed as they are):

* ``cdfs``: int32 ``[n_cdfs, max_len]``; row ``k`` is a CDF quantized to 16 bits with
  ``cdf_lengths[k]`` entries (3 <= length <= max_len): ``0``, strictly increasing, ``1 << 16``.
  Row ``k`` has ``length - 1`` symbols; the last one is the escape symbol.
* symbol ``s`` coded with table ``k = indexes[i]``: ``v = s - offsets[k]`` is coded directly when
  ``0 <= v < length - 2``; any other int32 value is coded as the escape symbol followed by the
  value in 4-bit bypass digits (so every int32 symbol round-trips, at a cost of a few bytes).

Streams of fewer than 65536 symbols are byte for byte those of CompressAI's
``RansEncoder.encode_with_indexes`` (each coder reads the other's); longer ones interleave 4
rANS states (faster, 24 bytes more). ``csrc/rans_indexed.hpp`` documents the byte layout.
Corrupt data raises :class:`FormatError`; invalid tables or indexes ``ValueError``; wrong
dtypes ``TypeError``. Arguments may be numpy arrays, torch tensors (converted without
importing torch) or nested sequences of ints.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _C
from ._arrays import _int32, _to_numpy
from .atomic import atomic_path, check_writable, write_atomic
from .core_arm import (
    ARM_CONTEXT_5X5,
    ARM_FRAC_A,
    ARM_FRAC_W,
    ARM_LOG_SCALE_MAX,
    ARM_LOG_SCALE_MIN,
    ARM_MAX_ALPHABET,
    SYNTH_CLAMP,
    SYNTH_FRAC_A,
    ArmNet,
    ArmParams,
    arm_cdf,
    arm_decode,
    arm_encode,
    arm_params,
    synth_decode,
    synth_forward,
    synth_upsample,
)
from .errors import ChecksumError, FormatError
from .levels import DEFAULT_LEVEL, LEVEL_NAMES, LEVELS

__all__ = ["ARM_CONTEXT_5X5", "ARM_FRAC_A", "ARM_FRAC_W", "ARM_LOG_SCALE_MAX", "ARM_LOG_SCALE_MIN",
           "ARM_MAX_ALPHABET", "ArmNet", "ArmParams", "arm_cdf", "arm_decode", "arm_encode", "arm_params",
           "SYNTH_CLAMP", "SYNTH_FRAC_A", "synth_decode", "synth_forward", "synth_upsample",
           "DEFAULT_LEVEL", "LEVELS", "LEVEL_NAMES", "PRECISION",
           "ChecksumError", "FormatError", "VarintError", "atomic_path", "check_writable",
           "checksum32", "decode_indexed", "encode_indexed", "read_varint", "write_atomic", "write_varint",
           "xxh64"]

#: Precision (bits) of the quantized CDFs.
PRECISION = 16

# -- checksums ---------------------------------------------------------------------------
def xxh64(data: Any) -> int:
    """XXH64 (seed 0) of any C-contiguous buffer (bytes, memoryview, numpy array)."""
    return int(_C.xxh64(data))


def checksum32(data: Any) -> int:
    """The low 32 bits of :func:`xxh64`: the checksum weightzip and .nc files store."""
    return int(_C.xxh64(data)) & 0xFFFFFFFF


# -- varints -----------------------------------------------------------------------------
class VarintError(FormatError):
    """A varint that is truncated (``reason == "truncated"``), longer than 7 bytes
    (``"too long"``) or above the caller's bound (``"too large"``)."""

    def __init__(self, reason: str):
        super().__init__(f"{reason} varint")
        self.reason = reason


def write_varint(v: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low first, high bit set on all but the last."""
    if v < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def read_varint(buf: bytes | bytearray | memoryview, pos: int, max_value: int = 1 << 42) -> tuple[int, int]:
    """-> (value, position after it). VarintError if it runs past the end, has more than 7
    bytes (49 bits), or exceeds max_value."""
    v, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise VarintError("truncated")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
        if shift > 42:
            raise VarintError("too long")
    if v > max_value:
        raise VarintError("too large")
    return v, pos


# -- indexed rANS ------------------------------------------------------------------------
def _tables(cdfs: Any, cdf_lengths: Any, offsets: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = _int32(cdfs, "cdfs", 2)
    n = _int32(cdf_lengths, "cdf_lengths", 1)
    o = _int32(offsets, "offsets", 1)
    if n.shape[0] != c.shape[0] or o.shape[0] != c.shape[0]:
        raise ValueError(f"cdf_lengths ({n.shape[0]}) and offsets ({o.shape[0]}) need one entry "
                         f"per CDF table ({c.shape[0]})")
    return c, n, o


def encode_indexed(symbols: Any, indexes: Any, cdfs: Any, cdf_lengths: Any, offsets: Any) -> bytes:
    """rANS-encode int32 ``symbols``, each with the CDF table ``indexes`` names.

    ``symbols`` and ``indexes`` must have the same shape (any; they are flattened in C order).
    """
    s = _int32(symbols, "symbols")
    i = _int32(indexes, "indexes")
    if s.shape != i.shape:
        raise ValueError(f"symbols {s.shape} and indexes {i.shape} must have the same shape")
    c, n, o = _tables(cdfs, cdf_lengths, offsets)
    return _C.indexed_encode(s.reshape(-1), i.reshape(-1), c, n, o).tobytes()


def decode_indexed(data: Any, indexes: Any, cdfs: Any, cdf_lengths: Any, offsets: Any) -> npt.NDArray[np.int32]:
    """Inverse of :func:`encode_indexed`: int32 symbols with the shape of ``indexes``.

    ``data``: bytes, bytearray, memoryview or a uint8 array/tensor.
    """
    if hasattr(data, "detach") or isinstance(data, np.ndarray):
        buf = _to_numpy(data)
        if buf.dtype != np.uint8:
            raise TypeError(f"data must be bytes or uint8, not {buf.dtype}")
        buf = np.ascontiguousarray(buf).reshape(-1)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)  # TypeError if not bytes-like
    i = _int32(indexes, "indexes")
    c, n, o = _tables(cdfs, cdf_lengths, offsets)
    out = _C.indexed_decode(buf, i.reshape(-1), c, n, o)
    return out.reshape(i.shape)
