"""neurocodec: learned codecs with real entropy-coded bitstreams.

    data = neurocodec.encode(img)            # uint8 HxWx3 -> .nc bytes
    img = neurocodec.decode(data)            # -> uint8 HxWx3
    codec = neurocodec.load_codec("hyperprior")
"""
__version__ = "0.2.0"

from .api import decode, encode, info, list_codecs, load_codec
from .bitstream import NcFormatError
from .registry import CodecNotFound

__all__ = ["CodecNotFound", "NcFormatError", "decode", "encode", "info", "list_codecs", "load_codec"]
