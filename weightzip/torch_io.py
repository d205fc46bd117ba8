"""torch interop: tensors for framework="torch", and reading .wz files of the old torch path.

Checkpoints are now packed byte-exact without torch (torch_zip.py, source kinds "torch-zip"
and "torch-legacy"). Files written before that (source kind "torch") hold the object tree as
JSON with tensor references (`{"__tensor__": entry}`, `{"__dict__": [[k, v]...], "ordered":
bool, "_metadata": ...}`, `__list__`, `__tuple__`, `__value__`); unpack() rebuilds the objects
and torch.save()s them: tensor-exact, as those files always were.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .dtypes import by_name


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("reading or writing torch checkpoints needs torch: pip install torch") from None
    return torch


def to_tensor(raw: np.ndarray, dtype: str, shape: tuple[int, ...]):
    """uint8 buffer -> torch tensor of the stored dtype and shape (shares memory)."""
    torch = _torch()
    tdtype = getattr(torch, by_name(dtype).torch)
    if raw.size == 0:  # torch cannot reinterpret an empty byte tensor
        return torch.empty(shape, dtype=tdtype)
    return torch.from_numpy(raw).view(tdtype).reshape(shape)


def rebuild(tree: Any, tensor: Any) -> Any:
    """The objects of an old "torch" .wz tree; tensor(i) returns the torch tensor of entry i."""
    if "__tensor__" in tree:
        return tensor(tree["__tensor__"])
    if "__dict__" in tree:
        d = (OrderedDict if tree.get("ordered") else dict)((k, rebuild(v, tensor)) for k, v in tree["__dict__"])
        if "_metadata" in tree:
            d._metadata = OrderedDict((k, v) for k, v in tree["_metadata"])  # type: ignore[attr-defined]
        return d
    if "__list__" in tree:
        return [rebuild(v, tensor) for v in tree["__list__"]]
    if "__tuple__" in tree:
        return tuple(rebuild(v, tensor) for v in tree["__tuple__"])
    return tree["__value__"]


def save_checkpoint(obj: Any, path: Path) -> None:
    _torch().save(obj, path)
