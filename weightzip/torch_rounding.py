"""Rounding for lossy compressed modules: mantissas to k bits, to nearest or calibrated.

`round_mantissa` rounds every weight to its nearest k-bit value. With calibration,
`compress_module(model, mantissa_bits=3, calibrate=run)` rounds each `nn.Linear` weight so
that the layer's outputs on the calibration inputs change least (GPTQ, Frantar et al. 2023,
on the float grid): columns are rounded one at a time (largest input energy first)
and each column's rounding error is pushed onto the columns not yet rounded, weighted by the
inverse of the input second-moment matrix H = sum x x^T. The rounded values lie on the same
grid as round-to-nearest (`mantissa_bits` mantissa bits), so the coded size is the same; only
which neighbour each weight takes changes.

Layers are done one unit (layer) at a time, in the order the model runs them, with the units
before already rounded, so each unit is calibrated on the inputs it will see. This costs one
run of `calibrate` per unit and keeps one unit's H matrices (in_features^2 float64 each) in
memory at a time. Other parameters (embeddings, convolutions, norms) are rounded to nearest.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

MANTISSA = {torch.bfloat16: 7, torch.float16: 10, torch.float32: 23}
_INT = {2: torch.int16, 4: torch.int32}
DAMP = 0.01  # H += DAMP * mean(diag H) * I: keeps the inverse well conditioned
BLOCK = 128  # columns updated lazily per block (the error of a block reaches later columns at once)


def round_mantissa(t: torch.Tensor, bits: int) -> torch.Tensor:
    """t with every finite mantissa rounded to `bits` bits (RNE); overflow to Inf truncates."""
    m = MANTISSA[t.dtype]
    if not 0 <= bits <= m:
        raise ValueError(f"mantissa_bits must be in 0..{m} for {t.dtype}, not {bits}")
    drop = m - bits
    if drop == 0:
        return t.clone()
    size = t.element_size()
    x = t.contiguous().view(_INT[size]).to(torch.int64) & ((1 << (8 * size)) - 1)  # unsigned bits
    exp_mask = ((1 << (8 * size - 1 - m)) - 1) << m
    low = (1 << drop) - 1
    up = (x + (low >> 1) + ((x >> drop) & 1)) & ~low
    keep = (x & exp_mask) == exp_mask  # NaN, ±Inf: unchanged
    up = torch.where(((up & exp_mask) == exp_mask) & ~keep, x & ~low, up)  # rounded to Inf: truncate
    out = torch.where(keep, x, up)
    out = torch.where(out >= 1 << (8 * size - 1), out - (1 << (8 * size)), out)  # back to signed
    return out.to(_INT[size]).view(t.dtype).reshape(t.shape)


def float_grid(w: torch.Tensor, bits: int) -> torch.Tensor:
    """float32 w rounded to `bits` mantissa bits (nearest, ties to even): m * 2^e, 0.5 <= |m| < 1.
    As round_mantissa, several times faster (GPTQ rounds column by column)."""
    if bits == 0:  # a tie goes to the even exponent there, not to the even integer
        return round_mantissa(w, 0)
    m, e = torch.frexp(w)
    s = float(1 << (bits + 1))
    return torch.ldexp(torch.round(m * s) / s, e)


def round_gptq(weight: torch.Tensor, hessian: torch.Tensor, bits: int) -> torch.Tensor:
    """weight [out, in] rounded column by column against hessian [in, in] (sum of x x^T of the
    layer's inputs), onto the bits-bit grid of weight's dtype."""
    w = weight.detach().float().clone()  # [out, in]
    n = w.shape[1]
    h = hessian.double().clone()  # [in, in]
    dead = torch.diag(h) == 0  # inputs that are always zero: any value works, keep the nearest
    h[dead, dead] = 1
    h += DAMP * torch.mean(torch.diag(h)) * torch.eye(n, dtype=h.dtype)
    order = torch.argsort(torch.diag(h), descending=True, stable=True)
    w, h = w[:, order], h[order][:, order]
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()  # [in, in]
    q = torch.empty_like(w)
    for a in range(0, n, BLOCK):
        b = min(a + BLOCK, n)
        wb, ub = w[:, a:b].clone(), u[a:b, a:b]  # [out, B], [B, B]
        err = torch.empty_like(wb)
        for i in range(b - a):
            q[:, a + i] = float_grid(wb[:, i], bits)
            err[:, i] = (wb[:, i] - q[:, a + i]) / ub[i, i]
            wb[:, i:] -= err[:, i:i + 1] * ub[i:i + 1, i:]
        w[:, b:] -= err @ u[a:b, b:]
    q = q[:, torch.argsort(order)]
    return round_mantissa(q.to(weight.dtype), bits)  # the grid of weight's dtype (subnormals, range)


def calibrated_weights(units: list[tuple[torch.nn.Module, list[torch.nn.Module]]], root: torch.nn.Module,
                       calibrate: Callable[[torch.nn.Module], Any], bits: int,
                       eligible: Callable[[torch.nn.Parameter], bool]) -> dict[int, torch.Tensor]:
    """The rounded values of every eligible parameter of units, by id of the Parameter:
    nn.Linear weights by round_gptq, the others to nearest. Unit by unit, calibrate(root) runs
    with the parameters rounded so far swapped in, collecting H of this unit's linear layers
    only. The module's own values are put back before returning (also on error)."""
    out: dict[int, torch.Tensor] = {}
    originals: dict[int, tuple[torch.nn.Parameter, torch.Tensor]] = {}

    def swap(p: torch.nn.Parameter, q: torch.Tensor) -> None:
        originals.setdefault(id(p), (p, p.data))
        p.data = q
        out[id(p)] = q

    try:
        linear = {id(m.weight) for _, owners in units for m in owners if isinstance(m, torch.nn.Linear)}
        for _, owners in units:  # what calibration cannot improve is rounded to nearest first
            for m in owners:
                for p in m.parameters(recurse=False):
                    if eligible(p) and id(p) not in linear and id(p) not in out:
                        swap(p, round_mantissa(p.detach(), bits))
        for _, owners in units:
            todo = [m for m in owners if isinstance(m, torch.nn.Linear) and eligible(m.weight)
                    and id(m.weight) not in out]
            if not todo:
                continue
            hs: dict[int, torch.Tensor] = {}

            def collect(mod: torch.nn.Module, args: tuple, hs: dict[int, torch.Tensor] = hs) -> None:
                x = args[0].detach().reshape(-1, args[0].shape[-1]).double()  # [tokens, in]
                hs[id(mod)] = hs.get(id(mod), 0) + x.T @ x

            handles = [m.register_forward_pre_hook(collect) for m in todo]
            try:
                with torch.no_grad():
                    calibrate(root)
            finally:
                for hd in handles:
                    hd.remove()
            for m in todo:  # a layer the calibration never called (its weight read directly): nearest
                h = hs.pop(id(m), None)
                swap(m.weight, round_mantissa(m.weight.detach(), bits) if h is None else
                     round_gptq(m.weight, h, bits))
    finally:
        for p, data in originals.values():
            p.data = data
    return out
