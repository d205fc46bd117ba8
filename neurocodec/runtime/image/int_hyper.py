"""Exact integer hyper-synthesis: where the decoder's probabilities come from.

CompressAI computes the means and scales of y with float convolutions, whose results depend
on the thread count and the kernel chosen, and a scale that lands on the other side of a
scale-table boundary selects another CDF: the decode goes wrong (CompressAI issues #279,
#309). Here the trained h_s is quantised after training (weights, biases and activations to
fixed point, Ballé et al. 2019 "Integer networks") and evaluated on integer-valued float64
tensors. Every product and partial sum is an integer below 2^53, so it is exact in any
summation order: any thread count, any machine, same bits. Scale indices are then integer
comparisons, and the means are dyadic rationals, exact in float64.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from neurocodec.runtime.image.models import HyperSynthesis

F_IN = 6  # fractional bits of ẑ (integer symbols + the bottleneck's medians)
F_ACT = 8  # fractional bits of hidden activations and outputs
F_GAIN = 12  # fractional bits of the per-quality gains
W_BITS = 12  # weights: |w_int| < 2^W_BITS per layer
Z_CLAMP = 1 << 12  # |ẑ symbol| bound (the encoder clamps too)
ACT_CLAMP = 1 << 20  # activation bound: |acc| < 2^20 * 2^12 * K < 2^53 for K < 2^21


def quantize_hs(h_s: HyperSynthesis) -> dict[str, np.ndarray]:
    """Float h_s -> integer tensors ``hs.{i}.w``/``hs.{i}.b``/``hs.{i}.fw`` (int16/int64/int32)."""
    out = {}
    f_x = F_IN
    for i, layer in enumerate(h_s.layers):
        w = layer.weight.detach().double()
        b = layer.bias.detach().double()
        fw = W_BITS - 1 - math.ceil(math.log2(max(w.abs().max().item(), 1e-12)))
        out[f"hs.{i}.w"] = torch.round(w * 2.0**fw).to(torch.int16).numpy()  # |w| < 2^W_BITS
        out[f"hs.{i}.b"] = torch.round(b * 2.0 ** (fw + f_x)).to(torch.int64).numpy()
        out[f"hs.{i}.fw"] = np.array([fw], np.int32)
        f_x = F_ACT
    return out


class IntHyperSynthesis:
    """Runs the quantised h_s. Inputs and outputs are integer-valued float64 tensors."""

    def __init__(self, tensors: dict, kinds: list[str]):
        self.layers = []
        for i, kind in enumerate(kinds):
            w = torch.as_tensor(np.asarray(tensors[f"hs.{i}.w"]), dtype=torch.float64)
            b = torch.as_tensor(np.asarray(tensors[f"hs.{i}.b"]), dtype=torch.float64)
            fw = int(np.asarray(tensors[f"hs.{i}.fw"]).reshape(-1)[0])
            if not -64 < fw < 64:
                raise ValueError("corrupt integer hyper-synthesis")
            self.layers.append((kind, w, b, fw))

    @staticmethod
    def kinds_of(h_s: HyperSynthesis) -> list[str]:
        return ["deconv" if isinstance(m, torch.nn.ConvTranspose2d) else "conv" for m in h_s.layers]

    def __call__(self, z_sym: torch.Tensor, medians: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_sym: integer symbols [1, N, h, w]; medians: [N] float. -> (means, scales) as
        integers with F_ACT fractional bits, [1, M, 4h, 4w] each."""
        med = torch.round(medians.double() * 2**F_IN).view(1, -1, 1, 1)
        x = z_sym.double().clamp(-Z_CLAMP, Z_CLAMP) * 2**F_IN + med
        f_x = F_IN
        for i, (kind, w, b, fw) in enumerate(self.layers):
            if kind == "deconv":
                k, s = w.shape[2], 2
                acc = F.conv_transpose2d(x, w, stride=s, padding=k // 2, output_padding=s - 1)
            else:
                acc = F.conv2d(x, w, padding=w.shape[2] // 2)
            acc = acc + b.view(1, -1, 1, 1)
            shift = fw + f_x - F_ACT  # rescale to F_ACT fractional bits, round half up
            x = torch.floor((acc + 2.0 ** (shift - 1)) * 2.0**-shift) if shift > 0 else acc * 2.0**-shift
            if i < len(self.layers) - 1:
                x = x.clamp(0, ACT_CLAMP)  # ReLU
            else:
                x = x.clamp(-ACT_CLAMP, ACT_CLAMP)
            f_x = F_ACT
        means, scales = x.chunk(2, dim=1)
        return means, scales


def dequantize_hs(tensors: dict, h_s: HyperSynthesis) -> None:
    """Load the float h_s (used by encoder-side refinement) from the integer tensors, so the
    weights ship once."""
    f_x = F_IN
    with torch.no_grad():
        for i, layer in enumerate(h_s.layers):
            fw = int(np.asarray(tensors[f"hs.{i}.fw"]).reshape(-1)[0])
            layer.weight.copy_(torch.as_tensor(np.asarray(tensors[f"hs.{i}.w"]), dtype=torch.float64) * 2.0**-fw)
            layer.bias.copy_(torch.as_tensor(np.asarray(tensors[f"hs.{i}.b"]), dtype=torch.float64)
                             * 2.0 ** -(fw + f_x))
            f_x = F_ACT


def gain_int(gain: torch.Tensor) -> torch.Tensor:
    """Per-channel gains [M] -> integers with F_GAIN fractional bits (float64)."""
    return torch.round(gain.double() * 2**F_GAIN).clamp(1, 1 << 24)


def gaussian_params(means: torch.Tensor, scales: torch.Tensor, g_int: torch.Tensor,
                    table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer means/scales of y and the gain of quality q -> (means of gained y in float64,
    exact; CDF indices into the scale table as int32). Both are exact integer arithmetic."""
    frac = F_ACT + F_GAIN
    g = g_int.view(1, -1, 1, 1)
    mu = means * g * 2.0**-frac  # |means*g| < 2^44: exact
    s = scales * g  # integer, scale 2^-frac
    thresholds = torch.round(table.double() * 2.0**frac)  # [L]
    # CompressAI's build_indexes: the number of table entries (but the last) below the scale.
    idx = torch.searchsorted(thresholds[:-1].contiguous(), s.contiguous(), side="left")
    return mu, idx.to(torch.int32)
