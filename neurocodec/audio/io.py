"""Audio files in and out: soundfile reads any rate and channel count (WAV, FLAC, OGG, ...),
soxr resamples to the model's rate and back ("VHQ", streaming so long files stay in constant
memory), and decoded audio is written as WAV or FLAC through a temporary file."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".mp3", ".opus")
OUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16")}
BLOCK = 1 << 16  # samples per read


class AudioInputError(ValueError):
    """The input cannot be read as audio (unknown format, no samples, or NaN/Inf samples)."""


def is_audio_path(path) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def list_audio(folder) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_audio_path(p))


def info(path) -> tuple[int, int, int]:
    """(sample rate, frames, channels) of an audio file."""
    import soundfile as sf

    try:
        i = sf.info(str(path))
    except (RuntimeError, OSError) as e:  # LibsndfileError is a RuntimeError
        raise AudioInputError(f"{path}: not a readable audio file ({e})") from None
    return i.samplerate, i.frames, i.channels


def check_finite(x: np.ndarray, what: str = "audio") -> np.ndarray:
    if not np.isfinite(x).all():
        raise AudioInputError(f"{what} contains NaN or Inf samples")
    return x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """x float32 [C, T] -> [C, T'] (soxr VHQ); T' = round(T * sr_out / sr_in)."""
    if sr_in == sr_out:
        return np.ascontiguousarray(x, np.float32)
    import soxr

    y = soxr.resample(np.ascontiguousarray(x.T), sr_in, sr_out, quality="VHQ")  # [T', C]
    return np.ascontiguousarray(np.asarray(y, np.float32).T)


def read_audio(path, sr: int | None = None) -> tuple[np.ndarray, int]:
    """Whole file -> (float32 [C, T] in [-1, 1], rate); resampled to sr when given."""
    import soundfile as sf

    info(path)
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    x = check_finite(np.ascontiguousarray(x.T), str(path))
    return (resample(x, rate, sr), sr) if sr else (x, rate)


class StreamResampler:
    """Block-wise soxr resampling of [C, n] blocks; flush() returns the tail."""

    def __init__(self, sr_in: int, sr_out: int, channels: int):
        self.same = sr_in == sr_out
        if not self.same:
            import soxr

            self.rs = soxr.ResampleStream(sr_in, sr_out, channels, dtype="float32", quality="VHQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.same:
            return np.ascontiguousarray(block, np.float32)
        y = self.rs.resample_chunk(np.ascontiguousarray(block.T, np.float32), last=last)  # [n', C]
        return np.ascontiguousarray(y.T)


def read_blocks(path, sr: int) -> Iterator[np.ndarray]:
    """float32 [C, n] blocks of the file at rate sr, read and resampled in constant memory."""
    import soundfile as sf

    rate, _, channels = info(path)
    rs = StreamResampler(rate, sr, channels)
    with sf.SoundFile(str(path)) as f:
        while True:
            b = f.read(BLOCK, dtype="float32", always_2d=True).T  # [C, n]
            last = b.shape[1] < BLOCK
            check_finite(b, str(path))
            y = rs(b, last=last)
            if y.shape[1]:
                yield y
            if last:
                return


def out_format(path) -> tuple[str, str]:
    fmt = OUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: write .wav or .flac")
    return fmt
