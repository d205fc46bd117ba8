"""Decoding a coolchic .nc without torch: numpy and the C++ core only, and every step in exact
integer arithmetic, so the pixels are the same bits in every process, on every machine, with
any thread count. The integers are held in float64 arrays (BLAS matrix products, no
conversions): every value and partial sum stays below 2^52 (activations are clamped to 2^30,
parameters are at most 2^12, a sum has at most 64 x 9 terms), so every float operation is
exact whatever its order, and ``floor(v * 2^-k)`` is the shift ``v >> k``.

Fixed point (F_A = 12 fractional bits for activations; ``>>`` floors, also for negatives):

* latents (ARM-decoded integers) enter as ``x << F_A``;
* the upsampler doubles a grid along the width, then along the height: out[2n] =
  sum_j t_j x[n - 2 + j], out[2n + 1] = sum_j t_{3-j} x[n - 1 + j] (edge samples repeated),
  each ``(acc + 2^(k_up - 1)) >> k_up`` (no rounding term when k_up = 0), cropped to the next
  level's size. Starting from the coarsest level, the upsampled stack gets the next level
  as a new plane: the synthesis input is L planes at full resolution, coarsest first;
* a synthesis layer: ``acc = (b << F_A) + sum W * a`` over its 1x1 or 3x3 window (edge
  samples repeated), ``a' = (acc + 2^(k_syn - 1)) >> k_syn``, ``+ a`` if residual, ReLU if
  flagged; every activation is then clamped to [-2^30, 2^30];
* pixels: ``clip((a * 255 + 2^(F_A - 1)) >> F_A, 0, 255)``.

The numpy functions here (upsample_stack, synthesis) are the reference specification;
decode_streams runs the same arithmetic in the C++ core (weightzip.core.synth_decode,
csrc/synthesis.hpp), which gives the same bits, several times faster.
"""
from __future__ import annotations

import numpy as np

from neurocodec.runtime.coolchic.format import (
    CLAMP,
    F_A,
    CoolChicNcError,
    Header,
    arm_net,
    decode_params,
    split_layers,
)
from weightzip.core import FormatError, arm_decode, synth_decode


def _shift(acc: np.ndarray, k: int) -> np.ndarray:
    """(acc + 2^(k-1)) >> k, on integer-valued float64 (exact: see above)."""
    return np.floor((acc + float(1 << (k - 1))) * 2.0 ** -k) if k > 0 else acc


def upsample2(x: np.ndarray, taps: np.ndarray, k: int, out_h: int, out_w: int) -> np.ndarray:
    """[C, h, w] -> [C, out_h, out_w] (out_h <= 2h, out_w <= 2w), in fixed point."""
    t = [float(v) for v in taps]
    for axis, n_out in ((2, out_w), (1, out_h)):
        n = x.shape[axis]
        xp = np.take(x, np.clip(np.arange(-2, n + 2), 0, n - 1), axis=axis)

        def s(j: int, xp: np.ndarray = xp, n: int = n, axis: int = axis) -> np.ndarray:
            return np.take(xp, np.arange(j, j + n), axis=axis)
        p0 = t[0] * s(0) + t[1] * s(1) + t[2] * s(2) + t[3] * s(3)
        p1 = t[3] * s(1) + t[2] * s(2) + t[1] * s(3) + t[0] * s(4)
        both = np.stack([p0, p1], axis=axis + 1)
        shape = list(x.shape)
        shape[axis] = 2 * n
        x = np.clip(_shift(both.reshape(shape), k), -CLAMP, CLAMP)
        x = np.take(x, np.arange(n_out), axis=axis)
    return x


def upsample_stack(levels: list[np.ndarray], taps: np.ndarray, k_up: int) -> np.ndarray:
    """Integer latent levels (finest first) -> [L, H, W] synthesis input, coarsest first."""
    scale = float(1 << F_A)
    cur = levels[-1].astype(np.float64)[None] * scale
    for lvl in range(len(levels) - 2, -1, -1):
        h, w = levels[lvl].shape
        cur = upsample2(cur, taps, k_up, h, w)
        cur = np.concatenate([cur, levels[lvl].astype(np.float64)[None] * scale])
    return cur


def conv(a: np.ndarray, w: np.ndarray, b: np.ndarray, k_syn: int) -> np.ndarray:
    """One synthesis convolution on [C, H, W] (before residual, activation and clamp)."""
    _, h, wd = a.shape
    o, c, k, _ = w.shape
    # BLAS, yet exact: |w| <= 2^12, |a| <= 2^30 and at most 64 * 9 terms, so every partial
    # sum is an integer below 2^52, whatever the summation order or thread count.
    wf = w.astype(np.float64).reshape(o, c * k * k)
    if k == 1:
        cols = a.reshape(c, h * wd)
    else:
        r = k // 2
        ap = np.pad(a, ((0, 0), (r, r), (r, r)), mode="edge")
        cols = np.stack([ap[:, dy:dy + h, dx:dx + wd] for dy in range(k) for dx in range(k)], axis=1)
        cols = cols.reshape(c * k * k, h * wd)  # rows (channel, dy, dx): the order of w's [c, k, k]
    acc = (wf @ cols).reshape(o, h, wd)
    return _shift(acc + b.astype(np.float64)[:, None, None] * float(1 << F_A), k_syn)


def synthesis(hd: Header, groups: dict[str, np.ndarray], a: np.ndarray) -> np.ndarray:
    layers = hd.syn_layers()
    ws = split_layers(groups["syn_w"], [(o, i, k, k) for o, i, k, _ in layers])
    bs = split_layers(groups["syn_b"], [(o,) for o, *_ in layers])
    for (_, _, _, flags), w, b in zip(layers, ws, bs):
        out = conv(a, w, b, hd.k_syn)
        if flags & 2:
            out = out + a
        if flags & 1:
            out = np.maximum(out, 0)
        a = np.clip(out, -CLAMP, CLAMP)
    return a


def decode_streams(streams: list[bytes], h: int, w: int, channels: int,
                   threads: int = 1) -> tuple[np.ndarray, Header]:
    """The three streams of a coolchic file -> (uint8 [H, W, planes], header); planes is 1 for
    gray sources and 3 otherwise. CoolChicNcError for anything undecodable."""
    if len(streams) != 3:
        raise CoolChicNcError("corrupt .nc file (a coolchic file has 3 streams)")
    hd = Header.from_bytes(streams[0], channels)
    groups = decode_params(streams[1], hd)
    shapes = hd.level_shapes(h, w)
    try:
        levels = arm_decode(streams[2], shapes, arm_net(hd, groups), hd.alphabet, threads=threads)
    except (FormatError, ValueError) as e:  # ValueError: a net the core refuses (overflow bound)
        raise CoolChicNcError(f"corrupt coolchic latent stream ({e})") from None
    layers = hd.syn_layers()
    ws = split_layers(groups["syn_w"], [(o, i, k, k) for o, i, k, _ in layers])
    bs = split_layers(groups["syn_b"], [(o,) for o, *_ in layers])
    net = [(w, b, f) for w, b, (*_, f) in zip(ws, bs, layers)]
    try:  # the header and parameter checks keep every value inside the core's limits
        return synth_decode(levels, groups["up"], hd.k_up, net, hd.k_syn), hd
    except ValueError as e:
        raise CoolChicNcError(f"undecodable coolchic file ({e})") from None
