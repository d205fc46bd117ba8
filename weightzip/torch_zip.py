"""Byte-exact splitting of torch checkpoints, without torch and without unpickling.

torch.save (zip format, torch >= 1.6) writes a zip archive: `<archive>/data.pkl` describes
the objects, and each tensor storage is a STORED member `<archive>/data/<key>` of raw
little-endian elements. The pickle is read symbolically (pickle_scan) to learn each key's
dtype from its persistent id `('storage', torch.<X>Storage, key, location, numel)` (or the
dtype argument of `_rebuild_tensor_v3` for untyped storages) and a readable name: the dict
path of a tensor that covers it whole, else of the first tensor that uses it. TorchScript
archives (torch.jit.save) have the same layout (data.pkl, constants.pkl). Legacy files
(`_use_new_zipfile_serialization=False`) are five pickles followed by each storage as
`u64 numel` + raw bytes, in the order of the last pickle's key list.

The result is a list of spans (start, end, name, dtype, shape); everything else in the file
(zip records, pickles, padding) stays bytes. Nothing here is trusted for correctness: the
caller stores every byte between spans, so a wrong guess only costs compression.
"""
from __future__ import annotations

import struct
import zlib
from typing import Any, BinaryIO

from . import zipscan
from .container import MAX_DIMS
from .dtypes import BY_NAME
from .errors import FormatError
from .pickle_scan import MAX_PICKLE, Call, Global, PersId, SDict, scan

Span = tuple[int, int, str, str, tuple[int, ...]]  # start, end, name, dtype, shape

# storage class (persistent id) -> (weightzip dtype, scalars per element); complex = 2 floats
STORAGES = {
    "FloatStorage": ("F32", 1), "DoubleStorage": ("F64", 1), "HalfStorage": ("F16", 1),
    "BFloat16Storage": ("BF16", 1), "ComplexFloatStorage": ("F32", 2),
    "ComplexDoubleStorage": ("F64", 2), "BoolStorage": ("BOOL", 1), "ByteStorage": ("U8", 1),
    "CharStorage": ("I8", 1), "ShortStorage": ("I16", 1), "IntStorage": ("I32", 1),
    "LongStorage": ("I64", 1), "QUInt8Storage": ("U8", 1), "QInt8Storage": ("I8", 1),
    "QInt32Storage": ("I32", 1), "QUInt4x2Storage": ("U8", 1), "QUInt2x4Storage": ("U8", 1),
    "UntypedStorage": ("U8", 1),
}
# torch dtype (the `_rebuild_tensor_v3` argument for untyped storages) -> the same
DTYPES = {
    "float32": ("F32", 1), "float": ("F32", 1), "float64": ("F64", 1), "double": ("F64", 1),
    "float16": ("F16", 1), "half": ("F16", 1), "bfloat16": ("BF16", 1),
    "complex64": ("F32", 2), "cfloat": ("F32", 2), "complex128": ("F64", 2),
    "cdouble": ("F64", 2), "complex32": ("F16", 2), "chalf": ("F16", 2), "bool": ("BOOL", 1),
    "uint8": ("U8", 1), "int8": ("I8", 1), "int16": ("I16", 1), "short": ("I16", 1),
    "int32": ("I32", 1), "int": ("I32", 1), "int64": ("I64", 1), "long": ("I64", 1),
    "uint16": ("U16", 1), "uint32": ("U32", 1), "uint64": ("U64", 1),
    "float8_e4m3fn": ("F8_E4M3", 1), "float8_e5m2": ("F8_E5M2", 1),
}  # other float8 variants, qint, bits: kept as bytes (U8)
REBUILD = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor"}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_HEAD = b"\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little") + b"."  # LONG1 magic, STOP
MAX_NAME = 200  # names are labels: deeper paths are cut (bounds memory on deep nesting)
MAX_REFS = 4  # tensors remembered per storage (one suffices unless the first is a view)
MAX_SPANS = 200_000  # storages coded as tensors per file (checkpoints have a few thousand)
MAX_DIM = 1 << 48


class Ref:
    """One use of a storage: where (dict path) and, for tensors, the view it makes."""
    __slots__ = ("stype", "numel", "path", "dtype", "view")

    def __init__(self, stype: str, numel: Any, path: str, dtype: str | None, view: tuple | None):
        self.stype, self.numel, self.path, self.dtype, self.view = stype, numel, path, dtype, view


_SAME = object()  # a child that keeps its parent's path (call arguments, BUILD state)


def _key(k: Any) -> str:
    if isinstance(k, int) and not -(10 ** 30) < k < 10 ** 30:
        return "?"  # huge ints: str() would be slow or refuse
    return k if isinstance(k, str) else str(k) if isinstance(k, (int, float)) or k is None else "?"


