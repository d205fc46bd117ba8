"""Reconstruction losses for the audio codec, in plain torch (no torchaudio, no librosa).

- MultiScaleMelLoss: DAC's multi-scale mel loss (windows of 32..2048 samples, hop = window/4).
- MultiResolutionSTFTLoss: Parallel WaveGAN's (Yamamoto et al. 2020) spectral convergence plus
  log-magnitude L1 at three resolutions.
- ComplexSTFTLoss: L1 between the real and imaginary parts at several resolutions: unlike the
  magnitude losses it ties the output to the input's phase.
- waveform_l1.

All take (x_hat, x), shaped [B, 1, T] or [B, T], with x the reference. STFTs are centred with
reflect padding, so T must exceed half the longest window (1024 samples by default).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Slaney's Auditory Toolbox mel scale (librosa's default, htk=False): linear below 1 kHz
# (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
_F_SP, _MIN_LOG_HZ, _MIN_LOG_MEL, _LOGSTEP = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    log_part = _MIN_LOG_MEL + torch.log(f.clamp_min(_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (m - _MIN_LOG_MEL))
    return torch.where(m >= _MIN_LOG_MEL, log_part, _F_SP * m)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None, norm: str | None = "slaney") -> torch.Tensor:
    """Triangular mel filters [n_mels, n_fft//2 + 1], as librosa.filters.mel. norm="slaney"
    scales each triangle to unit area in Hz (2 / bandwidth); norm=None leaves peaks at 1, and
    then the rows sum to 1 between the first and last peak."""
    fmax = sr / 2 if fmax is None else fmax
    lim = hz_to_mel(torch.tensor([fmin, fmax], dtype=torch.float64))
    edges = mel_to_hz(torch.linspace(float(lim[0]), float(lim[1]), n_mels + 2, dtype=torch.float64))
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)  # [n_bins]
    rise = (freqs - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]  # [n_mels, n_bins]
    fall = (edges[2:, None] - freqs) / (edges[2:] - edges[1:-1])[:, None]
    fb = torch.minimum(rise, fall).clamp_min(0)
    if norm == "slaney":
        fb = fb * (2 / (edges[2:] - edges[:-2]))[:, None]
    elif norm is not None:
        raise ValueError(f"unknown norm {norm!r}")
    return fb.float()


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])  # [B, T]


def _stft_mag(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(_flat(x), n_fft, hop_length=hop, win_length=len(window), window=window,
                      center=True, pad_mode="reflect", return_complex=True)
    return spec.abs()  # [B, n_fft//2 + 1, frames]


class MultiScaleMelLoss(nn.Module):
    """DAC's mel loss: per window length w (hop w/4, Hann), the mel spectrogram of |STFT| is
    compared by L1 on log10(clamp(mel, eps)^pow) and, weighted by mag_weight, by L1 on the mel
    magnitudes themselves. Small windows catch transients, large ones pitch. (DAC's training
    config sets mag_weight to 0.)"""

    def __init__(self, sample_rate: int = 24000,
                 window_lengths: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
                 n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320), clamp_eps: float = 1e-5,
                 mag_weight: float = 1.0, log_weight: float = 1.0, pow: float = 2.0,
                 fmin: float = 0.0, fmax: float | None = None):
        super().__init__()
        if len(window_lengths) != len(n_mels):
            raise ValueError("window_lengths and n_mels differ in length")
        self.window_lengths = tuple(window_lengths)
        self.clamp_eps, self.mag_weight, self.log_weight, self.pow = clamp_eps, mag_weight, log_weight, pow
        for w, m in zip(window_lengths, n_mels):
            self.register_buffer(f"fb_{w}", mel_filterbank(sample_rate, w, m, fmin, fmax), persistent=False)
            self.register_buffer(f"win_{w}", torch.hann_window(w), persistent=False)

    def mel(self, x: torch.Tensor, w: int) -> torch.Tensor:
        mag = _stft_mag(x, w, w // 4, getattr(self, f"win_{w}"))  # [B, w//2 + 1, frames]
        return getattr(self, f"fb_{w}") @ mag  # [B, n_mels, frames]

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loss = x.new_zeros(())
        for w in self.window_lengths:
            m_hat, m = self.mel(x_hat, w), self.mel(x, w)
            log_hat = m_hat.clamp_min(self.clamp_eps).pow(self.pow).log10()
            log_ref = m.clamp_min(self.clamp_eps).pow(self.pow).log10()
            loss = loss + self.log_weight * F.l1_loss(log_hat, log_ref)
            if self.mag_weight:
                loss = loss + self.mag_weight * F.l1_loss(m_hat, m)
        return loss


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of spectral convergence ||S - Ŝ||_F / ||S||_F (over the batch) plus
    L1 between log magnitudes; magnitudes are floored at sqrt(1e-7) as in Parallel WaveGAN."""

    def __init__(self, fft_sizes: Sequence[int] = (1024, 2048, 512),
                 hop_sizes: Sequence[int] = (120, 240, 50), win_lengths: Sequence[int] = (600, 1200, 240)):
        super().__init__()
        self.resolutions = tuple(zip(fft_sizes, hop_sizes, win_lengths))
        for n_fft, _hop, win in self.resolutions:
            self.register_buffer(f"win_{n_fft}", torch.hann_window(win), persistent=False)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loss = x.new_zeros(())
        for n_fft, hop, _win in self.resolutions:
            window = getattr(self, f"win_{n_fft}")
            s_hat = _stft_mag(x_hat, n_fft, hop, window).clamp_min(math.sqrt(1e-7))  # [B, bins, frames]
            s = _stft_mag(x, n_fft, hop, window).clamp_min(math.sqrt(1e-7))
            sc = torch.linalg.vector_norm(s - s_hat) / torch.linalg.vector_norm(s)
            loss = loss + sc + F.l1_loss(s_hat.log(), s.log())
        return loss / len(self.resolutions)


class ComplexSTFTLoss(nn.Module):
    """Mean over resolutions of L1 between the complex STFTs' real and imaginary parts, each
    divided by the reference's mean magnitude (so quiet and loud segments weigh alike)."""

    def __init__(self, fft_sizes: Sequence[int] = (2048, 512, 128)):
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)
        for n in self.fft_sizes:
            self.register_buffer(f"win_{n}", torch.hann_window(n), persistent=False)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loss = x.new_zeros(())
        for n in self.fft_sizes:
            kw = {"hop_length": n // 4, "window": getattr(self, f"win_{n}"), "center": True, "pad_mode": "reflect",
                  "return_complex": True}
            s_hat, s = torch.stft(_flat(x_hat), n, **kw), torch.stft(_flat(x), n, **kw)  # [B, bins, frames]
            scale = s.abs().mean(dim=(1, 2), keepdim=True).clamp_min(1e-5)
            loss = loss + F.l1_loss(torch.view_as_real(s_hat / scale), torch.view_as_real(s / scale))
        return loss / len(self.fft_sizes)


def waveform_l1(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(x_hat, x)


def neg_si_sdr(x_hat: torch.Tensor, x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Batch mean of -SI-SDR in dB (Le Roux et al. 2019): a scale-invariant waveform loss that,
    unlike the spectral losses, rewards the right phase."""
    x, x_hat = _flat(x), _flat(x_hat)  # [B, T]
    x = x - x.mean(-1, keepdim=True)
    x_hat = x_hat - x_hat.mean(-1, keepdim=True)
    s = (x_hat * x).sum(-1, keepdim=True) / (x.pow(2).sum(-1, keepdim=True) + eps) * x
    ratio = (s.pow(2).sum(-1) + eps) / ((x_hat - s).pow(2).sum(-1) + eps)
    # Near-silent references (padding of short clips) have no phase to get right: left out.
    loud = x.pow(2).mean(-1) > 1e-6  # RMS above -60 dBFS
    return -(10 * torch.log10(ratio) * loud).sum() / loud.sum().clamp_min(1)
