"""Lossy coding of float tensors with a guaranteed per-element error bound (the core of
``--lossy --max-error E``, docs/plans/checkpoint_series.md §3).

``quantise(x, E)`` codes a float array so that every finite element is reconstructed within
``E × RMS(x)`` (RMS over the finite elements, in float64): a uniform mid-tread quantiser (or
a dead zone) with step ``Δ = 2B(1 − 2⁻²⁰)``, the indices coded by the context-adaptive binary
arithmetic coder of ``csrc/cabac.hpp``. The encoder checks every element after the cast to
the dtype; NaN/±Inf and elements the dtype cannot bring within the bound are stored exactly.
With ``ref`` (the previous checkpoint's *reconstruction*, same dtype and size) the indices
are ``round((x − ref)/Δ)``: closed-loop deltas, so errors do not accumulate along a series.

``domain="sqrt"`` is for Adam's ``exp_avg_sq`` (v ≥ 0): √v is coded, the bound holds for
``|√v̂ − √v| ≤ E × RMS(√v)``, v̂ ≥ 0, and v > 0 never reconstructs to 0.

The payload format is ``csrc/lossy.hpp``'s (self-contained: dtype, domain, step, n, row).
numpy only: this module never imports torch.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _C

__all__ = ["SLACK", "bits_per_weight", "dequantise", "dtype_code", "info", "plan", "policy", "quantise", "rms",
           "step_for"]

# Δ = B/(1 − θ) · SLACK: the slack keeps |x − x̂| ≤ B after the final cast for in-range values.
SLACK = 1.0 - 2.0 ** -20
# The encoder checks a hair inside E·RMS: an RMS recomputed with another summation order
# differs from ours by up to ~n·2⁻⁵³ relative, and the bound must still hold against it.
_BOUND_MARGIN = 1.0 - 2.0 ** -24
_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
_DOMAINS = ("linear", "sqrt")


def dtype_code(dtype: Any) -> str:
    """The core's name of a float dtype (F32, F16, BF16, F64); ValueError for others."""
    name = np.dtype(dtype).name
    if name not in _CODES:
        raise ValueError(f"lossy coding takes float32/float16/bfloat16/float64 arrays, not {name}")
    return _CODES[name]


def _sumsq(a: np.ndarray) -> float:
    """Σ a² in float64 on this thread (einsum's own loop: no BLAS threads)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.einsum("i,i->", a, a))


def rms(x: np.ndarray, domain: str = "linear") -> float:
    """RMS of the finite elements in float64 (sqrt domain: of √x over the x ≥ 0); 0 if none.
    Scaled by the largest magnitude only when the plain sum of squares overflows."""
    if domain not in _DOMAINS:
        raise ValueError(f"domain must be 'linear' or 'sqrt', not {domain!r}")
    a = np.asarray(x).astype(np.float64, copy=False).ravel()
    if domain == "sqrt":
        a = np.sqrt(a[a >= 0])
    ss = _sumsq(a) if a.size else 0.0
    if not math.isfinite(ss):  # non-finite elements (dropped), or an overflow (scaled)
        a = a[np.isfinite(a)]
        if a.size == 0:
            return 0.0
        ss = _sumsq(a)
        if not math.isfinite(ss):
            m = float(np.max(np.abs(a)))
            return m * math.sqrt(_sumsq(a / m) / a.size)
    return math.sqrt(ss / a.size) if a.size else 0.0


def step_for(bound: float, deadzone: float = 0.5) -> float:
    """The quantiser step for a bound B and a rounding offset θ (0.5: uniform): B/(1 − θ)·SLACK,
    so that the largest in-bin error (1 − θ)Δ stays below B."""
    if not 0.0 <= deadzone <= 0.5:
        raise ValueError("deadzone (the rounding offset) must be in [0, 0.5]")
    step = bound / (1.0 - deadzone) * SLACK
    return step if math.isfinite(step) else float(np.finfo(np.float64).max)


def plan(x: np.ndarray, max_error: float, domain: str = "linear") -> tuple[float, float, float]:
    """(step Δ, bound B = max_error·RMS(x), the slightly tighter bound the encoder checks)."""
    if not (max_error > 0 and math.isfinite(max_error)):
        raise ValueError(f"max_error must be a positive number, not {max_error!r}")
    bound = max_error * rms(x, domain)
    return step_for(bound), bound, bound * _BOUND_MARGIN


FLOATS = ("F32", "F16", "BF16", "F64")
MIN_ELEMENTS = 64  # smaller tensors (scalars: step counters, norms' gains) stay exact: nothing to gain
MOMENTS_SQ = ("exp_avg_sq", "max_exp_avg_sq")  # Adam's second moments: coded as sqrt(v)
MOMENTS = ("exp_avg", "momentum_buffer")


def policy(max_error: float | None, moment_error: float | None = None):
    """The lossy plan of a checkpoint: (name, dtype, numel) -> (E, domain) or None (exact).
    Float tensors of >= MIN_ELEMENTS at max_error (None: exact); optimizer moments, recognised
    by the last part of their name, at moment_error (None: max_error): exp_avg_sq in the sqrt
    domain, so that Adam's division by sqrt(v) keeps a relative meaning."""
    if max_error is None and moment_error is None:
        raise ValueError("a lossy policy needs max_error or moment_error")
    for e in (max_error, moment_error):
        if e is not None and not (e > 0 and math.isfinite(e)):
            raise ValueError(f"error bounds must be positive numbers, not {e!r}")
    me = max_error if moment_error is None else moment_error

    def plan_of(name: str, dtype: str, numel: int) -> tuple[float, str] | None:
        if dtype not in FLOATS or numel < MIN_ELEMENTS:
            return None
        leaf = name.replace("/", ".").rsplit(".", 1)[-1]
        if leaf in MOMENTS_SQ:
            return None if me is None else (me, "sqrt")
        if leaf in MOMENTS:
            return None if me is None else (me, "linear")
        return None if max_error is None else (max_error, "linear")
    return plan_of


