"""Python API: encode / decode bytes, load codecs, inspect files.

Images: ``encode(img)`` -> bytes, ``decode(data)`` -> uint8 array.
Audio: ``encode(audio, sr, kbps=6)`` -> bytes, ``decode(data)`` -> (float32 array, sr); audio
arrays are [samples] (mono) or [samples, channels], as soundfile reads them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from neurocodec.runtime.bitstream import NcFile, NcFormatError
from neurocodec.runtime.registry import default_codec, list_codecs, load_by_id, load_codec, meta_by_id

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["decode", "decode_file", "encode", "encode_file", "info", "list_codecs", "load_codec",
           "default_decoded_path", "NcFormatError"]


def _is_audio_path(x: Any) -> bool:
    if not isinstance(x, (str, os.PathLike)):
        return False
    from neurocodec.runtime.audio.io import is_audio_path

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
        if quality is not None or refine_steps:
            raise ValueError("quality and refine_steps are for images; audio takes kbps")
        from neurocodec.runtime.audio.codec import encode_file

        c = load_codec(codec or default_codec("audio"))
        if c.kind != "audio":
            raise ValueError(f"codec {c.name!r} is an {c.kind} codec, not an audio codec")
        if sr is None:
            return encode_file(c, data, kbps=kbps, progress=progress)
        return c.encode(data, sr, kbps=kbps, progress=progress)
    if kbps is not None:
        raise ValueError("kbps is for audio (a .wav/.flac/... path, or an array with its sample rate sr)")
    c = load_codec(codec or default_codec("image"))
    if c.kind != "image":
        raise ValueError(f"codec {c.name!r} is an {c.kind} codec: pass audio with its sample rate (sr=)")
    c.check_encode_args(quality, refine_steps)  # before reading: a bad argument warns about nothing
    if isinstance(data, (str, os.PathLike)):
        from neurocodec.runtime.image.io import read_image

        rgb, channels = read_image(data)
        data = rgb if channels != 1 else rgb[:, :, 0]
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
    codec= for codecs outside the search path.

    A file that cannot be decoded raises NcFormatError. Audio longer than fits in 2 GiB of
    float32 samples raises DecodeTooLargeError (a ValueError) before decoding: decode_file()
    streams any length to disk."""
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
           "overhead_bytes": total - sum(len(s) for s in nc.streams),
           "checksums": "verified (header and payload)"}
    if meta.get("kind") == "audio" and len(nc.shape) == 3 and nc.shape[0] and nc.shape[1]:
        seconds = nc.shape[1] / nc.shape[0]
        out.update(kind="audio", seconds=round(seconds, 4), nominal_kbps=nc.quality / 10,
                   kbps=round(8 * total / seconds / 1000, 4))
    elif len(nc.shape) == 3 and nc.shape[0] and nc.shape[1]:
        out["bpp"] = 8 * total / (nc.shape[0] * nc.shape[1])
    return out



def encode_file(src: PathLike, dst: PathLike | None = None, codec: str | None = None,
                quality: int | None = None, refine_steps: int = 0, kbps: float | None = None,
                progress: bool = False, overwrite: bool = False) -> Path:
    """Encode an image or audio file to a .nc file; returns its path.

    dst defaults to SRC with the suffix .nc (an existing folder: SRC's name with .nc inside
    it). An existing dst is replaced only with overwrite=True; dst is checked before the work."""
    from weightzip.core import check_writable

    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(2, "no such file", str(src))
    out = _output(src, dst, ".nc")
    check_writable(out, overwrite)
    data = encode(src, codec=codec, quality=quality, refine_steps=refine_steps, kbps=kbps, progress=progress)
    from weightzip.core import write_atomic

    return write_atomic(out, data, overwrite)


def default_decoded_path(nc_path: PathLike, suffix: str) -> Path:
    """p.nc -> p.decoded.png (or .wav): never the name of the file that was encoded."""
    p = Path(nc_path)
    stem = p.name[:-3] if p.name.lower().endswith(".nc") else p.name
    return p.with_name(f"{stem}.decoded{suffix}")


def decode_file(src: PathLike, dst: PathLike | None = None, codec: str | None = None,
                progress: bool = False, overwrite: bool = False) -> Path:
    """Decode a .nc file to an image (PNG, or the lossless format dst's suffix names) or an
    audio file (WAV/FLAC); returns the output path.

    dst defaults to SRC's stem + ".decoded.png" / ".decoded.wav" beside it (p.nc ->
    p.decoded.png), so the original p.png is never overwritten. An existing dst is replaced
    only with overwrite=True; dst (suffix, folder) is checked before any decoding work."""
    from weightzip.core import check_writable

    src = Path(src)
    nc = NcFile.from_bytes(src.read_bytes())
    c = codec_for(nc, codec)
    if c.kind == "audio":
        from neurocodec.runtime.audio.codec import decode_to_file
        from neurocodec.runtime.audio.io import check_output_path

        out = _output(src, dst, ".wav", decoded=True)
        check_output_path(out)
        check_writable(out, overwrite)
        decode_to_file(c, nc, out, progress=progress, overwrite=overwrite)
        return out
    from neurocodec.runtime.image.io import check_image_output, write_image

    out = _output(src, dst, ".png", decoded=True)
    check_image_output(out, shape=nc.shape)
    check_writable(out, overwrite)
    write_image(out, c.decode_nc(nc), overwrite=overwrite)
    return out


def _output(src: Path, dst: PathLike | None, suffix: str, decoded: bool = False) -> Path:
    """dst, or the default name beside src (inside dst if dst is an existing folder); never
    src itself."""
    name = default_decoded_path(src, suffix) if decoded else src.with_suffix(suffix)
    out = Path(dst) if dst is not None else name
    if out.is_dir():
        out = out / name.name
    if out.exists() and os.path.samefile(out, src):
        raise ValueError(f"{out}: the output would overwrite the input (choose another name with -o)")
    return out
