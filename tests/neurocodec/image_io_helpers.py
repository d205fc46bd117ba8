"""Helpers of the image file tests (test_image_io*.py): small noise images and warning capture."""
from __future__ import annotations

import warnings

import numpy as np

from neurocodec.runtime.image import io as nio

H, W = 48, 64


def noise(h: int = H, w: int = W, c: int = 3, seed: int = 0) -> np.ndarray:
    """Random pixels: any misplaced pixel or lossy step shows."""
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return a[:, :, 0] if c == 1 else a


def user_warnings(rec) -> list:
    return [w for w in rec if issubclass(w.category, UserWarning)]


def read_quietly(path) -> tuple[np.ndarray, int, list]:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rgb, channels = nio.read_image(path)
    return rgb, channels, user_warnings(rec)
