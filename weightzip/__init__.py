"""weightzip: byte-exact compression of model weights.

    import weightzip
    weightzip.pack("model.safetensors")              # -> model.safetensors.wz
    weightzip.unpack("model.safetensors.wz", "out.safetensors")
    with weightzip.open("model.safetensors.wz") as f:
        w = f.get_tensor("encoder.weight")           # decodes only that tensor

Importing weightzip never imports torch; torch is loaded only when a torch checkpoint or
framework="torch" is asked for.
"""
from typing import Any

from .api import WzFile, compress, decompress, load, open, pack, save, unpack
from .errors import ChecksumError, FormatError, RefError
from .inspect import info, verify


def __getattr__(name: str) -> Any:
    if name == "__version__":  # lazy: importlib.metadata costs ~0.1 s of every import
        from ._version import version
        return version()
    raise AttributeError(f"module 'weightzip' has no attribute {name!r}")


__all__ = ["__version__", "pack", "unpack", "save", "load", "open", "compress", "decompress", "info", "verify",
           "WzFile", "FormatError", "ChecksumError", "RefError"]

