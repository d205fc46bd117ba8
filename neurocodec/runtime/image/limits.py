"""What an image .nc may hold: one set of rules for the encoder and the decoder.

The encoder refuses, before any work, every image or parameter the decoder would refuse, so
nothing undecodable is ever written: both sides call `header_problem` (the decoder on the
header it reads, the encoder on the header it is about to write). The .nc container's own
limits (bitstream.py: shape values <= 2^40, quality < 256) are implied by these.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

from neurocodec.runtime.bitstream import NcFormatError

MAX_PIXELS = 1 << 25  # 33.5 MP (8K x 4K): bounds decoder memory (~5 GB at this size); no tiling yet
# Images are padded to multiples of 64 (ImageCodecModel.stride) before coding: a 1 x 2^25 image
# would need a 64 x 2^25 decode (~25 GB of activations). Bounding the padded area keeps the
# decoder's memory within 2x of the nominal limit whatever the aspect ratio.
PAD = 64
MAX_PADDED_PIXELS = 2 * MAX_PIXELS
CHANNELS = (1, 3, 4)  # source channels stored in the header: gray, RGB, RGBA (decodes to RGB)


class ImageNcError(NcFormatError):
    """A .nc file no image codec wrote (corrupt header or streams); a ValueError."""


def shape_problem(h: int, w: int, channels: int) -> str | None:
    """Why an image of h x w x channels cannot be coded, or None."""
    if h < 1 or w < 1:
        return f"image of {w}x{h} pixels is empty"
    if channels not in CHANNELS:
        return f"{channels} channels (image codecs take 1, 3 or 4)"
    if h * w > MAX_PIXELS:
        return f"image of {w}x{h} pixels is too large (at most {MAX_PIXELS:,} pixels, 33.5 MP)"
    padded = -(-h // PAD) * PAD * (-(-w // PAD) * PAD)
    if padded > MAX_PADDED_PIXELS:
        return (f"image of {w}x{h} pixels is too elongated ({padded:,} pixels once padded to "
                f"multiples of {PAD}; at most {MAX_PADDED_PIXELS:,})")
    return None


def quality_problem(quality: int, qualities: Sequence[int]) -> str | None:
    if quality not in qualities or not 0 <= quality < 256:
        return f"quality {quality} is not one of {list(qualities)}"
    return None


def header_problem(h: int, w: int, channels: int, quality: int, qualities: Sequence[int]) -> str | None:
    """The one check both sides run on an image .nc header: None if it is decodable."""
    return shape_problem(h, w, channels) or quality_problem(quality, qualities)


def check_quality(quality, qualities: Sequence[int], default: int, codec_name: str) -> int:
    """quality (None: the default) -> a valid quality index, or ValueError."""
    if quality is None:
        quality = default
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral):
        raise ValueError(f"quality must be a whole number, one of {list(qualities)} for codec "
                         f"{codec_name!r}; got {quality!r}")
    q = int(quality)
    problem = quality_problem(q, qualities)
    if problem:
        raise ValueError(f"{problem} for codec {codec_name!r}")
    return q


def check_refine_steps(steps) -> int:
    """refine_steps must be a whole number >= 0 (0: no refinement)."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"refine_steps must be a whole number >= 0, got {steps!r}")
    return int(steps)
