"""Quantisation of a fitted coolchic model into the decoder's integer formats: each network's
weight step 2^-k chosen by RD cost (λ · 255² · MSE + bpp), the latents rounded, the three
streams written (format.py; the integer decoder is decoder.py and csrc). Imported only when
encoding."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from neurocodec.runtime.coolchic.fit import A_FIT, CoolChicModel
from neurocodec.runtime.coolchic.format import Header, arm_net, encode_params
from weightzip.core import ARM_CONTEXT_5X5, arm_encode, arm_params


def _q(t: torch.Tensor, k: int) -> np.ndarray:
    return np.clip(np.rint(t.detach().double().numpy() * 2.0 ** k), -4096, 4096).astype(np.int64)


def _arm_groups(model: CoolChicModel, k: int) -> dict[str, np.ndarray]:
    return {"arm_w": np.concatenate([_q(m.weight, k).reshape(-1) for m in model.arm]),
            "arm_b": np.concatenate([_q(m.bias, k).reshape(-1) for m in model.arm])}


def _syn_groups(model: CoolChicModel, k: int) -> dict[str, np.ndarray]:
    return {"syn_w": np.concatenate([_q(c.weight, k).reshape(-1) for c in model.syn]),
            "syn_b": np.concatenate([_q(c.bias, k).reshape(-1) for c in model.syn])}


def _header(model: CoolChicModel, alphabet: int, k_arm: int, k_up: int, k_syn: int) -> Header:
    return Header(model.levels, alphabet, ARM_CONTEXT_5X5, tuple(m.out_features for m in model.arm[:-1]),
                  k_arm, k_up, tuple(model.syn_spec), k_syn)


def _param_bits(groups: dict[str, np.ndarray]) -> int:
    full = {g: groups.get(g, np.zeros(0, np.int64)) for g in ("arm_w", "arm_b", "up", "syn_w", "syn_b")}
    return 8 * len(encode_params(full))


@torch.no_grad()
def _distortion(model: CoolChicModel, x: torch.Tensor, taps: np.ndarray | None, k_up: int,
                syn: dict[str, np.ndarray] | None, k_syn: int) -> float:
    """MSE of the model with hard latents and (optionally) quantised upsampler / synthesis."""
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    if taps is not None:
        model.taps.copy_(torch.from_numpy(taps / 2.0 ** k_up))
    if syn is not None:
        wpos = bpos = 0
        for c in model.syn:
            nw, nb = c.weight.numel(), c.bias.numel()
            c.weight.copy_(torch.from_numpy(syn["syn_w"][wpos:wpos + nw] / 2.0 ** k_syn).view_as(c.weight))
            c.bias.copy_(torch.from_numpy(syn["syn_b"][bpos:bpos + nb] / 2.0 ** k_syn).view_as(c.bias))
            wpos, bpos = wpos + nw, bpos + nb
    x_hat, _ = model("hard")
    mse = float(F.mse_loss(x_hat.clamp(0, 1), x))
    for n, p in model.named_parameters():
        p.copy_(saved[n])
    return mse


def quantise(model: CoolChicModel, img: np.ndarray, lmbda: float) -> tuple[Header, list[bytes], dict]:
    """The fitted model -> (header, the three streams, statistics), each net's weight step
    chosen by RD cost (λ · 255² · MSE + bpp)."""
    h, w, _ = img.shape
    n_px = h * w
    model.bf16 = False  # the step search measures in fp32
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    levels = [np.rint(y.detach().clamp(-A_FIT, A_FIT).double().numpy()[0, 0]).astype(np.int32)
              for y in model.latents]
    alphabet = max(1, max(int(np.abs(v).max()) for v in levels))

    def cost(bits: float, mse: float) -> float:
        return lmbda * 255 ** 2 * mse + bits / n_px

    best: tuple[float, int] | None = None
    for k in range(4, 13):  # the ARM: rate only
        g = _arm_groups(model, k)
        hd = _header(model, alphabet, max(k, 2), 0, 0)
        try:
            lat = sum(p.bits() for p in arm_params(levels, arm_net(hd, g), alphabet))
        except ValueError:  # a net beyond the core's overflow bound
            continue
        c = cost(lat + _param_bits(g), 0.0)
        if best is None or c < best[0]:
            best = (c, k)
    if best is None:
        raise RuntimeError("no ARM quantisation fits the fixed-point core")
    k_arm = best[1]
    def up_cost(k: int) -> float:
        t = _q(model.taps, k)
        return cost(_param_bits({"up": t}), _distortion(model, x, t, k, None, 0))
    k_up = min(range(3, 11), key=up_cost)
    taps = _q(model.taps, k_up)

    def syn_cost(k: int) -> float:
        g = _syn_groups(model, k)
        return cost(_param_bits(g), _distortion(model, x, taps, k_up, g, k))
    k_syn = min(range(4, 12), key=syn_cost)
    hd = _header(model, alphabet, k_arm, k_up, k_syn)
    groups = {**_arm_groups(model, k_arm), "up": taps, **_syn_groups(model, k_syn)}
    streams = [hd.to_bytes(), encode_params(groups), arm_encode(levels, arm_net(hd, groups), alphabet)]
    mse = _distortion(model, x, taps, k_up, _syn_groups(model, k_syn), k_syn)
    return hd, streams, {"k_arm": k_arm, "k_up": k_up, "k_syn": k_syn, "alphabet": alphabet,
                         "psnr_float": -10 * math.log10(max(mse, 1e-10))}
