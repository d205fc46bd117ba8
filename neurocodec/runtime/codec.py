"""The Codec contract: what every codec kind (image, audio, and later INR ...) implements, and
all that neurocodec's API and CLI know about codecs.

A kind is two classes:

* the **kind class** (``ImageCodec``, ``AudioCodec``), a subclass of :class:`Codec` in a module
  that imports no torch: what routing, ``neurocodec list`` and ``neurocodec info`` need
  (``accepts``, ``describe``, ``summary``, ``options``, the file I/O checks). It is registered in
  the registry's kind table and names its implementation;
* its **implementation** (``implementation = "module:Class"``), a subclass of the kind class
  that holds the model: ``load`` builds it from a codec folder, and it encodes and decodes.

``Codec.from_dir(path)`` reads and checks ``codec.json``, imports the implementation (a clear
one-line error when the ``codecs`` extra is missing), and loads it. A new family is a new kind
class + implementation + its tools (``tools = "neurocodec.tools.<kind>"``): no branch in the
API or the CLI.
"""
from __future__ import annotations

import importlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from neurocodec.runtime.bitstream import NcFile, NcFormatError

#: The codec.json ``format_version`` this release reads and writes.
META_VERSION = 1

#: Modules only the ``codecs`` extra installs.
CODEC_MODULES = ("torch", "compressai", "torchvision", "PIL", "soundfile", "soxr")


class DecodeTooLargeError(ValueError):
    """A valid file whose decoded signal is too large to return as one array (audio: more
    than 2 GiB of float32 samples): neurocodec.decode() refuses it before decoding;
    neurocodec.decode_file() / `neurocodec decode` stream it to disk. Not an NcFormatError:
    nothing is wrong with the file."""


class MissingDependency(ImportError):
    """A codec (or tool) needs a package of an extra that is not installed."""


def require(extra: str, what: str, err: ModuleNotFoundError) -> MissingDependency:
    """One line telling the user what to install, for an ImportError of a missing package."""
    return MissingDependency(f"{what} need(s) the '{extra}' extra, which is not installed (no module "
                             f"{err.name!r}): pip install 'neurocodec[{extra}]'")


def resolve(target: str) -> Any:
    """'package.module:Name' -> the object; how the registry finds kinds and implementations
    by name (like entry points), so that nothing below imports upward."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Option:
    """A keyword option of a kind's encode (or train/export/eval) call, and its CLI flag."""
    name: str  # the keyword argument
    type: Callable[[str], Any] = str  # parses the CLI string
    help: str = ""
    flag: str = ""  # default: --name with dashes
    nargs: str | None = None
    cli: bool = True  # False: an API-only option (e.g. an array's sample rate)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def float_list(s: str) -> list[float]:
    """A CLI option's comma-separated floats."""
    return [float(v) for v in s.split(",") if v.strip()]


def int_list(s: str) -> list[int]:
    """A CLI option's comma-separated whole numbers."""
    return [int(v) for v in s.split(",") if v.strip()]


def given(opts: dict[str, Any]) -> dict[str, Any]:
    """The options actually given (None means: the default)."""
    return {k: v for k, v in opts.items() if v is not None}


