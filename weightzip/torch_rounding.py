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
before already rounded, so each unit is calibrated on the inputs it will see; this costs one
run of `calibrate` per unit and keeps one unit's H matrices (in_features^2 float64 each) in
memory at a time. Other parameters (embeddings, convolutions, norms) are rounded to nearest.

`correct_drift=True` aims each layer at the *original* model's outputs instead of at its own
outputs on the rounded model's inputs (as GPTQv2/GPTAQ do): with x its input in the original
model and x' in the rounded one, the target is the W* minimising sum |W x - W* x'|^2, a ridge
regression towards W, W* = W + W R (H' + λI)^-1 with R = sum (x - x') x'^T, which GPTQ then
rounds against H' = sum x' x'^T. Each layer then undoes much of the error the layers before it
left. It costs a second `calibrate` run per unit (with the original weights; it must feed the
same inputs each time) and that unit's original inputs in memory (float32); a layer called a
different number of times in the two runs is not corrected. Measured (bench/results/neuzip.md,
3 bits): 24 random 2048-wide BF16 Linear+GELU layers 6.9 % -> 4.7 % output error, but MiniLM
4.6 % -> 20 % (with 4x the calibration sentences 4.0 % -> 18 %), and on the calibration
sentences themselves too (3.4 % -> 17 %), even with the corrected weights left unrounded:
each layer's fit improves while the model's output gets worse. A synthetic pre-LN residual
MLP is unchanged (1.63 %). The cause is not found, so it is off by default.

Damping λ = DAMP_PER_RATIO * in_features / tokens (within DAMP_RANGE) of mean(diag H'): with
few calibration tokens per input feature H' is a noisy estimate and GPTQ over-fits it.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

MANTISSA = {torch.bfloat16: 7, torch.float16: 10, torch.float32: 23}
_INT = {2: torch.int16, 4: torch.int32}
DAMP_PER_RATIO = 0.3  # λ = 0.3 * in_features / tokens: 0.3 at 2048 tokens in 2048 dims (measured best)
DAMP_RANGE = (0.01, 1.0)  # GPTQ's usual 0.01 once tokens >= 30 x in_features
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


def damping(in_features: int, tokens: int) -> float:
    """λ / mean(diag H) for a layer calibrated on `tokens` input rows (module docstring)."""
    lo, hi = DAMP_RANGE
    return min(hi, max(lo, DAMP_PER_RATIO * in_features / max(tokens, 1)))


def _damped(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    h = hessian.double().clone()  # [in, in]
    dead = torch.diag(h) == 0  # inputs that are always zero: any value works, keep the nearest
    h[dead, dead] = 1
    h += damp * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], dtype=h.dtype)
    return h


def corrected_target(weight: torch.Tensor, hessian: torch.Tensor, residual: torch.Tensor,
                     damp: float) -> torch.Tensor:
    """W* = W + W R (H' + λI)^-1 (float32 [out, in]): the weights whose outputs on the rounded
    model's inputs x' come closest to the original outputs W x (residual R = sum (x - x') x'^T),
    a ridge regression towards W."""
    w = weight.detach().double()  # [out, in]
    fix = torch.cholesky_solve((w @ residual).T, torch.linalg.cholesky(_damped(hessian, damp))).T  # W R H^-1
    return (w + fix).float()


