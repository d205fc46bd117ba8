"""Python API: encode / decode bytes, load codecs, inspect files."""
from __future__ import annotations

import os
from typing import Any, Union

import numpy as np

from .bitstream import NcFile
from .registry import default_codec, list_codecs, load_by_id, load_codec, meta_by_id

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["decode", "encode", "info", "list_codecs", "load_codec"]


def encode(img: Any, codec: str | None = None, quality: int | None = None, refine_steps: int = 0) -> bytes:
    """Image (uint8 array HxW[xC], or a path to an image file) -> the bytes of a .nc file.

    codec: a shipped codec name or a codec folder (default: the default image codec);
    quality: an index into the codec's qualities (default: the codec's default);
    refine_steps: encoder-side latent optimisation steps (slower encode, same decoder).
    """
    if isinstance(img, (str, os.PathLike)):
        from .image.io import read_image

        rgb, channels = read_image(img)
        img = rgb if channels != 1 else rgb[:, :, 0]
    c = load_codec(codec or default_codec("image"))
    return c.encode(np.asarray(img), quality=quality, refine_steps=refine_steps)


def decode(data: bytes | bytearray | memoryview, codec: str | None = None) -> np.ndarray:
    """.nc bytes -> uint8 image [H, W, 3] (or [H, W] for grayscale sources). The codec is
    found from the id in the file; pass codec= for codecs outside the search path."""
    nc = NcFile.from_bytes(bytes(data))
    c = load_codec(codec) if codec else load_by_id(nc.codec_id)
    if c.id != nc.codec_id:
        from .bitstream import NcFormatError

        raise NcFormatError(f"file needs codec id {nc.codec_id}, got {c.name!r} (id {c.id})")
    return c.decode_nc(nc)


def info(data: bytes | bytearray | memoryview) -> dict:
    """Header fields of a .nc file (verified: checksums are checked)."""
    nc = NcFile.from_bytes(bytes(data))
    try:
        name = meta_by_id(nc.codec_id)["name"]
    except LookupError:
        name = None
    total = len(data)
    out = {"version": nc.version, "codec_id": nc.codec_id, "codec": name, "quality": nc.quality,
           "shape": list(nc.shape), "streams": [len(s) for s in nc.streams], "bytes": total,
           "overhead_bytes": total - sum(len(s) for s in nc.streams)}
    if len(nc.shape) == 3 and nc.shape[0] and nc.shape[1]:
        out["bpp"] = 8 * total / (nc.shape[0] * nc.shape[1])
    return out