class Codec(ABC):
    """A loaded codec of some kind. Class-level methods work without loading a model."""

    kind: ClassVar[str] = ""
    implementation: ClassVar[str] = ""  # "module:Class" of the subclass that holds the model
    tools: ClassVar[str] = ""  # module of the kind's train/export/eval tools (never imported here)
    archs: ClassVar[tuple[str, ...]] = ()  # model architectures (registry names) of this kind
    input_suffixes: ClassVar[tuple[str, ...]] = ()  # files encode_file() reads
    output_suffix: ClassVar[str] = ""  # default suffix of decoded files
    input_hint: ClassVar[str] = ""  # what encode takes, for error messages
    format_error: ClassVar[type[NcFormatError]] = NcFormatError  # the kind's error for files it cannot decode
    options: ClassVar[dict[str, tuple[Option, ...]]] = {}  # per command: "encode", "train", "export", "eval"

    name: str
    id: int
    meta: dict

    def __init__(self, meta: dict):
        self.meta = meta
        self.name, self.id = meta["name"], int(meta["id"])

    # -- loading ----------------------------------------------------------------
    @classmethod
    def from_dir(cls, path: str | os.PathLike, meta: dict | None = None) -> Codec:
        """Load the codec in folder path (its codec.json is read unless meta is given)."""
        path = Path(path)
        meta = meta if meta is not None else read_meta(path)
        check_meta(meta)
        impl = cls
        if cls.implementation:
            try:
                impl = resolve(cls.implementation)
            except ModuleNotFoundError as e:
                if (e.name or "").split(".")[0] in CODEC_MODULES:
                    raise require("codecs", f"{cls.kind} codecs", e) from None
                raise
        return impl.load(path, meta)

    @classmethod
    def load(cls, path: Path, meta: dict) -> Codec:
        """Build the codec from its folder (implementations override this)."""
        raise NotImplementedError(f"{cls.__name__} has no implementation to load")

    # -- what a kind takes (class level: no model) ----------------------------------
    @classmethod
    def accepts(cls, data: Any, opts: dict[str, Any]) -> int:
        """How surely this kind codes data: 2 certainly, 1 possibly, 0 not. A path is judged
        by its suffix; kinds refine this for arrays and options."""
        if isinstance(data, (str, os.PathLike)):
            return 2 if Path(data).suffix.lower() in cls.input_suffixes else 0
        return 0

    @classmethod
    def check_options(cls, opts: dict[str, Any], command: str = "encode") -> dict[str, Any]:
        """The given options; ValueError naming any this kind does not take."""
        opts = given(opts)
        known = {o.name for o in cls.options.get(command, ())}
        for k in opts:
            if k not in known:
                takes = ", ".join(sorted(known)) or "none"
                raise ValueError(f"{k} is not an option of {cls.kind} codecs (they take: {takes})")
        return opts

    # -- describing files (class level: no model) ------------------------------------
    @classmethod
    def describe(cls, nc: NcFile, meta: dict, nbytes: int) -> dict:
        """Header fields of a parsed (so checksum-verified) .nc file: what `info` prints."""
        return {"version": nc.version, "codec_id": nc.codec_id, "codec": meta.get("name"), "quality": nc.quality,
                "shape": list(nc.shape), "streams": [len(s) for s in nc.streams], "bytes": nbytes,
                "overhead_bytes": nbytes - sum(len(s) for s in nc.streams),
                "checksums": "verified (header and payload)"}

    @classmethod
    def encoded_summary(cls, info: dict) -> str:
        """One line about a file just written, from describe()."""
        return f"{info['bytes']} bytes"

    @classmethod
    def decoded_summary(cls, info: dict) -> str:
        """One line about what a file decodes to, from describe()."""
        return "shape " + "x".join(str(v) for v in info["shape"])

    @classmethod
    def summary(cls, meta: dict) -> str:
        """What `neurocodec list` shows of a codec's rates or qualities."""
        return ""

    @classmethod
    def check_output(cls, out: Path, nc: NcFile) -> None:
        """Before any decoding work: ValueError if out cannot hold what nc decodes to."""
        return None  # any path will do, unless a kind says otherwise

    # -- coding (loaded codecs) ------------------------------------------------------
    @abstractmethod
    def encode(self, x: Any, progress: bool = False, **opts: Any) -> bytes:
        """In-memory input -> the bytes of a .nc file."""

    @abstractmethod
    def encode_file(self, path: str | os.PathLike, progress: bool = False, **opts: Any) -> bytes:
        """An input file -> the bytes of a .nc file (options checked before reading)."""

    @abstractmethod
    def decode_nc(self, nc: NcFile, progress: bool = False) -> Any:
        """A parsed .nc file of this codec -> the decoded signal (NcFormatError if bad)."""

    @abstractmethod
    def decode_to_file(self, nc: NcFile, out: Path, progress: bool = False, overwrite: bool = False) -> None:
        """Decode to a file, written atomically (check_output has accepted out)."""

    def decode(self, data: bytes | bytearray | memoryview, progress: bool = False) -> Any:
        nc = NcFile.from_bytes(bytes(data))
        if nc.codec_id != self.id:
            raise self.format_error(f"file was written by codec id {nc.codec_id}, not {self.name!r} ({self.id})")
        return self.decode_nc(nc, progress=progress)


def read_meta(path: Path) -> dict:
    """A codec folder's codec.json, with its folder as "path"."""
    cfg = Path(path) / "codec.json"
    try:
        meta = json.loads(cfg.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(2, "not a codec folder (no codec.json)", str(path)) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{cfg}: not a codec description")
    meta["path"] = str(path)
    return meta


def check_meta(meta: dict) -> None:
    """What every kind needs of codec.json; ValueError naming the codec otherwise."""
    where = meta.get("path", meta.get("name", "?"))
    for key, typ in (("name", str), ("id", int), ("kind", str)):
        if not isinstance(meta.get(key), typ):
            raise ValueError(f"codec {where}: codec.json lacks a valid {key!r}")
    if not 0 < meta["id"] < 1 << 16:
        raise ValueError(f"codec {meta['name']!r}: id {meta['id']} is outside 1..65535")
    v = meta.get("format_version", 1)
    if not isinstance(v, int) or v < 1:
        raise ValueError(f"codec {meta['name']!r}: bad format_version {v!r}")
    if v > META_VERSION:
        raise ValueError(f"codec {meta['name']!r} has format_version {v}, newer than this neurocodec reads "
                         f"({META_VERSION}): upgrade neurocodec")
