"""weightzip: byte-exact compression of model weights.

    import weightzip
    weightzip.pack("model.safetensors")              # -> model.safetensors.wz
    weightzip.unpack("model.safetensors.wz", "out.safetensors")
    with weightzip.open("model.safetensors.wz") as f:
        w = f.get_tensor("encoder.weight")           # decodes only that tensor

Importing weightzip never imports torch; torch is loaded only when a torch checkpoint or
framework="torch" is asked for.
"""
from ._version import __version__ as __version__
from .api import WzFile, compress, decompress, load, open, pack, save, unpack
from .errors import ChecksumError, FormatError, RefError
from .inspect import info, verify

__all__ = ["pack", "unpack", "save", "load", "open", "compress", "decompress", "info", "verify",
           "WzFile", "FormatError", "ChecksumError", "RefError"]

