"""neurocodec: learned codecs with real entropy-coded bitstreams.

    data = neurocodec.encode(img)            # uint8 HxWx3 -> .nc bytes
    img = neurocodec.decode(data)            # -> uint8 HxWx3
    codec = neurocodec.load_codec("hyperprior")
    neurocodec.encode_file("p.png")          # -> p.nc;  decode_file("p.nc") -> p.decoded.png

Errors: everything decode() raises for a file it cannot decode is a NcFormatError (a
ValueError); bad inputs to encode() are ValueErrors; existing outputs are never replaced
without overwrite=True (FileExistsError).
"""
__version__ = "0.2.0"

from neurocodec.api import decode, decode_file, encode, encode_file, info, list_codecs, load_codec
from neurocodec.runtime.audio.checks import DecodeTooLargeError
from neurocodec.runtime.bitstream import NcFormatError
from neurocodec.runtime.registry import CodecNotFound, UnknownCodecId

__all__ = ["CodecNotFound", "DecodeTooLargeError", "NcFormatError", "UnknownCodecId", "decode", "decode_file", "encode", "encode_file",
           "info", "list_codecs", "load_codec"]
