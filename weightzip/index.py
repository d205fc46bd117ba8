"""The JSON index of a .wz file (docs/format.md): entries, files, source, and (version 2) the
reference a delta was coded against. Parsing validates everything the decoder relies on.

Versions 1-3 list entries as one JSON object each; version 4 stores them as a table of columns
(`table_of`/`parse_table`): half the JSON, no keys to parse per entry, chunk ranges implied."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .dtypes import by_name
from .errors import FormatError

MAX_CHUNK_BYTES = 16 << 20  # readers refuse larger chunks: bounds what one record can claim
MAX_DIMS = 32  # numpy 1.x's limit: a tensor of more dims could not be loaded (stored as bytes)
NAME_MAX = 255  # bytes per path component (Linux, macOS, Windows): a longer name is no file's


@dataclass
class Entry:
    """One stored item: a tensor, or an opaque blob (file headers, configs, gaps)."""

    kind: str  # "tensor" | "blob" | "pack" (small tensors' shared chunks, packs.py)
    first: int  # first chunk index
    count: int  # number of chunks
    nbytes: int
    name: str = ""
    dtype: str = "U8"
    shape: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "chunks": [self.first, self.count], "nbytes": self.nbytes}
        if self.kind == "tensor":
            d.update(name=self.name, dtype=self.dtype, shape=list(self.shape))
        elif self.kind == "pack":
            d["dtype"] = self.dtype
        if self.extra:
            d["extra"] = self.extra
        return d

    @property
    def ref_entry(self) -> int | None:
        """The entry of the reference this one was coded against (version 2), if any."""
        ref = self.extra.get("ref")
        return None if ref is None else int(ref["entry"])


@dataclass(frozen=True)
class RefId:
    """The identity of a reference .wz: its file name (a hint for finding it), the XXH64 of
    its index (the footer's) and its size. The index pins every chunk's size and checksum."""

    name: str
    index_xxh64: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "index_xxh64": f"{self.index_xxh64:016x}", "size": self.size}

    @classmethod
    def from_json(cls, d: Any) -> RefId:
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or \
                not isinstance(d.get("size"), int) or not isinstance(d.get("index_xxh64"), str) or \
                len(d["index_xxh64"]) != 16:
            raise FormatError("corrupt index (reference)")
        check_name(d["name"])
        return cls(d["name"], int(d["index_xxh64"], 16), d["size"])

    def describe(self) -> str:
        return f"{self.name} (index {self.index_xxh64:016x}, {self.size:,} bytes)"


def check_name(name: str) -> None:
    """A name from the index that unpack() turns into a file name: encodable, no NUL byte, no
    component longer than NAME_MAX (pack() never stores one; the OS would refuse it)."""
    if not isinstance(name, str) or "\x00" in name or \
            any(len(part) > NAME_MAX for part in name.encode("utf-8").split(b"/")):
        raise FormatError(f"corrupt index (file name {str(name)[:40]!r})")


def check_source(source: dict, entries: list[Entry]) -> None:
    """The parts of `source` that unpack()/decompress() use directly, by kind (docs/format.md)."""
    kind = source.get("kind")
    if not isinstance(kind, str):
        raise FormatError("corrupt index (source kind)")
    if isinstance(source.get("name"), str):
        check_name(source["name"])
    if kind == "array" and (len(entries) != 1 or entries[0].kind != "tensor"):
        raise FormatError("corrupt index (an array frame holds exactly one tensor)")
    if kind == "npz-arrays":
        for a in source["arrays"]:
            check_name(a["name"])  # becomes a member name of the rebuilt .npz


def load_index(r: Any, index: Any, version: int) -> None:
    """Validate the parsed JSON index and set the Reader's fields from it."""
    try:
        r.level = index["level"]
        r.chunk_bytes = int(index["chunk_bytes"])
        if not 0 < r.chunk_bytes <= MAX_CHUNK_BYTES:
            raise FormatError("corrupt index (chunk size)")
        r.files = list(index["files"])
        r.source = dict(index["source"])
        r.metadata = dict(index["metadata"])
        r.ref = RefId.from_json(index["ref"]) if "ref" in index else None
        if r.ref is not None and version < 2:
            raise FormatError("corrupt index (a reference in a version 1 file)")
        nchunks = len(r.table)
        next_chunk = 0
        if version >= 4:
            r.entries = parse_table(index["table"], r.chunk_bytes)
        else:
            if "table" in index:
                raise FormatError("corrupt index (an entry table in a version < 4 file)")
            r.entries = []
            for d in index["entries"]:
                e = parse_entry(d, r.chunk_bytes, next_chunk, nchunks)
                next_chunk = e.first + e.count
                r.entries.append(e)
        for e in r.entries:
            if "ref" in e.extra and (r.ref is None or not isinstance(e.extra["ref"], dict) or
                                     type(e.extra["ref"].get("entry")) is not int or e.ref_entry < 0):
                raise FormatError("corrupt index (an entry coded against a reference the file has not)")
        if (r.entries[-1].first + r.entries[-1].count if r.entries else 0) != nchunks:
            raise FormatError("corrupt index (unclaimed chunks)")
        check_packs(r.entries, version)
        if int(index["nchunks"]) != nchunks:
            raise FormatError("corrupt index (chunk count)")
        for fdesc in r.files:
            if not isinstance(fdesc["path"], str) or any(
                    not isinstance(i, int) or not 0 <= i < len(r.entries) for i in fdesc["parts"]):
                raise FormatError("corrupt file list")
            check_name(fdesc["path"])
        check_source(r.source, r.entries)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"corrupt index ({type(e).__name__}: {e})") from None


