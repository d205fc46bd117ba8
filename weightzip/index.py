"""The JSON index of a .wz file (docs/format.md): entries, files, source, and (version 2) the
reference a delta was coded against. Parsing validates everything the decoder relies on."""
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
        r.entries = []
        for d in index["entries"]:
            e = parse_entry(d, r.chunk_bytes, next_chunk, nchunks)
            if "ref" in e.extra and (r.ref is None or not isinstance(e.extra["ref"], dict) or
                                     type(e.extra["ref"].get("entry")) is not int or e.ref_entry < 0):
                raise FormatError("corrupt index (an entry coded against a reference the file has not)")
            next_chunk = e.first + e.count
            r.entries.append(e)
        if next_chunk != nchunks:
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
        shape = e.shape = tuple(map(int, d["shape"]))
        if len(shape) > MAX_DIMS:
            raise FormatError(f"corrupt index (tensor {e.name!r} has {len(shape)} dimensions)")
        item = by_name(e.dtype).itemsize  # exact integer products (Python ints), bounded by MAX_DIMS
        if (shape and min(shape) < 0) or item * math.prod(shape) != nbytes:
            raise FormatError(f"corrupt index (tensor {e.name!r} shape/size)")
        # An empty tensor's other dims are unchecked by its size; numpy refuses shapes whose
        # nonzero dims multiply past int64, so such a shape is corrupt, not an empty tensor.
        if not nbytes and item * math.prod(s for s in shape if s) >= 1 << 63:
            raise FormatError(f"corrupt index (tensor {e.name!r} shape)")
    elif e.kind == "pack":
        e.dtype = str(d["dtype"])
        if nbytes % by_name(e.dtype).itemsize:
            raise FormatError("corrupt index (pack size)")
    elif e.kind != "blob":
        raise FormatError(f"unknown entry kind {e.kind!r}")
    return e