def _join(path: str, k: Any) -> str:
    p = f"{path}.{_key(k)}" if path else _key(k)
    return p if len(p) <= MAX_NAME else path


def storage_refs(root: Any) -> dict[str, list[Ref]]:
    """storage key -> its uses, in pickle order (an iterative walk; each node visited once)."""
    refs: dict[str, list[Ref]] = {}

    def record(pid: Any, path: str, args: tuple | None) -> None:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], Global) and isinstance(pid[2], (str, int))):
            return
        dtype = None
        if args is not None and len(args) > 6 and isinstance(args[6], Global) and args[6].module == "torch":
            dtype = args[6].name  # _rebuild_tensor_v3(storage, offset, size, stride, grad, hooks, dtype)
        view = tuple(args[1:4]) if args is not None and len(args) >= 4 else None
        uses = refs.setdefault(str(pid[2]), [])
        if len(uses) < MAX_REFS:
            uses.append(Ref(pid[1].name, pid[4], path, dtype, view))

    seen: set[int] = set()
    # (node, parent's path, key or _SAME): a path is made only for a container when it is
    # visited, so a wide dict costs no string per item and deep ones share a capped one
    todo: list[tuple[Any, str, Any]] = [(root, "", _SAME)]
    while todo:
        node, parent, key = todo.pop()
        if not isinstance(node, (list, tuple, SDict, Call, PersId)) or id(node) in seen:
            continue
        seen.add(id(node))
        path = parent if key is _SAME else _join(parent, key)
        kids: list[tuple[Any, str, Any]] = []
        if isinstance(node, PersId):
            record(node.pid, path, None)
        elif isinstance(node, Call):
            f, a = node.func, node.args
            if isinstance(f, Global) and f.module == "torch._utils" and f.name in REBUILD and \
                    isinstance(a, tuple) and a and isinstance(a[0], PersId):
                record(a[0].pid, path, a)
                seen.add(id(a[0]))
                continue
            kids += [(x, path, _SAME) for x in (a if isinstance(a, tuple) else (a,))]
            kids += [(v, path, k) for k, v in node.items]
            kids += [(v, path, i) for i, v in enumerate(node.appends)]
            kids.append((node.state, path, _SAME))
        elif isinstance(node, SDict):
            kids += [(v, path, k) for k, v in node.items]
        else:
            kids += [(v, path, i) for i, v in enumerate(node)]
        todo += reversed(kids)  # pre-order: first use in pickle order names the storage
    return refs


def _dtype(ref: Ref) -> tuple[str, int]:
    if ref.stype == "UntypedStorage" and ref.dtype is not None:
        return DTYPES.get(ref.dtype, ("U8", 1))
    return STORAGES.get(ref.stype, ("U8", 1))


def _full_shape(view: tuple | None, n: int) -> tuple[int, ...] | None:
    """The tensor's shape if it covers its whole storage of n elements, C-contiguous."""
    if view is None:
        return None
    offset, size, stride = view
    if offset != 0 or not isinstance(size, tuple) or not isinstance(stride, tuple) or \
            len(size) != len(stride) or len(size) > 64 or \
            not all(type(v) is int and 0 <= v < MAX_DIM for v in size + stride):
        return None
    total, expect = 1, 1
    for s in size:
        total *= s
    for s, st in zip(reversed(size), reversed(stride)):
        if s != 1 and st != expect:
            return None
        expect *= s
    return size if total == n else None


def storage_span(start: int, nbytes: int, key: str, uses: list[Ref], big_endian: bool) -> Span:
    """The tensor entry of one storage: dtype from its class, name and shape from its uses."""
    dtype, lanes = _dtype(uses[0])
    itemsize = BY_NAME[dtype].itemsize
    if (big_endian and itemsize > 1) or nbytes % itemsize:
        dtype, lanes, itemsize = "U8", 1, 1  # kept exact as bytes
    n = nbytes // itemsize
    best, shape = uses[0], None
    if lanes == 1:
        for u in uses:
            if (shape := _full_shape(u.view, n)) is not None:
                best = u
                break
    name = "".join(c if c.isprintable() else "?" for c in best.path or f"data/{key}")  # a label
    return start, start + nbytes, name, dtype, shape if shape is not None and len(shape) <= MAX_DIMS else (n,)


