"""torch checkpoints (.pt/.pth/.bin): loaded with weights_only=True, never unpickled freely.

The object tree (nested dicts/lists of tensors and plain values) is stored as JSON with
tensor references; tensors come back bit-exact with the same names, dtypes and shapes. The
pickle bytes of the rebuilt file may differ from the original (storage sharing between
views and tensor subclasses such as nn.Parameter are not preserved).
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .container import Writer
from .dtypes import by_name, from_torch


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("reading or writing torch checkpoints needs torch: pip install torch") from None
    return torch


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def load_checkpoint(path: Path) -> Any | None:
    """The checkpoint's object tree, or None if weights_only loading refuses the file (not a
    checkpoint, a pickled module, exotic types): the caller then stores it as plain bytes."""
    try:
        torch = _torch()
    except ImportError:
        warnings.warn(f"{path}: torch is not installed, storing the file as plain bytes")
        return None
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) checkpoints cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
        add_checkpoint(None, obj)  # dry run: refuse unsupported content before writing
        return obj
    except Exception:  # noqa: BLE001 - any refusal means "not a plain checkpoint"
        return None


def add_checkpoint(w: Writer | None, obj: Any) -> Any:
    """Store every tensor of a loaded checkpoint (w=None: only validate); returns the JSON
    tree that rebuilds it."""
    torch = _torch()

    def walk(o: Any, name: str) -> Any:
        if isinstance(o, torch.Tensor):
            if o.layout != torch.strided or o.is_quantized:
                raise ValueError(f"{name}: sparse/quantized tensors are not supported")
            dt = from_torch(o.dtype)
            if dt is None:
                raise ValueError(f"{name}: unsupported dtype {o.dtype}")
            if w is None:
                return None
            flat = o.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
            return {"__tensor__": w.add_tensor(name, dt, tuple(o.shape), iter([memoryview(flat)]))}
        if isinstance(o, dict):
            items = []
            for k, v in o.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise ValueError(f"{name}: dict keys must be str or int, got {type(k).__name__}")
                items.append([k, walk(v, f"{name}.{k}" if name else str(k))])
            node: dict[str, Any] = {"__dict__": items, "ordered": isinstance(o, OrderedDict)}
            meta = getattr(o, "_metadata", None)  # nn.Module.state_dict() version info
            if isinstance(meta, dict):
                node["_metadata"] = [[k, v] for k, v in meta.items()]
            return node
        if isinstance(o, (list, tuple)):
            kind = "__list__" if isinstance(o, list) else "__tuple__"
            return {kind: [walk(v, f"{name}.{i}") for i, v in enumerate(o)]}
        if _plain(o):
            return {"__value__": o}
        raise ValueError(f"{name}: cannot store a {type(o).__name__} from a torch checkpoint")

    return walk(obj, "")


def to_tensor(raw: np.ndarray, dtype: str, shape: tuple[int, ...]):
    """uint8 buffer -> torch tensor of the stored dtype and shape (shares memory)."""
    torch = _torch()
    tdtype = getattr(torch, by_name(dtype).torch)
    if raw.size == 0:  # torch cannot reinterpret an empty byte tensor
        return torch.empty(shape, dtype=tdtype)
    return torch.from_numpy(raw).view(tdtype).reshape(shape)


def rebuild(tree: Any, tensor: Any) -> Any:
    """Inverse of add_checkpoint's tree; tensor(i) returns the torch tensor of entry i."""
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