def round_gptq(weight: torch.Tensor, hessian: torch.Tensor, bits: int, damp: float = DAMP_RANGE[0],
               target: torch.Tensor | None = None) -> torch.Tensor:
    """weight [out, in] rounded column by column against hessian [in, in] (sum of x x^T of the
    layer's inputs), onto the bits-bit grid of weight's dtype. With target (float32 [out, in]),
    the values rounded are target's (corrected_target), still on weight's grid."""
    w = (weight if target is None else target).detach().float().clone()  # [out, in]
    n = w.shape[1]
    h = _damped(hessian, damp)
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
                       eligible: Callable[[torch.nn.Parameter], bool], correct_drift: bool = False
                       ) -> dict[int, torch.Tensor]:
    """The rounded values of every eligible parameter of units, by id of the Parameter:
    nn.Linear weights by round_gptq, the others to nearest. Unit by unit, calibrate(root) runs
    with the parameters rounded so far swapped in (and, with correct_drift, first with the
    original values), collecting this unit's linear layers' inputs only. The module's own
    values are put back before returning (also on error)."""
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
            if todo:
                for m, q in _calibrate_unit(todo, root, calibrate, bits, originals, correct_drift).items():
                    swap(m.weight, q)
    finally:
        for p, data in originals.values():
            p.data = data
    return out


def _calibrate_unit(todo: list[torch.nn.Linear], root: torch.nn.Module, calibrate: Callable[[torch.nn.Module], Any],
                    bits: int, originals: dict[int, tuple[torch.nn.Parameter, torch.Tensor]], correct_drift: bool
                    ) -> dict[torch.nn.Linear, torch.Tensor]:
    """The rounded weights of one unit's linear layers: a run with the rounded weights (as root
    holds them now) sums H'; with correct_drift, a run with the original weights before it
    records their inputs x, and the second run sums R too."""
    seen: dict[int, list[torch.Tensor | None]] = {id(m): [] for m in todo}  # original inputs, per call
    hs: dict[int, torch.Tensor] = {}
    rs: dict[int, torch.Tensor] = {}
    rows: dict[int, int] = {}
    calls: dict[int, int] = {}
    unpaired: set[int] = set()

    def record(mod: torch.nn.Module, args: tuple) -> None:
        seen[id(mod)].append(_inputs(args).float())

    def collect(mod: torch.nn.Module, args: tuple) -> None:
        k, x = id(mod), _inputs(args).double()
        i = calls[k] = calls.get(k, 0) + 1
        hs[k] = hs.get(k, 0) + x.T @ x
        rows[k] = rows.get(k, 0) + x.shape[0]
        x0 = seen[k][i - 1] if i <= len(seen[k]) else None
        if x0 is None or x0.shape != x.shape:
            unpaired.add(k)
        elif k not in unpaired:
            rs[k] = rs.get(k, 0) + (x0.double() - x).T @ x
        if i <= len(seen[k]):
            seen[k][i - 1] = None  # freed once used

    rounded = [(p, p.data) for p, _ in originals.values()]
    if correct_drift:
        _run_hooked(todo, record, root, calibrate, list(originals.values()))
    _run_hooked(todo, collect, root, calibrate, rounded)
    out = {}
    for m in todo:
        k = id(m)
        if k not in hs:  # a layer the calibration never called (its weight read directly): nearest
            out[m] = round_mantissa(m.weight.detach(), bits)
            continue
        damp = damping(m.in_features, rows[k])
        paired = correct_drift and k not in unpaired and calls[k] == len(seen[k]) and k in rs
        target = corrected_target(m.weight, hs[k], rs[k], damp) if paired else None
        out[m] = round_gptq(m.weight, hs[k], bits, damp, target)
    return out


def _inputs(args: tuple) -> torch.Tensor:
    return args[0].detach().reshape(-1, args[0].shape[-1])  # [tokens, in]


def _run_hooked(mods: list[torch.nn.Module], hook: Callable[[torch.nn.Module, tuple], None], root: torch.nn.Module,
                calibrate: Callable[[torch.nn.Module], Any], values: list[tuple[torch.nn.Parameter, torch.Tensor]]
                ) -> None:
    """calibrate(root) with hook before each of mods, and the given parameter values in place."""
    for p, data in values:
        p.data = data
    handles = [m.register_forward_pre_hook(hook) for m in mods]
    try:
        with torch.no_grad():
            calibrate(root)
    finally:
        for hd in handles:
            hd.remove()
