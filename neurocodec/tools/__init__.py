"""Tools: what trains, exports and evaluates codecs (never needed to encode or decode).

Each codec kind has a commands module (its kind class names it: ``Codec.tools``) offering the
same three functions, so the CLI calls them without knowing the kind:

    train(arch, data, resume=True, **opts) -> Path          # the checkpoint
    export(checkpoint, out, name, codec_id, default=False, **opts) -> Path   # the codec folder
    evaluate(codec, data, out, limit=None, anchors=True, **opts) -> str      # a printable summary

Options are the kind's (Codec.options["train" | "export" | "eval"]) plus the common training
ones (out, steps, time_budget_min, batch, lr, device, threads, seed, init); None = default.
Shared pieces: trainer.py (the one training loop), checkpoints.py, rd.py (BD-rate, RD plots).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from neurocodec.runtime.codec import Codec
from neurocodec.runtime.registry import codec_meta, kind_class, kind_of_arch


def for_kind(kind: str | type[Codec]) -> ModuleType:
    cls = kind_class(kind) if isinstance(kind, str) else kind
    if not cls.tools:
        raise LookupError(f"codec kind {cls.kind!r} has no tools (training, export, evaluation)")
    return importlib.import_module(cls.tools)


def for_arch(arch: str) -> ModuleType:
    """The tools of the kind that model architecture belongs to."""
    return for_kind(kind_of_arch(arch))


def for_codec(name_or_path: str) -> ModuleType:
    return for_kind(str(codec_meta(name_or_path).get("kind", "")))


def for_checkpoint(path: str) -> ModuleType:
    """The tools that trained a checkpoint (checked: a weights_only load)."""
    from neurocodec.tools.checkpoints import load_checkpoint

    return for_arch(str(load_checkpoint(path)["config"]["model"].get("arch", "")))
