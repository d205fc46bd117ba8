"""Image quality metrics on uint8 HxWxC arrays: PSNR-RGB and MS-SSIM.

Both follow the conventions of the learned-compression literature (CompressAI, the Kodak
anchors in ../shared/anchors): PSNR over all RGB values of an image (one MSE, not a mean of
per-channel PSNRs) and MS-SSIM as computed by ``pytorch_msssim.ms_ssim(data_range=255)``,
re-implemented here so the package does not depend on pytorch_msssim.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC arrays, got shape {a.shape}")


def psnr(a: np.ndarray, b: np.ndarray, max_val: float = 255) -> float:
    """PSNR-RGB in dB: 10*log10(max_val^2 / MSE) with the MSE over every value of the image.

    Identical images give ``inf`` (the MSE is exactly 0).
    """
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(max_val * max_val / mse)


def _gauss_1d(size: int, sigma: float, dtype: torch.dtype) -> torch.Tensor:
    # Same construction as pytorch_msssim._fspecial_gauss_1d, so the window weights agree.
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def _blur(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian blur per channel (N, C, H, W)."""
    c = x.shape[1]
    k = win.numel()
    x = F.conv2d(x, win.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)  # along W
    return F.conv2d(x, win.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)  # along H


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor,
             data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and contrast-structure terms, shape (N, C)."""
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    # one grouped convolution for the five blurred maps (several times faster than five)
    mu1, mu2, xx, yy, xy = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), win).chunk(5, 1)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1, s2, s12 = xx - mu1_sq, yy - mu2_sq, xy - mu12
    cs_map = (2 * s12 + c2) / (s1 + s2 + c2)
    ssim_map = (2 * mu12 + c1) / (mu1_sq + mu2_sq + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255) -> float:
    """5-scale MS-SSIM (Wang et al. 2003), matching ``pytorch_msssim.ms_ssim``.

    Gaussian window 11 / sigma 1.5, weights ``MS_SSIM_WEIGHTS``, each scale computed per
    channel and the final product averaged over channels.  Computed in float32 like the
    reference on float32 input (float64 differs by ~2e-7 on Kodak and is 5x slower on CPU).
    Like the reference, the
    smaller image side must exceed 160 px (4 downsamplings of an 11-tap window); smaller
    images raise ``ValueError``.
    """
    _check_pair(a, b)
    if min(a.shape[:2]) <= (WIN_SIZE - 1) * 2**4:
        raise ValueError(f"MS-SSIM needs both sides > {(WIN_SIZE - 1) * 2 ** 4} px, got {a.shape[:2]}")

    def to_t(v: np.ndarray) -> torch.Tensor:
        v = v if v.ndim == 3 else v[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).permute(2, 0, 1)[None]

    x, y = to_t(a), to_t(b)
    win = _gauss_1d(WIN_SIZE, WIN_SIGMA, torch.float32)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float32)
    mcs = []
    with torch.no_grad():
        for i in range(len(MS_SSIM_WEIGHTS)):
            ssim_pc, cs = _ssim_cs(x, y, win, data_range)
            if i < len(MS_SSIM_WEIGHTS) - 1:
                mcs.append(torch.relu(cs))
                # pytorch_msssim pads odd sides by 1 (zeros counted in the average)
                pad = [s % 2 for s in x.shape[2:]]
                x = F.avg_pool2d(x, kernel_size=2, padding=pad)
                y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        stack = torch.stack(mcs + [torch.relu(ssim_pc)], dim=0)  # (level, N, C)
        val = torch.prod(stack ** weights.view(-1, 1, 1), dim=0)
    return float(val.mean())
