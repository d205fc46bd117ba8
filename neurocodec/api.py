"""Python API: encode / decode bytes, load codecs, inspect files.

Images: ``encode(img)`` -> bytes, ``decode(data)`` -> uint8 array.
Audio: ``encode(audio, sr, kbps=6)`` -> bytes, ``decode(data)`` -> (float32 array, sr); audio
arrays are [samples] (mono) or [samples, channels], as soundfile reads them.
"""
from __future__ import annotations

import os
from typing import Any, Union

import numpy as np

from .bitstream import NcFile, NcFormatError
from .registry import default_codec, list_codecs, load_by_id, load_codec, meta_by_id

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["decode", "encode", "info", "list_codecs", "load_codec"]


def _is_audio_path(x: Any) -> bool:
    if not isinstance(x, (str, os.PathLike)):
        return False
    from .audio.io import is_audio_path

    return is_audio_path(x)


def encode(data: Any, sr: int | None = None, codec: str | None = None, quality: int | None = None,
           refine_steps: int = 0, kbps: float | None = None, progress: bool = False) -> bytes:
    """Image or audio -> the bytes of a .nc file.

    Image: a uint8 array HxW[xC] or an image file path; quality: an index into the codec's
    qualities; refine_steps: encoder-side latent optimisation (slower encode, same decoder).
    Audio: an array [T] or [T, C] with its sample rate sr, or an audio file path (WAV, FLAC,
    ...); kbps: nominal bitrate per channel, headers included (default: the codec's).
    codec: a codec name or folder (default: the default codec of that kind).
    """
    if sr is not None or _is_audio_path(data):
        from .audio.codec import encode_file

        c = load_codec(codec or default_codec("audio"))
        if c.kind != "audio":
            raise ValueError(f"codec {c.name!r} is an {c.kind} codec, not an audio codec")
        if sr is None:
            return encode_file(c, data, kbps=kbps, progress=progress)
        return c.encode(data, sr, kbps=kbps, progress=progress)
    if isinstance(data, (str, os.PathLike)):
        from .image.io import read_image

        rgb, channels = read_image(data)
        data = rgb if channels != 1 else rgb[:, :, 0]
    c = load_codec(codec or default_codec("image"))
    if c.kind != "image":
        raise ValueError(f"codec {c.name!r} is an {c.kind} codec: pass audio with its sample rate (sr=)")
    return c.encode(np.asarray(data), quality=quality, refine_steps=refine_steps)


def codec_for(nc: NcFile, codec: str | None = None) -> Any:
    """The codec that wrote nc: by the id in the file, or the one named (which must match)."""
    c = load_codec(codec) if codec else load_by_id(nc.codec_id)
    if c.id != nc.codec_id:
        raise NcFormatError(f"file needs codec id {nc.codec_id}, got {c.name!r} (id {c.id})")
    return c


def decode(data: bytes | bytearray | memoryview, codec: str | None = None, progress: bool = False) -> Any:
    """.nc bytes -> uint8 image [H, W, 3] (or [H, W] for grayscale sources), or for audio
    (float32 [T] or [T, C], sample rate). The codec is found from the id in the file; pass
    codec= for codecs outside the search path."""
    nc = NcFile.from_bytes(bytes(data))
    c = codec_for(nc, codec)
    return c.decode_nc(nc, progress=progress) if c.kind == "audio" else c.decode_nc(nc)


def info(data: bytes | bytearray | memoryview) -> dict:
    """Header fields of a .nc file (verified: checksums are checked)."""
    nc = NcFile.from_bytes(bytes(data))
    try:
        meta = meta_by_id(nc.codec_id)
    except LookupError:
        meta = {}
    total = len(data)
    out = {"version": nc.version, "codec_id": nc.codec_id, "codec": meta.get("name"), "quality": nc.quality,
           "shape": list(nc.shape), "streams": [len(s) for s in nc.streams], "bytes": total,
           "overhead_bytes": total - sum(len(s) for s in nc.streams)}
    if meta.get("kind") == "audio" and len(nc.shape) == 3 and nc.shape[0] and nc.shape[1]:
        seconds = nc.shape[1] / nc.shape[0]
        out.update(kind="audio", seconds=round(seconds, 4), nominal_kbps=nc.quality / 10,
                   kbps=round(8 * total / seconds / 1000, 4))
    elif len(nc.shape) == 3 and nc.shape[0] and nc.shape[1]:
        out["bpp"] = 8 * total / (nc.shape[0] * nc.shape[1])
    return out

