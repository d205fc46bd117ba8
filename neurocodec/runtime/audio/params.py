"""Stream 0 of an audio .nc file: the parameters (docs/nc_format.md, "Audio codecs").

  LEB128 T24                  samples at the model's rate
  C x LEB128 e                RVQ stages per frame x 1024, per channel (rate control)
  -- revision 1 and later (absent in the first files of format version 1) --
  LEB128 revision             1; a decoder refuses a revision it does not know
  LEB128 subtype              the input's sample format (io.SUBTYPES code)
  C x int8 gain               per channel: output gain in GAIN_STEP_DB steps, MUTE = silence

Files without the revision block decode as before: 16-bit PCM, unity gain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurocodec.runtime.audio.checks import AudioFormatError
from neurocodec.runtime.audio.io import DEFAULT_SUBTYPE, SUBTYPE_CODES, SUBTYPES
from neurocodec.runtime.bitstream import NcFormatError, read_varint
from weightzip.core import write_varint

REVISION = 1
GAIN_STEP_DB = 0.25  # a quantisation error of at most 0.125 dB
GAIN_MAX = 127  # codes -127..127: -31.75..+31.75 dB
MUTE = -128  # the input was digital silence: so is the output


@dataclass
class AudioParams:
    T24: int
    es: list[int]
    subtype: str = DEFAULT_SUBTYPE
    gains: list[int] | None = None  # None: a file without the revision block (unity gain)

    def to_bytes(self) -> bytes:
        out = write_varint(self.T24) + b"".join(write_varint(e) for e in self.es)
        gains = [0] * len(self.es) if self.gains is None else self.gains
        if len(gains) != len(self.es) or not all(MUTE <= g <= GAIN_MAX for g in gains):
            raise ValueError("need one gain code in -128..127 per channel")
        return out + write_varint(REVISION) + write_varint(SUBTYPE_CODES[self.subtype]) + bytes(g & 0xFF for g in gains)

    def gain_factors(self) -> np.ndarray:
        """float32 [C]: what each channel's model output is multiplied by."""
        return np.array([gain_factor(g) for g in self.gains or [0] * len(self.es)], np.float32)


def parse_params(buf: bytes, channels: int) -> AudioParams:
    """Stream 0 -> AudioParams; AudioFormatError if it is truncated, has bytes left over or
    comes from a newer revision. Value ranges are the codec's to check."""
    try:
        T24, pos = read_varint(buf, 0)
        es = []
        for _ in range(channels):
            e, pos = read_varint(buf, pos)
            es.append(e)
        if pos == len(buf):
            return AudioParams(T24, es)
        rev, pos = read_varint(buf, pos)
        if rev > REVISION:
            raise AudioFormatError(f"audio parameters of revision {rev} are newer than this neurocodec "
                                   f"(reads up to {REVISION}); upgrade neurocodec")
        code, pos = read_varint(buf, pos)
    except AudioFormatError:
        raise
    except NcFormatError:
        raise AudioFormatError("corrupt .nc audio parameters (truncated)") from None
    if rev != REVISION or code not in SUBTYPES or len(buf) - pos != channels:
        raise AudioFormatError("corrupt .nc audio parameters")
    gains = [b - 256 if b > 127 else b for b in buf[pos:]]
    return AudioParams(T24, es, SUBTYPES[code], gains)


def gain_factor(code: int) -> float:
    return 0.0 if code == MUTE else 10 ** (code * GAIN_STEP_DB / 20)


def gain_code(in_power: float, out_power: float) -> int:
    """The gain code that brings a decoded channel of mean square out_power to in_power."""
    if in_power <= 0:
        return MUTE
    if out_power <= 0 or not math.isfinite(in_power / out_power):
        return 0
    db = 10 * math.log10(in_power / out_power)
    return int(max(-GAIN_MAX, min(GAIN_MAX, round(db / GAIN_STEP_DB))))
