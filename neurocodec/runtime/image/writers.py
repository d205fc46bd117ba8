"""Decoded images out: the output suffix picks a lossless format, and anything else is refused
before the decoder starts (a .jpg name must not receive PNG bytes, nor a lossy re-encode).

Every writer here round-trips uint8 gray and RGB bit-exactly (tests/test_image_io.py):
PNG, TIFF (deflate when Pillow has libtiff, raw otherwise), BMP, PPM/PGM (.pnm too) and
lossless WebP. Two format limits: PGM holds gray only (a colour image is refused), and WebP
has no gray (a gray image is stored as three equal channels) and at most 16383 px a side.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

LOSSLESS_HINT = "write .png, .tif, .bmp, .ppm or lossless .webp"
# suffix -> Pillow format
FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".ppm": "PPM",
           ".pgm": "PPM", ".pnm": "PPM", ".webp": "WEBP"}
# suffixes of lossy or lossy-only-here formats -> why they are refused
LOSSY = {".jpg": "JPEG is lossy", ".jpeg": "JPEG is lossy", ".jpe": "JPEG is lossy",
         ".jfif": "JPEG is lossy", ".gif": "GIF holds at most 256 colours",
         ".avif": "AVIF is written lossy", ".heic": "HEIC is written lossy",
         ".heif": "HEIF is written lossy", ".jxl": "JPEG XL is not supported",
         ".jp2": "JPEG 2000 is written lossy", ".j2k": "JPEG 2000 is written lossy",
         ".pbm": "PBM holds 1 bit per pixel"}
WEBP_MAX_SIDE = 16383


def _is_gray(shape) -> bool:
    """shape: an image array's (H, W[, C]) or a .nc image header's (H, W, channels)."""
    return len(shape) == 2 or shape[2] == 1


def check_image_output(path, shape: tuple[int, ...] | None = None) -> str:
    """Check that an image can be written losslessly to path, before any decoding work:
    -> the Pillow format name, or ValueError naming the path and what to write instead.

    shape (optional): the image's (H, W[, C]) or the .nc header's (H, W, channels), to also
    refuse a colour image as .pgm or an image too large for WebP."""
    p = Path(path)
    suffix = p.suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        if suffix in LOSSY:
            raise ValueError(f"{p}: {LOSSY[suffix]}; {LOSSLESS_HINT}")
        if not suffix:
            raise ValueError(f"{p}: no suffix to choose an image format by; {LOSSLESS_HINT}")
        raise ValueError(f"{p}: {suffix!r} is not an image format neurocodec writes; {LOSSLESS_HINT}")
    if fmt == "WEBP":
        from PIL import features

        if not features.check("webp"):
            raise ValueError(f"{p}: this Pillow was built without WebP; write .png or .tif")
    if shape is not None:
        h, w = int(shape[0]), int(shape[1])
        if suffix == ".pgm" and not _is_gray(shape):
            raise ValueError(f"{p}: PGM holds grayscale only and this image is in colour; write .ppm or .png")
        if fmt == "WEBP" and max(h, w) > WEBP_MAX_SIDE:
            raise ValueError(f"{p}: WebP holds at most {WEBP_MAX_SIDE} pixels a side, this image is "
                             f"{w}x{h}; write .png or .tif")
    return fmt


def _save_options(fmt: str) -> dict[str, Any]:
    if fmt == "WEBP":
        return {"lossless": True, "exact": True}
    if fmt == "TIFF":
        from PIL import features

        return {"compression": "tiff_deflate"} if features.check_codec("libtiff") else {}
    return {}


def write_image(path, img: np.ndarray, overwrite: bool = False) -> Path:
    """Write a uint8 [H, W] (gray) or [H, W, 3] image losslessly, in the format path's suffix
    names (check_image_output). Atomic: a temporary sibling renamed over path; an existing
    path is replaced only with overwrite=True (FileExistsError otherwise). Without Pillow (the
    core install, which can decode torch-free kinds) PNG is still written, by png_bytes."""
    from weightzip.core import atomic_path, write_atomic

    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or 0 in a.shape:
        raise ValueError(f"{path}: images are written from uint8 HxW or HxWx3 arrays, got {a.dtype} {a.shape}")
    fmt = check_image_output(path, a.shape)
    try:
        from PIL import Image
    except ModuleNotFoundError as e:
        if fmt != "PNG":
            from neurocodec.runtime.codec import require

            raise require("codecs", f"writing {Path(path).suffix} images", e) from None
        return write_atomic(Path(path), png_bytes(a), overwrite)
    pil = Image.fromarray(np.ascontiguousarray(a))
    with atomic_path(Path(path), overwrite) as tmp:
        pil.save(tmp, format=fmt, **_save_options(fmt))
    return Path(path)


write_png = write_image  # the previous name (it wrote PNG whatever the suffix)


def png_bytes(img: np.ndarray) -> bytes:
    """A uint8 [H, W] or [H, W, 3] image as a PNG file (zlib, no filter): for installs without
    Pillow."""
    h, w = img.shape[:2]
    color = 0 if img.ndim == 2 else 2

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    rows = np.concatenate([np.zeros((h, 1), np.uint8), np.ascontiguousarray(img).reshape(h, -1)], axis=1)
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, color, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))
