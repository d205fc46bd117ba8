"""What an audio .nc file may describe, and the errors of the audio codec.

The encoder and the decoder apply the same limits through signal_problem(): the encoder before
it reads or writes anything (AudioInputError, the input's fault), the decoder before it
allocates anything (AudioFormatError, the file's fault). So no input the decoder would refuse
is ever written; the encoder also re-parses every file it writes (AudioCodec.encode_blocks).
"""
from __future__ import annotations

import operator

from neurocodec.runtime.bitstream import NcFormatError
from neurocodec.runtime.codec import DecodeTooLargeError  # noqa: F401  (re-exported: audio raises it)

MIN_RATE, MAX_RATE = 1000, 768000  # Hz: what soxr resamples well to and from 24 kHz
MAX_CHANNELS = 16
MAX_SECONDS = 24 * 3600  # a day of audio: bounds what a header may ask the decoder to produce


class AudioInputError(ValueError):
    """The input cannot be coded: unreadable, no samples, NaN/Inf samples, or a rate, length,
    channel count or bitrate outside what the format carries."""


class AudioFormatError(NcFormatError):
    """A .nc file the audio codec cannot decode (corrupt parameters, streams or indices)."""


def signal_problem(sr: int, n_samples: int, channels: int) -> str | None:
    """Why a signal of n_samples per channel at sr Hz cannot be in a .nc file, or None."""
    if not isinstance(sr, int) or not MIN_RATE <= sr <= MAX_RATE:
        return f"sample rate {sr} Hz is not supported ({MIN_RATE}..{MAX_RATE} Hz)"
    if not 1 <= channels <= MAX_CHANNELS:
        return f"{channels} channels (1..{MAX_CHANNELS} supported)"
    if n_samples < 1:
        return "no samples"
    if n_samples > MAX_SECONDS * sr:
        return "longer than a day"
    return None


def check_signal(sr, n_samples: int, channels: int, what: str = "audio") -> int:
    """Encoder side of signal_problem(): raises AudioInputError; returns sr as an int."""
    try:
        rate = operator.index(sr)  # int, numpy integers
    except TypeError:
        rate = int(sr) if isinstance(sr, float) and sr.is_integer() else sr
    problem = signal_problem(rate, int(n_samples), int(channels))
    if problem:
        raise AudioInputError(f"{what}: {problem}")
    return rate


def check_kbps(kbps: float, lo: float, hi: float, channels: int, codec: str) -> float:
    """kbps (the whole file's rate) within [lo, hi] per channel; raises AudioInputError."""
    kbps = float(kbps)
    if not lo * channels <= kbps <= hi * channels:  # also refuses NaN
        raise AudioInputError(f"kbps must be in [{lo * channels:g}, {hi * channels:g}] for "
                              f"{channels} channel(s) with codec {codec!r}")
    return kbps
