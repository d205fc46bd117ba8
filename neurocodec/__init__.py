"""neurocodec: learned codecs with real entropy-coded bitstreams.

    data = neurocodec.encode(img, quality=3)     # uint8 HxWx3 -> .nc bytes
    img = neurocodec.decode(data)                # -> uint8 HxWx3
    data = neurocodec.encode(audio, sr, kbps=6)  # float [T] or [T, C] -> .nc bytes
    codec = neurocodec.load_codec("hyperprior")  # a neurocodec.Codec
    neurocodec.encode_file("p.png")              # -> p.nc;  decode_file("p.nc") -> p.decoded.png

Layout: neurocodec.runtime holds what encode/decode need (the Codec contract, the registry,
the .nc container, one package per codec kind); neurocodec.tools trains, evaluates and
exports codecs. Importing neurocodec never imports torch: a codec's model loads on first use.

Errors: everything decode() raises for a file it cannot decode is a NcFormatError (a
ValueError); bad inputs to encode() are ValueErrors; existing outputs are never replaced
without overwrite=True (FileExistsError).
"""
from typing import Any

from neurocodec.api import decode, decode_file, encode, encode_file, info, list_codecs, load_codec
from neurocodec.runtime.bitstream import NcFormatError
from neurocodec.runtime.codec import Codec, DecodeTooLargeError, MissingDependency
from neurocodec.runtime.registry import CodecNotFound, UnknownCodecId


def __getattr__(name: str) -> Any:
    if name == "__version__":  # one distribution, one version; read lazily (see weightzip._version)
        import weightzip
        return weightzip.__version__
    raise AttributeError(f"module 'neurocodec' has no attribute {name!r}")


__all__ = ["Codec", "CodecNotFound", "DecodeTooLargeError", "MissingDependency", "NcFormatError", "UnknownCodecId",
           "__version__", "decode", "decode_file", "encode", "encode_file", "info", "list_codecs", "load_codec"]
