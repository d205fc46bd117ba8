"""Python API: encode / decode bytes and files, load codecs, inspect files. Everything goes
through the Codec contract (neurocodec.runtime.codec): the kind of an input is whichever
registered kind accepts it, the codec of a file is the one its id names.

Images: ``encode(img, quality=3)`` -> bytes, ``decode(data)`` -> uint8 array.
Audio: ``encode(audio, sr, kbps=6)`` -> bytes, ``decode(data)`` -> (float32 array, sr); audio
arrays are [samples] (mono) or [samples, channels], as soundfile reads them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from neurocodec.runtime.bitstream import NcFile, NcFormatError
from neurocodec.runtime.codec import Codec, given
from neurocodec.runtime.registry import (
    codec_meta,
    default_codec,
    kind_class,
    kind_for_input,
    list_codecs,
    load_by_id,
    load_codec,
    meta_by_id,
)
from weightzip.core import check_writable, write_atomic

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["NcFormatError", "decode", "decode_file", "default_decoded_path", "encode", "encode_file", "info",
           "list_codecs", "load_codec"]


def encoder_for(data: Any, codec: str | os.PathLike | None, opts: dict[str, Any]) -> Codec:
    """The codec that encodes data: the one named (which must take data and opts), or the
    default codec of the kind that accepts data. Options are checked before it is loaded."""
    cls = kind_class(codec_meta(codec).get("kind", "")) if codec else kind_for_input(data, opts)
    if codec and not cls.accepts(data, opts):
        what = f"{data}" if isinstance(data, (str, os.PathLike)) else "this input"
        raise ValueError(f"codec {str(codec)!r} is an {cls.kind} codec: it does not code {what} "
                         f"(it takes {cls.input_hint})")
    cls.check_options(opts)
    return load_codec(codec or default_codec(cls.kind))


def encode(data: Any, sr: int | None = None, codec: str | None = None, progress: bool = False,
           **opts: Any) -> bytes:
    """An input (array or file path) -> the bytes of a .nc file.

    Image: a uint8 array HxW[xC] or an image file; options quality (an index into the codec's
    qualities) and refine_steps (encoder-side latent optimisation: slower encode, same decoder).
    Audio: an array [T] or [T, C] with its sample rate sr, or an audio file (WAV, FLAC, ...);
    option kbps (nominal bitrate of the whole file, headers included; default: the codec's).
    codec: a codec name or folder (default: the default codec of the input's kind).
    An option the codec's kind does not take is a ValueError.
    """
    opts = given({"sr": sr, **opts})
    c = encoder_for(data, codec, opts)
    if isinstance(data, (str, os.PathLike)):
        opts.pop("sr", None)  # a file knows its own rate
        return c.encode_file(data, progress=progress, **opts)
    return c.encode(data, progress=progress, **opts)


def codec_for(nc: NcFile, codec: str | None = None) -> Codec:
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
    return codec_for(nc, codec).decode_nc(nc, progress=progress)


def info(data: bytes | bytearray | memoryview) -> dict:
    """Header fields of a .nc file (verified: checksums are checked). Loads no model."""
    nc = NcFile.from_bytes(bytes(data))
    try:
        meta = meta_by_id(nc.codec_id)
        describe = kind_class(meta.get("kind", "")).describe
    except LookupError:  # a codec this installation lacks: the container's fields only
        meta, describe = {}, Codec.describe
    return describe(nc, meta, len(data))


def encode_file(src: PathLike, dst: PathLike | None = None, codec: str | None = None, progress: bool = False,
                overwrite: bool = False, **opts: Any) -> Path:
    """Encode an image or audio file to a .nc file; returns its path. Options as encode()'s.

    dst defaults to SRC with the suffix .nc (an existing folder: SRC's name with .nc inside
    it). An existing dst is replaced only with overwrite=True; dst is checked before the work."""
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(2, "no such file", str(src))
    out = _output(src, dst, ".nc")
    check_writable(out, overwrite)
    data = encode(src, codec=codec, progress=progress, **opts)
    return write_atomic(out, data, overwrite)


def default_decoded_path(nc_path: PathLike, suffix: str) -> Path:
    """p.nc -> p.decoded.png (or .wav): never the name of the file that was encoded."""
    p = Path(nc_path)
    stem = p.name[:-3] if p.name.lower().endswith(".nc") else p.name
    return p.with_name(f"{stem}.decoded{suffix}")


def decode_file(src: PathLike, dst: PathLike | None = None, codec: str | None = None,
                progress: bool = False, overwrite: bool = False) -> Path:
    """Decode a .nc file to a file of its kind (image: PNG or the lossless format dst's suffix
    names; audio: WAV/FLAC); returns the output path.

    dst defaults to SRC's stem + ".decoded" + the kind's suffix beside it (p.nc ->
    p.decoded.png), so the original p.png is never overwritten. An existing dst is replaced
    only with overwrite=True; dst (suffix, folder) is checked before any decoding work."""
    src = Path(src)
    nc = NcFile.from_bytes(src.read_bytes())
    c = codec_for(nc, codec)
    out = _output(src, dst, c.output_suffix, decoded=True)
    c.check_output(out, nc)
    check_writable(out, overwrite)
    c.decode_to_file(nc, out, progress=progress, overwrite=overwrite)
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