def _ref_array(ref: np.ndarray | None, x: np.ndarray) -> np.ndarray | None:
    if ref is None:
        return None
    ref = np.ascontiguousarray(ref)
    if ref.dtype != x.dtype or ref.size != x.size:
        raise ValueError(f"ref must be {x.dtype} with {x.size} elements, not {ref.dtype} with {ref.size}")
    return ref


def quantise(x: np.ndarray, max_error: float, ref: np.ndarray | None = None, domain: str = "linear", *,
             deadzone: float = 0.5, row: int | None = None, threads: int = 1) -> tuple[bytes, np.ndarray]:
    """Code x with |x − x̂| ≤ max_error·RMS(x) per finite element -> (payload, x̂).

    ref: the reconstructed reference (closed loop), same dtype and size as x. deadzone: the
    rounding offset θ (0.5 uniform; smaller values widen the zero bin at a finer step). row:
    the row length for the "above" context (default: the last dimension of a 2-D+ array).
    x̂ has x's dtype and shape and is exactly what dequantise(payload, ...) returns.
    """
    x = np.ascontiguousarray(x)
    code = dtype_code(x.dtype)
    if not (max_error > 0 and math.isfinite(max_error)):
        raise ValueError(f"max_error must be a positive number, not {max_error!r}")
    bound = max_error * rms(x, domain)
    step = step_for(bound, 0.5 if domain == "sqrt" else deadzone)
    if row is None:
        row = x.shape[-1] if x.ndim >= 2 else 0
    payload, recon = _C.lossy_encode(x.reshape(-1).view(np.uint8), code, step, bound * _BOUND_MARGIN, domain,
                                     _ref_bytes(_ref_array(ref, x)), int(row), threads, deadzone)
    return payload.tobytes(), recon.view(x.dtype).reshape(x.shape)


def _ref_bytes(ref: np.ndarray | None) -> np.ndarray | None:
    return None if ref is None else ref.reshape(-1).view(np.uint8)


def dequantise(payload: bytes, dtype: Any, shape: tuple[int, ...] | int, ref: np.ndarray | None = None, *,
               threads: int = 1) -> np.ndarray:
    """The reconstruction x̂ (dtype, shape) of a payload; ref: the reference it was coded against.
    FormatError for a malformed payload or one that does not match dtype, shape or ref."""
    dt = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = math.prod(shape)
    if ref is not None:
        ref = np.ascontiguousarray(ref)
        if ref.dtype != dt or ref.size != n:
            raise ValueError(f"ref must be {dt} with {n} elements")
    out = _C.lossy_decode(payload, n, dtype_code(dt), _ref_bytes(ref), threads)
    return out.view(dt).reshape(shape)


def info(payload: bytes) -> dict[str, Any]:
    """The payload's header: dtype, domain, predicted, step, n, row, exceptions."""
    return dict(_C.lossy_info(payload))


def bits_per_weight(payload: bytes, n: int | None = None) -> float:
    """Stored bits per element (n: the element count; default: the payload's own)."""
    if n is None:
        n = int(info(payload)["n"])
    return 8.0 * len(payload) / n if n else 0.0
