"""The one codec registry. Three layers:

- codec kinds ("image", "audio"; later "inr"): the kind table below maps each to its kind
  class (neurocodec.runtime.codec.Codec), found by name like an entry point, so that this
  module sits below every kind and imports none of them (no import loop);
- model architectures ("hyperprior", "shallow", "audio-rvq"), registered with
  ``@register_model(name)`` by the module that defines them: a builder from a config dict,
  used by the codecs, training and export (which import that module themselves);
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
from neurocodec.runtime.codec import Codec, read_meta, resolve

#: kind -> "module:KindClass". A new family adds one line here (or calls register_kind).
KINDS: dict[str, str] = {
    "image": "neurocodec.runtime.image.codec:ImageCodec",
    "audio": "neurocodec.runtime.audio.codec:AudioCodec",
    "coolchic": "neurocodec.runtime.coolchic.codec:CoolChicCodec",
}

_MODELS: dict[str, Callable[..., Any]] = {}


class CodecNotFound(LookupError):
    """No codec of that name, folder or kind is installed."""


class UnknownCodecId(CodecNotFound, NcFormatError):
    """A .nc file names a codec id this installation does not have. Also an NcFormatError,
    so that everything decode() raises for a file it cannot decode is one family."""


# -- kinds ------------------------------------------------------------------------------
def register_kind(kind: str, target: str) -> None:
    """Add a codec kind: target is "module:KindClass" (imported when first needed)."""
    if kind in KINDS and KINDS[kind] != target:
        raise ValueError(f"codec kind {kind!r} registered twice")
    KINDS[kind] = target


@cache
def kind_class(kind: str) -> type[Codec]:
    if kind not in KINDS:
        raise CodecNotFound(f"unknown codec kind {kind!r} (known: {', '.join(KINDS)})")
    cls = resolve(KINDS[kind])
    if not (isinstance(cls, type) and issubclass(cls, Codec)) or cls.kind != kind:
        raise TypeError(f"{KINDS[kind]} is not the Codec class of kind {kind!r}")
    return cls


def kind_classes() -> list[type[Codec]]:
    return [kind_class(k) for k in KINDS]


def kind_for_input(data: Any, opts: dict[str, Any]) -> type[Codec]:
    """The kind that codes data (a path or an array) with these options."""
    # the highest score wins; on a tie, the kind listed first in KINDS (image before coolchic)
    score, best = max(((c.accepts(data, opts), -i) for i, c in enumerate(kind_classes())), default=(0, 0))
    best = -best
    if not score:
        what = f"{data}: a file" if isinstance(data, (str, os.PathLike)) else "this input"
        reads = "; ".join(f"{c.kind}: {' '.join(c.input_suffixes)}" for c in kind_classes())
        raise ValueError(f"{what} no codec kind reads ({reads})")
    return kind_classes()[best]


def kind_of_arch(arch: str) -> type[Codec]:
    for cls in kind_classes():
        if arch in cls.archs:
            return cls
    raise CodecNotFound(f"unknown model architecture {arch!r} (known: {', '.join(model_names())})")


# -- model architectures -------------------------------------------------------------------
def register_model(name: str) -> Callable[[Callable], Callable]:
    """Register a model builder under a stable string id (CompressAI's @register_model)."""
    def deco(fn: Callable) -> Callable:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn
    return deco


def build_model(name: str, config: dict | None = None) -> Any:
    """Build a registered architecture (the caller has imported the module defining it)."""
    if name not in _MODELS:
        raise CodecNotFound(f"unknown model {name!r} (registered: {', '.join(sorted(_MODELS)) or 'none'})")
    return _MODELS[name](config or {})


def model_names() -> list[str]:
    """Every architecture the installed kinds declare (without importing a model)."""
    return sorted({a for cls in kind_classes() for a in cls.archs} | set(_MODELS))


# -- codecs ----------------------------------------------------------------------------
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
        return read_meta(p)
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
def _load(path: str) -> Codec:
    meta = codec_meta(path)
    codec = kind_class(str(meta.get("kind", ""))).from_dir(Path(path), meta)
    _LOADED.setdefault(int(meta["id"]), meta)  # so files it wrote decode without naming it again
    return codec


def load_codec(name_or_path: str | os.PathLike) -> Codec:
    return _load(codec_meta(name_or_path)["path"])


def load_by_id(codec_id: int) -> Codec:
    return _load(meta_by_id(codec_id)["path"])


def default_codec(kind: str = "image") -> str:
    for meta in list_codecs():
        if meta.get("kind") == kind and meta.get("default"):
            return meta["name"]
    for meta in list_codecs():
        if meta.get("kind") == kind:
            return meta["name"]
    raise CodecNotFound(f"no {kind} codec is installed")
