"""Array arguments of the C++ core's wrappers (weightzip.core, core_arm): integer arrays as
C-contiguous int32, torch tensors accepted without importing torch."""
from __future__ import annotations

from typing import Any

import numpy as np

_I32 = np.iinfo(np.int32)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (torch itself is never imported here)
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _int32(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    """x as a C-contiguous int32 array; integer input only, values must fit int32."""
    a = _to_numpy(x)
    if a.size == 0 and a.dtype.kind == "f":
        a = a.astype(np.int32)  # an empty list comes out of np.asarray as float64
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, not {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.dtype != np.int32:
        if a.size and (int(a.min()) < _I32.min or int(a.max()) > _I32.max):
            raise ValueError(f"{name} has values outside the int32 range")
        a = a.astype(np.int32)
    return np.ascontiguousarray(a)
