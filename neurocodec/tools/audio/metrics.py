"""Audio quality metrics: SI-SDR, log-mel distance, STOI (pystoi) and PESQ-WB (pesq).

All take the reference and the decoded signal as float mono arrays at the same rate and of
the same length."""
from __future__ import annotations

import math

import numpy as np

from neurocodec.runtime.audio.io import resample

MEL_SR = 24000  # mel distance is measured at the model rate, 0-12 kHz


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), means removed."""
    ref = np.asarray(ref, np.float64) - np.mean(ref)
    est = np.asarray(est, np.float64) - np.mean(est)
    s = ref * (np.dot(est, ref) / max(np.dot(ref, ref), 1e-20))
    noise = est - s
    return float(10 * math.log10(max(np.dot(s, s), 1e-20) / max(np.dot(noise, noise), 1e-20)))


def _logmel(x: np.ndarray) -> np.ndarray:
    import torch

    from neurocodec.tools.audio.losses import mel_filterbank

    n_fft, hop = 1024, 256
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    spec = torch.stft(t, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True).abs()
    mel = mel_filterbank(MEL_SR, n_fft, 80) @ spec  # [80, frames]
    return torch.log10(mel.clamp_min(1e-5)).numpy()


def mel_distance(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Mean absolute difference of log10 mel spectrograms (80 bands, 1024/256 at 24 kHz)."""
    r = resample(np.asarray(ref, np.float32)[None], sr, MEL_SR)[0]
    e = resample(np.asarray(est, np.float32)[None], sr, MEL_SR)[0]
    return float(np.mean(np.abs(_logmel(r) - _logmel(e))))


def stoi(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    from pystoi import stoi as _stoi

    return float(_stoi(np.asarray(ref, np.float64), np.asarray(est, np.float64), sr, extended=False))


def pesq_wb(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """PESQ-WB (ITU-T P.862.2) at 16 kHz; NaN where PESQ cannot score (no speech found)."""
    from pesq import PesqError, pesq

    r = resample(np.asarray(ref, np.float32)[None], sr, 16000)[0]
    e = resample(np.asarray(est, np.float32)[None], sr, 16000)[0]
    if len(r) < 16000 // 4:
        return float("nan")
    v = pesq(16000, r, e, "wb", on_error=PesqError.RETURN_VALUES)
    return float(v) if v >= 0 else float("nan")
