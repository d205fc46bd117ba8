"""Encoder-side latent refinement: spend encode time, not decode time, on rate-distortion.

Starting from the analysis transform's y and z, run Adam on (y, z) for this one image to
minimise λ·255²·MSE + bpp of the *quantised* latents: rounding passes gradients straight
through (STE), and the rates come from the model's own entropy models, so the optimised
objective is the one the bitstream pays. The decoder is untouched (Campos et al. 2019;
Yang et al. 2020; Yang & Mandt 2023).
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from neurocodec.runtime.image.int_hyper import F_GAIN


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def refine_latents(codec, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, q: int, steps: int,
                   lr: float = 5e-3, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    model = codec.model
    lmbda = model.cfg.lmbdas[q]
    g = (codec.gain_int[q] / 2.0**F_GAIN).float().view(1, -1, 1, 1)
    ig = codec.igain[q].view(1, -1, 1, 1)
    med = codec.medians.view(1, -1, 1, 1)
    y = y.detach().clone().requires_grad_(True)
    z = z.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y, z], lr=lr)
    n_px = x.shape[2] * x.shape[3]
    best = (float("inf"), y.detach().clone(), z.detach().clone())
    with torch.enable_grad():
        for _ in tqdm(range(steps), desc="refine", disable=not progress, leave=False):
            z_hat = _ste_round(z - med) + med
            # The bottleneck's density takes [C, 1, n] (its forward() does this reshape).
            z_lik = model.entropy_bottleneck._likelihood(z_hat.permute(1, 0, 2, 3).reshape(z.shape[1], 1, -1))
            if isinstance(z_lik, tuple):  # compressai returns (lik, lower, upper) in some versions
                z_lik = z_lik[0]
            means, scales = model.h_s(z_hat)
            mu = means * g
            y_hat = _ste_round(y * g - mu) + mu
            y_lik = model.gaussian_conditional._likelihood(y_hat, scales * g, means=mu)
            y_lik = model.gaussian_conditional.likelihood_lower_bound(y_lik)
            z_lik = model.entropy_bottleneck.likelihood_lower_bound(z_lik)
            bpp = -(y_lik.log2().sum() + z_lik.log2().sum()) / n_px
            mse = (model.g_s(y_hat * ig) - x).pow(2).mean()
            loss = lmbda * 255**2 * mse + bpp
            if loss.item() < best[0]:
                best = (loss.item(), y.detach().clone(), z.detach().clone())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return best[1], best[2]