def check_packs(entries: list[Entry], version: int) -> None:
    """Validate every member's pack reference (load_index calls this after parsing entries)."""
    for e in entries:
        m = e.extra.get("in")
        if m is None and e.kind != "pack":
            continue
        if version < 3:
            raise FormatError("corrupt index (packed tensors in a version < 3 file)")
        if e.kind == "pack":
            if m is not None:
                raise FormatError("corrupt index (a pack inside a pack)")
            continue
        if e.kind != "tensor" or not isinstance(m, dict) or type(m.get("pack")) is not int or \
                type(m.get("offset")) is not int or e.count != 0 or "ref" in e.extra or "lossy" in e.extra:
            raise FormatError("corrupt index (packed tensor entry)")
        p, off = m["pack"], m["offset"]
        if not 0 <= p < len(entries) or entries[p].kind != "pack" or entries[p].dtype != e.dtype or \
                off < 0 or off + e.nbytes > entries[p].nbytes:
            raise FormatError(f"corrupt index (tensor {e.name!r} lies outside its pack)")


def parse_entry(d: dict, chunk_bytes: int, next_chunk: int, nchunks: int) -> Entry:
    first, count = d["chunks"]
    first, count, nbytes = int(first), int(count), int(d["nbytes"])
    if nbytes < 0:
        raise FormatError("corrupt index (negative size)")
    # Entries tile the chunk table in order; every chunk is full but an entry's last. A packed
    # tensor (extra.in) has no chunks: its bytes are in its pack's.
    extra = d.get("extra")
    packed = type(extra) is dict and "in" in extra
    if first != next_chunk or count != (0 if packed else -(-nbytes // chunk_bytes)) or first + count > nchunks:
        raise FormatError("corrupt index (chunk range)")
    e = Entry(str(d["kind"]), first, count, nbytes, extra=dict(extra) if "extra" in d else {})
    if e.kind == "tensor":
        e.name, e.dtype = str(d["name"]), str(d["dtype"])
        e.shape = tuple(map(int, d["shape"]))
        _check_tensor(e)
    elif e.kind == "pack":
        e.dtype = str(d["dtype"])
        if nbytes % by_name(e.dtype).itemsize:
            raise FormatError("corrupt index (pack size)")
    elif e.kind != "blob":
        raise FormatError(f"unknown entry kind {e.kind!r}")
    return e


KINDS = {"t": "tensor", "b": "blob", "p": "pack"}  # version 4's one-letter kinds


def table_of(entries: list[Entry]) -> dict[str, Any]:
    """Version 4's entry table: one column per field, in entry order. Chunk ranges are implied
    (entries tile the chunk table; a packed member has none), names/shapes are "" and [] where
    the kind has none, `pack`/`offset` (-1/0 for entries in no pack) appear only in files with
    packs, and `extra` maps entry indices (as strings) to what else an entry carries."""
    tensor = [e.kind == "tensor" for e in entries]
    t: dict[str, Any] = {
        "kind": "".join(e.kind[0] for e in entries),
        "nbytes": [e.nbytes for e in entries],
        "name": [e.name if x else "" for e, x in zip(entries, tensor)],
        "dtype": ["" if e.kind == "blob" else e.dtype for e in entries],
        "shape": [list(e.shape) if x else [] for e, x in zip(entries, tensor)],
    }
    members = [e.extra.get("in") for e in entries]
    if any(members):
        t["pack"] = [-1 if m is None else m["pack"] for m in members]
        t["offset"] = [0 if m is None else m["offset"] for m in members]
    extra = {str(i): {k: v for k, v in e.extra.items() if k != "in"} for i, e in enumerate(entries)
             if any(k != "in" for k in e.extra)}
    if extra:
        t["extra"] = extra
    return t


def as_list_entries(index: dict[str, Any]) -> None:
    """Rewrite a version 4 index in place with versions 1-3 list entries (`entries`, one
    object each) instead of its `table`: for tools and tests that edit entries one by one."""
    if "table" in index:
        index["entries"] = [e.to_json() for e in parse_table(index.pop("table"), int(index["chunk_bytes"]))]


def parse_table(t: Any, chunk_bytes: int) -> list[Entry]:
    """Entries from a version 4 table, validated as parse_entry validates version 3's (the
    caller checks the total chunk count and check_packs the members)."""
    kinds, nbytes, names, dtypes, shapes = t["kind"], t["nbytes"], t["name"], t["dtype"], t["shape"]
    n = len(kinds)
    packs, offsets, extras = t.get("pack"), t.get("offset"), t.get("extra", {})
    if not isinstance(kinds, str) or not set(kinds) <= KINDS.keys() or not isinstance(extras, dict) or \
            any(not isinstance(c, list) or len(c) != n for c in (nbytes, names, dtypes, shapes)) or \
            (packs is None) != (offsets is None) or \
            (packs is not None and (not isinstance(packs, list) or not isinstance(offsets, list) or
                                    len(packs) != n or len(offsets) != n)):
        raise FormatError("corrupt index (entry table)")
    if not set(map(type, nbytes)) <= {int} or (n and min(nbytes) < 0):
        raise FormatError("corrupt index (entry size)")
    if not set(map(type, shapes)) <= {list} or \
            not set(map(type, [d for s in shapes for d in s])) <= {int} or \
            not set(map(type, names)) <= {str} or not set(map(type, dtypes)) <= {str}:
        raise FormatError("corrupt index (entry names, dtypes or shapes)")
    entries, first = [], 0
    for i, k in enumerate(kinds):
        nb = nbytes[i]
        x = extras.get(str(i))
        if x is not None and (type(x) is not dict or "in" in x):
            raise FormatError("corrupt index (entry extra)")
        extra = dict(x) if x else {}
        if packs is not None and packs[i] != -1:
            extra["in"] = {"pack": packs[i], "offset": offsets[i]}  # checked by check_packs
            count = 0
        else:
            count = -(-nb // chunk_bytes)
        kind = KINDS[k]
        if kind == "tensor":
            e = Entry(kind, first, count, nb, names[i], dtypes[i], tuple(shapes[i]), extra)
            _check_tensor(e)
        elif kind == "pack":
            e = Entry(kind, first, count, nb, dtype=dtypes[i], extra=extra)
            if nb % by_name(e.dtype).itemsize:
                raise FormatError("corrupt index (pack size)")
        else:
            e = Entry(kind, first, count, nb, extra=extra)
        entries.append(e)
        first += count
    return entries


def _check_tensor(e: Entry) -> None:
    """A tensor's shape matches its size (exact Python ints, bounded by MAX_DIMS)."""
    shape, nbytes = e.shape, e.nbytes
    item = by_name(e.dtype).itemsize
    if len(shape) > MAX_DIMS:
        raise FormatError(f"corrupt index (tensor {e.name!r} has {len(shape)} dimensions)")
    if (shape and min(shape) < 0) or item * math.prod(shape) != nbytes:
        raise FormatError(f"corrupt index (tensor {e.name!r} shape/size)")
    # An empty tensor's other dims are unchecked by its size; numpy refuses shapes whose
    # nonzero dims multiply past int64, so such a shape is corrupt, not an empty tensor.
    if not nbytes and item * math.prod(s for s in shape if s) >= 1 << 63:
        raise FormatError(f"corrupt index (tensor {e.name!r} shape)")
