"""Image files in and out. Any size; RGB, grayscale or RGBA in (PNG/JPEG/WebP and anything
else Pillow reads), PNG out.

Alpha: the codecs are trained on RGB and do not code an alpha channel; RGBA input is coded
as its RGB channels (alpha is dropped, with a warning from the CLI) and decodes to RGB. Grayscale input is
coded as RGB with equal channels and decoded back to one channel (the .nc header keeps the
channel count)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}


def list_images(folder) -> list[Path]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images in {folder}")
    return paths


def read_image(path) -> tuple[np.ndarray, int]:
    """-> (uint8 [H, W, 3] RGB, original channel count 1/3/4)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            channels = 1 if mode in ("L", "LA", "I", "I;16", "I;16B", "F", "1") else 4 if "A" in mode else 3
            if mode.startswith("I") or mode == "F":  # 16-bit/float grayscale: keep the top 8 bits
                a = np.asarray(im, dtype=np.float64)
                top = 65535.0 if a.max(initial=0) > 255 else 255.0
                g = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
                rgb = np.repeat(g[:, :, None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    return np.ascontiguousarray(rgb), channels


def as_rgb(img: np.ndarray) -> tuple[np.ndarray, int]:
    """Array input: [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] uint8 -> (RGB, channels)."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image arrays must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    c = a.shape[2]
    rgb = np.repeat(a, 3, axis=2) if c == 1 else a[:, :, :3]
    return np.ascontiguousarray(rgb), c


def to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """Decoder side: grayscale originals come back as one channel (the mean of RGB)."""
    if channels == 1:
        return np.round(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
    return rgb


def write_png(path, img: np.ndarray) -> None:
    """Atomic: a temp file in the same folder, then rename."""
    from PIL import Image

    from weightzip.api import atomic_path

    with atomic_path(Path(path)) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