def _unique(spans: list[Span]) -> list[Span]:
    """Sorted, non-overlapping spans with distinct names (first come, first kept); at most
    MAX_SPANS, the largest (the rest stays bytes: keeps the .wz index well under its limit)."""
    if len(spans) > MAX_SPANS:
        spans = sorted(spans, key=lambda s: s[0] - s[1])[:MAX_SPANS]
    out: list[Span] = []
    names: set[str] = set()
    for s in sorted(spans):
        if out and s[0] < out[-1][1]:
            continue
        name, k = s[2], 0
        while name in names:  # "x@offset" may itself be taken (a crafted file can name one so)
            name, k = f"{s[2]}@{s[0]}" + (f".{k}" if k else ""), k + 1
        names.add(name)
        out.append((s[0], s[1], name, s[3], s[4]))
    return out


def zip_layout(f: BinaryIO, size: int) -> list[Span] | None:
    """Spans of the storages of a torch zip checkpoint; None if f is a zip but not a torch
    archive (no top-level data.pkl). Raises FormatError on malformed input."""
    ms = zipscan.members(f, size)
    by_name = {m.name: m for m in ms}
    pickles = [m for m in ms if m.name.count("/") == 1 and m.name.endswith(".pkl")]
    if not any(m.name.endswith("/data.pkl") for m in pickles):
        return None
    spans: list[Span] = []
    budget = MAX_PICKLE  # for all pickles together
    for pk in sorted(pickles, key=lambda m: not m.name.endswith("/data.pkl")):
        prefix, stem = pk.name[:-4].split("/")
        order = by_name.get(f"{prefix}/byteorder")
        big = order is not None and zipscan.read_member(f, size, order, 64) != b"little"
        try:
            data = zipscan.read_member(f, size, pk, budget)
            budget -= len(data)
            root, _ = scan(data)
        except FormatError:
            if stem == "data":
                raise
            continue  # TorchScript's other pickles (constants, traced inputs): optional
        for key, uses in storage_refs(root).items():
            m = by_name.get(f"{prefix}/{stem}/{key}") or by_name.get(f"{prefix}/.data/{key}")
            if m is not None and m.method == zipscan.STORED and m.csize == m.usize:
                s = storage_span(zipscan.data_start(f, size, m), m.csize, key, uses, big)
                spans.append(s if stem == "data" else (s[0], s[1], f"{stem}.{s[2]}", s[3], s[4]))
    return _unique(spans)


def is_legacy(head: bytes) -> bool:
    return len(head) >= 16 and head[0] == 0x80 and 2 <= head[1] <= 5 and head[2:15] == LEGACY_HEAD


def legacy_layout(f: BinaryIO, size: int) -> list[Span]:
    """Spans of a legacy (non-zip) torch file: pickles, then `u64 numel` + bytes per storage.
    Stops at the first storage it cannot account for (the rest stays bytes)."""
    f.seek(0)
    head = f.read(min(size, MAX_PICKLE))
    pos, objs = 0, []
    for _ in range(5):  # magic, protocol version, sys info, the objects, storage keys
        obj, pos = scan(head, pos)
        objs.append(obj)
    magic, _proto, sys_info, root, keys = objs
    if magic != LEGACY_MAGIC or not isinstance(keys, list):
        raise FormatError("not a legacy torch checkpoint")
    little = isinstance(sys_info, SDict) and ("little_endian", True) in sys_info.items
    refs = storage_refs(root)
    spans: list[Span] = []
    for key in keys:
        uses = refs.get(str(key))
        if not isinstance(key, str) or not uses or type(uses[0].numel) is not int:
            break
        dtype, lanes = _dtype(uses[0])
        elsize = BY_NAME[dtype].itemsize * lanes
        f.seek(pos)
        raw = f.read(8)
        if len(raw) != 8:
            break
        (numel,) = struct.unpack("<Q", raw)
        nbytes = numel * elsize
        if numel != uses[0].numel or pos + 8 + nbytes > size:
            break
        spans.append(storage_span(pos + 8, nbytes, key, uses, not little))
        pos += 8 + nbytes
    return _unique(spans)


def layout(f: BinaryIO, size: int) -> tuple[str, list[Span]] | None:
    """("torch-zip" | "torch-legacy", spans) for a torch checkpoint, None for anything else.
    Raises FormatError, and only that, when it looks like one but does not parse."""
    f.seek(0)
    head = f.read(16)
    try:
        if zipscan.is_zip(head):
            spans = zip_layout(f, size)
            return None if spans is None else ("torch-zip", spans)
        if is_legacy(head):
            return "torch-legacy", legacy_layout(f, size)
    except FormatError:
        raise
    except (ValueError, OverflowError, RecursionError, struct.error, zlib.error, TypeError,
            IndexError, KeyError, AttributeError) as e:  # e.g. a 5000-digit storage key
        raise FormatError(f"unreadable torch checkpoint ({type(e).__name__}: {e})") from None
    return None
