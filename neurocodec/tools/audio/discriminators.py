"""Discriminators for the adversarial stage of audio training (HiFi-GAN's multi-period, and a
multi-resolution complex-STFT one as in DAC/EnCodec), least-squares GAN losses and feature
matching. Sized for CPU training: channel widths are a fraction of the published ones
(`width` scales them all).

All take waveforms [B, 1, T] and return, per sub-discriminator, (logits, feature maps).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Outputs = list[tuple[torch.Tensor, list[torch.Tensor]]]


def _stack(convs: Sequence[nn.Module], out: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU convolutions, then the logits layer: (flattened logits, every layer's output)."""
    fmaps = []
    for conv in convs:
        h = F.leaky_relu(conv(h), 0.1)
        fmaps.append(h)
    h = out(h)
    fmaps.append(h)
    return h.flatten(1), fmaps


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's: the waveform folded to [T/p, p] and seen by 2-D convolutions along time."""

    def __init__(self, period: int, width: int = 16):
        super().__init__()
        self.period = period
        chans = [1, width, 4 * width, 16 * width, 32 * width]
        self.convs = nn.ModuleList([weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3, 1), padding=(2, 0)))
                                    for i in range(4)])
        self.last = weight_norm(nn.Conv2d(chans[-1], chans[-1], (5, 1), 1, padding=(2, 0)))
        self.out = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        return _stack([*self.convs, self.last], self.out, x.view(b, c, -1, self.period))  # [B, 1, T/p, p]


class STFTDiscriminator(nn.Module):
    """2-D convolutions over one resolution's complex STFT (real and imaginary parts as two
    channels), strided along frequency: it sees phase, which mel-based losses do not."""

    def __init__(self, n_fft: int, hop: int, width: int = 16):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(2, width, (3, 9), padding=(1, 4))),
            *[weight_norm(nn.Conv2d(width, width, (3, 9), (1, 2), padding=(1, 4))) for _ in range(3)],
            weight_norm(nn.Conv2d(width, width, (3, 3), padding=(1, 1)))])
        self.out = weight_norm(nn.Conv2d(width, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(x.reshape(-1, x.shape[-1]), self.n_fft, self.hop, window=self.window, center=True,
                          return_complex=True)  # [B, F, frames]
        return _stack(self.convs, self.out, torch.stack([spec.real, spec.imag], 1).transpose(2, 3))  # [B, 2, frames, F]


class Discriminators(nn.Module):
    """Multi-period (periods 2, 3, 5, 7, 11) and multi-resolution STFT discriminators."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 resolutions: Sequence[tuple[int, int]] = ((2048, 512), (1024, 256), (512, 128)), width: int = 16):
        super().__init__()
        self.subs = nn.ModuleList([PeriodDiscriminator(p, width) for p in periods] +
                                  [STFTDiscriminator(n, h, width) for n, h in resolutions])

    def forward(self, x: torch.Tensor) -> Outputs:
        return [d(x) for d in self.subs]


def d_loss(real: Outputs, fake: Outputs) -> torch.Tensor:
    """Least-squares GAN, discriminator side: real -> 1, fake -> 0."""
    return sum(((1 - r) ** 2).mean() + (f ** 2).mean() for (r, _), (f, _) in zip(real, fake)) / len(real)


def g_loss(fake: Outputs) -> torch.Tensor:
    """Least-squares GAN, generator side: fake -> 1."""
    return sum(((1 - f) ** 2).mean() for f, _ in fake) / len(fake)


def feature_matching(real: Outputs, fake: Outputs) -> torch.Tensor:
    """Mean L1 between the discriminators' feature maps of real (no gradient) and fake audio."""
    pairs = [(fr, ff) for (_, fmr), (_, fmf) in zip(real, fake) for fr, ff in zip(fmr, fmf)]
    return sum(F.l1_loss(ff, fr.detach()) for fr, ff in pairs) / len(pairs)
