"""The one codec registry. Three layers:

- model architectures ("hyperprior", "shallow"; later audio/INR ones), registered with
  ``@register_model(name)``: a builder from a config dict, used by training and export;
- codec kinds ("image", later "audio", "inr"): a class per kind, registered with
  ``@register_kind``, that loads a codec folder and implements encode/decode;
- codecs: folders holding ``codec.json`` (stable string name and numeric id, kind, config)
  and the weightzip-packed weights. Shipped codecs live in the package (``neurocodec/_codecs``
  in a wheel, ``codecs/`` in a source checkout); more folders can be listed in the
  ``NEUROCODEC_PATH`` environment variable (os.pathsep-separated), or a folder path can be
  given wherever a codec name is accepted.

A .nc file names its codec by the numeric id, so ids are never reused.
"""
from __future__ import annotations

import json
import os
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Callable

from neurocodec.runtime.bitstream import NcFormatError

_KINDS: dict[str, Any] = {}
_MODELS: dict[str, Callable[..., Any]] = {}


class CodecNotFound(LookupError):
    """No codec of that name, folder or kind is installed."""


class UnknownCodecId(CodecNotFound, NcFormatError):
    """A .nc file names a codec id this installation does not have. Also an NcFormatError,
    so that everything decode() raises for a file it cannot decode is one family."""


def register_kind(kind: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if kind in _KINDS:
            raise ValueError(f"codec kind {kind!r} registered twice")
        cls.kind = kind
        _KINDS[kind] = cls
        return cls
    return deco


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Register a model builder under a stable string id (CompressAI's @register_model)."""
    def deco(fn: Callable) -> Callable:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn
    return deco


def build_model(name: str, config: dict | None = None) -> Any:
    if name not in _MODELS:  # a codec kind's module has usually registered it already
        _import_models()
    if name not in _MODELS:
        raise CodecNotFound(f"unknown model {name!r} (registered: {', '.join(sorted(_MODELS))})")
    return _MODELS[name](config or {})


def model_names() -> list[str]:
    _import_models()
    return sorted(_MODELS)


def _import_models() -> None:
    from neurocodec.runtime.audio import models as _audio  # noqa: F401
    from neurocodec.runtime.image import models as _image  # noqa: F401


_KIND_MODULES = {"image": ".image.codec", "audio": ".audio.codec"}


def _import_kind(kind: str) -> None:
    # Importing a kind's module registers it; torch is imported only here, and CompressAI
    # (slow to import) only for image codecs.
    if kind in _KIND_MODULES and kind not in _KINDS:
        import importlib

        importlib.import_module(_KIND_MODULES[kind], __package__)


def search_paths() -> list[Path]:
    package = Path(__file__).resolve().parents[1]  # neurocodec/
    paths = [Path(p) for p in os.environ.get("NEUROCODEC_PATH", "").split(os.pathsep) if p]
    paths += [package / "_codecs", package.parent / "codecs"]
    return [p for p in paths if p.is_dir()]


@cache
def _scan() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for root in search_paths():
        for cfg in sorted(root.glob("*/codec.json")):
            meta = json.loads(cfg.read_text())
            meta["path"] = str(cfg.parent)
            found.setdefault(meta["name"], meta)  # earlier search paths win
    return found


def list_codecs() -> list[dict]:
    """Metadata (codec.json plus its folder) of every codec found, by id."""
    return sorted(_scan().values(), key=lambda m: m["id"])


def codec_meta(name_or_path: str | os.PathLike) -> dict:
    p = Path(name_or_path)
    if (p / "codec.json").is_file():
        meta = json.loads((p / "codec.json").read_text())
        meta["path"] = str(p)
        return meta
    meta = _scan().get(str(name_or_path))
    if meta is None:
        names = ", ".join(m["name"] for m in list_codecs()) or "none"
        raise CodecNotFound(f"unknown codec {str(name_or_path)!r} (available: {names})")
    return meta


_LOADED: dict[int, dict] = {}  # codecs loaded from explicit folders in this process, by id


def meta_by_id(codec_id: int) -> dict:
    if codec_id in _LOADED:
        return _LOADED[codec_id]
    for meta in _scan().values():
        if meta["id"] == codec_id:
            return meta
    raise UnknownCodecId(f"this file needs codec id {codec_id}, which this installation does not have "
                        f"(installed: {', '.join(str(m['id']) + '=' + m['name'] for m in list_codecs()) or 'none'})")


@lru_cache(maxsize=8)
def _load(path: str) -> Any:
    meta = codec_meta(path)
    _import_kind(meta.get("kind", ""))
    cls = _KINDS.get(meta.get("kind", ""))
    if cls is None:
        raise CodecNotFound(f"codec {meta['name']!r} has unknown kind {meta.get('kind')!r}")
    codec = cls.from_dir(Path(path), meta)
    _LOADED.setdefault(int(meta["id"]), meta)  # so files it wrote decode without naming it again
    return codec


def load_codec(name_or_path: str | os.PathLike) -> Any:
    return _load(codec_meta(name_or_path)["path"])


def load_by_id(codec_id: int) -> Any:
    return _load(meta_by_id(codec_id)["path"])


def default_codec(kind: str = "image") -> str:
    for meta in list_codecs():
        if meta.get("kind") == kind and meta.get("default"):
            return meta["name"]
    for meta in list_codecs():
        if meta.get("kind") == kind:
            return meta["name"]
    raise CodecNotFound(f"no {kind} codec is installed")
