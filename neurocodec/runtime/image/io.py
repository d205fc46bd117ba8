"""Image files in and out. Any size; RGB, grayscale or RGBA in (PNG/JPEG/WebP/TIFF and
anything else Pillow reads); lossless files out (PNG, TIFF, BMP, PPM/PGM, lossless WebP,
chosen by the output suffix: see writers.py).

Reading applies the EXIF orientation (a phone photo is coded the way it is shown), and every
loss of information is reported as a UserWarning that starts with the file's path: a
non-opaque alpha channel or transparency (the codecs code RGB or gray), CMYK (converted
without colour management), 16-bit/32-bit/float samples (reduced to 8 bits), and frames or
pages after the first (not coded). Ordinary RGB and gray files, and RGBA files whose alpha is
fully opaque, warn about nothing.

Grayscale input is coded as RGB with equal channels and decoded back to one channel (the .nc
header keeps the channel count). RGBA decodes to RGB.
"""
from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from neurocodec.runtime.image.limits import shape_problem
from neurocodec.runtime.image.writers import check_image_output, write_image, write_png  # noqa: F401  (re-exported)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep  # neurocodec/
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_DEEP_RAWMODE = re.compile(r";16[BLN]S?$")  # 16 bits per sample ("RGB;16" alone is 5-6-5 packed)
_ORIENTATION = 0x0112


def warn(message: str) -> None:
    """A UserWarning attributed to the first caller outside neurocodec (the user's own line),
    so Python's once-per-location filter and the reported file:line make sense."""
    level, f = 2, sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PKG_DIR):
        f, level = f.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def list_images(folder) -> list[Path]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images in {folder}")
    return paths


def _rawmode(im) -> str:
    """The decoder's raw mode (e.g. "RGB;16B"): Pillow keeps 16-bit RGB as 8-bit "RGB", so
    only the raw mode, read before load(), tells that precision is being dropped."""
    try:
        args = im.tile[0][3]
    except (IndexError, TypeError, AttributeError):
        return ""
    if isinstance(args, tuple) and args:
        args = args[0]
    return args if isinstance(args, str) else ""


def _depth_note(mode: str, raw: str) -> str | None:
    if mode == "F":
        return "32-bit float samples reduced to 8 bits"
    if mode.startswith("I;16") or _DEEP_RAWMODE.search(raw):
        return "16-bit samples reduced to 8 bits"
    if mode == "I":
        return "32-bit integer samples reduced to 8 bits"
    return None


def _alpha_note(im) -> str | None:
    """A note if coding RGB/gray loses transparency, i.e. some pixel is not fully opaque."""
    mode = im.mode
    if mode not in _ALPHA_MODES and "transparency" not in im.info:
        return None
    what = "alpha channel" if mode in _ALPHA_MODES else "transparency"
    try:
        alpha = np.asarray(im.getchannel("A") if mode in _ALPHA_MODES else im.convert("RGBA").getchannel("A"))
    except (ValueError, OSError):  # a transparency key Pillow cannot apply: say so anyway
        return f"{what} dropped (the image codecs code RGB or gray only)"
    n = int(np.count_nonzero(alpha < 255))
    if not n:
        return None  # fully opaque: nothing is lost
    return f"{what} dropped ({n:,} of {alpha.size:,} pixels are not opaque; the image codecs code RGB or gray only)"


def _deep_gray(im) -> np.ndarray:
    """16-bit / 32-bit / float grayscale -> uint8: 16-bit data keeps its top 8 bits; floats
    in [0, 1] are scaled by 255; anything else is taken as 0..255 (or 0..65535 above 255)."""
    a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=65535.0, neginf=0.0)
    if im.mode == "F" and a.size and a.min() >= 0.0 and a.max() <= 1.0:
        top = 1.0
    else:
        top = 65535.0 if a.max(initial=0) > 255 else 255.0
    return np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)


def read_image(path, *, warn_lost: bool = True) -> tuple[np.ndarray, int]:
    """-> (uint8 [H, W, 3] RGB, upright per EXIF, original channel count 1/3/4).

    ValueError for unreadable files and for images the codecs refuse (limits.py), checked
    from the header before the pixels are decoded. warn_lost=False silences the
    lost-information warnings (training reads thousands of files)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89 MP; such images are refused below (limits.MAX_PIXELS) anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            problem = shape_problem(im.height, im.width, 3)
            if problem:
                raise ValueError(f"{path}: {problem}")
            frames = int(getattr(im, "n_frames", 1))  # before load(): counting frames seeks
            raw = _rawmode(im)
            im.load()
            try:
                orientation = im.getexif().get(_ORIENTATION, 1)
            except Exception:  # noqa: BLE001  Pillow raises assorted errors on malformed EXIF
                orientation, notes = 1, ["unreadable EXIF data: orientation not applied"]
            img = ImageOps.exif_transpose(im) if orientation in range(2, 9) else im
            mode = img.mode
            gray = mode in _GRAY_MODES or raw.startswith("LA;")  # 16-bit LA opens as RGBA
            channels = 1 if gray else 4 if mode in ("RGBA", "RGBa", "PA") else 3
            notes += [n for n in (_alpha_note(img), _depth_note(mode, raw)) if n]
            if mode == "CMYK":
                notes.append("CMYK converted to RGB without colour management (colours may shift)")
            elif mode in ("LAB", "HSV"):
                notes.append(f"{mode} converted to RGB")
            if frames > 1:
                notes.append(f"{frames} frames or pages; only the first is coded")
            if mode.startswith("I") or mode == "F":
                rgb = np.repeat(_deep_gray(img)[:, :, None], 3, axis=2)
            else:
                try:
                    rgb = np.asarray(img.convert("RGB"))
                except ValueError as e:  # a mode Pillow cannot convert (e.g. some LAB files)
                    raise ValueError(f"{path}: cannot convert {mode} pixels to RGB ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    if warn_lost:
        for n in notes:
            warn(f"{path}: {n}")
    return np.ascontiguousarray(rgb), channels


def as_rgb(img: np.ndarray) -> tuple[np.ndarray, int]:
    """Array input: [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] uint8 -> (RGB, channels).
    Shapes the codecs refuse raise ValueError before anything is copied; a non-opaque
    alpha channel warns (it is dropped)."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"image arrays must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    problem = shape_problem(*a.shape)
    if problem:
        raise ValueError(problem)
    c = a.shape[2]
    if c == 4:
        n = int(np.count_nonzero(a[:, :, 3] < 255))
        if n:
            warn(f"alpha channel dropped ({n:,} of {a.shape[0] * a.shape[1]:,} pixels are not opaque; "
                 "the image codecs code RGB or gray only)")
    rgb = np.repeat(a, 3, axis=2) if c == 1 else a[:, :, :3]
    return np.ascontiguousarray(rgb), c


def to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """Decoder side: grayscale originals come back as one channel (the mean of RGB)."""
    if channels == 1:
        return np.round(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
    return rgb
