"""Element types weightzip understands, keyed by their safetensors names.

Each dtype maps to a C++ transform (how values split into byte streams) and to numpy/torch
types. bfloat16 and float8 come from ml_dtypes on the numpy side; torch is never imported here.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from .errors import FormatError

# Transform ids shared with csrc/transform.hpp (stored in files: never renumber).
T_BYTES, T_BF16, T_FP16, T_FP32, T_FP64, T_FP8 = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True)
class DType:
    name: str  # safetensors spelling, stored in .wz files
    itemsize: int
    transform: int
    numpy: np.dtype
    torch: str  # attribute of the torch module


_TABLE = [
    DType("F64", 8, T_FP64, np.dtype("<f8"), "float64"),
    DType("F32", 4, T_FP32, np.dtype("<f4"), "float32"),
    DType("F16", 2, T_FP16, np.dtype("<f2"), "float16"),
    DType("BF16", 2, T_BF16, np.dtype(ml_dtypes.bfloat16), "bfloat16"),
    DType("F8_E4M3", 1, T_FP8, np.dtype(ml_dtypes.float8_e4m3fn), "float8_e4m3fn"),
    DType("F8_E5M2", 1, T_FP8, np.dtype(ml_dtypes.float8_e5m2), "float8_e5m2"),
    DType("I64", 8, T_BYTES, np.dtype("<i8"), "int64"),
    DType("I32", 4, T_BYTES, np.dtype("<i4"), "int32"),
    DType("I16", 2, T_BYTES, np.dtype("<i2"), "int16"),
    DType("I8", 1, T_BYTES, np.dtype("i1"), "int8"),
    DType("U64", 8, T_BYTES, np.dtype("<u8"), "uint64"),
    DType("U32", 4, T_BYTES, np.dtype("<u4"), "uint32"),
    DType("U16", 2, T_BYTES, np.dtype("<u2"), "uint16"),
    DType("U8", 1, T_BYTES, np.dtype("u1"), "uint8"),
    DType("BOOL", 1, T_BYTES, np.dtype("?"), "bool"),
]
BY_NAME = {d.name: d for d in _TABLE}
_BY_NUMPY = {d.numpy: d for d in _TABLE}
_BY_TORCH = {d.torch: d for d in _TABLE}


def by_name(name: str) -> DType:
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise FormatError(f"unknown dtype {name!r}") from None


def from_numpy(dt: np.dtype) -> DType | None:
    """The weightzip dtype of a numpy dtype, or None (big-endian, complex, object, ...)."""
    return _BY_NUMPY.get(np.dtype(dt))


def from_torch(dt) -> DType | None:
    return _BY_TORCH.get(str(dt).removeprefix("torch."))
