"""Classical image codecs through Pillow, used as same-run anchors for the learned codecs.

Measuring JPEG / WebP / AVIF on the same machine and images as our codecs keeps the
comparison honest (library versions differ from the published curves' ones).  Settings:

- JPEG: Pillow defaults (4:2:0 chroma subsampling, no optimize / progressive).
- WebP: Pillow defaults (lossy, method 4).
- AVIF: Pillow defaults (libavif, 4:2:0, speed 6) with the ``quality`` parameter.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, features

FORMATS = ("jpeg", "webp", "avif")
_PIL_NAME = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
_FEATURE = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}

# Chosen so each curve spans roughly 0.05-2 bpp on Kodak (mean bpp over the 24 images,
# Pillow 13.0.0, libavif 1.4.2): JPEG 0.22-1.86 (23.9-36.5 dB; JPEG cannot go much below
# 0.2 bpp), WebP 0.11-2.01 (25.9-39.6 dB), AVIF 0.069-1.91 (25.6-39.9 dB).
ANCHOR_QUALITIES: dict[str, list[int]] = {
    "jpeg": [5, 10, 20, 30, 40, 50, 60, 70, 80, 85],
    "webp": [0, 5, 10, 20, 30, 50, 70, 80, 85, 90],
    "avif": [0, 10, 20, 30, 40, 50, 60, 70, 80, 85],
}


def available(fmt: str) -> bool:
    """Whether this Pillow build can encode and decode ``fmt``."""
    if fmt not in _FEATURE:
        return False
    try:
        return bool(features.check(_FEATURE[fmt]))
    except ValueError:  # feature unknown to this Pillow version
        return False


def pillow_codec(img: np.ndarray, fmt: str, quality: int) -> tuple[bytes, np.ndarray]:
    """Encode a uint8 HxWx3 image with Pillow and decode it back.

    Returns ``(bitstream, reconstruction)``, the reconstruction a uint8 HxWx3 array.
    """
    data = pillow_encode(img, fmt, quality)
    return data, pillow_decode(data)


def pillow_encode(img: np.ndarray, fmt: str, quality: int) -> bytes:
    """Encode a uint8 HxWx3 image to ``fmt`` bytes with the settings described above."""
    if fmt not in _PIL_NAME:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 array, got {img.dtype} {img.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format=_PIL_NAME[fmt], quality=int(quality))
    return buf.getvalue()


def pillow_decode(data: bytes) -> np.ndarray:
    """Decode any Pillow-readable bitstream to a uint8 HxWx3 array."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))
