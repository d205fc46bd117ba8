"""The .wz container: reader and writer (spec: docs/format.md).

    preamble  16 B   magic b"\\x89WZP\\r\\n\\x1a\\n", u16 version, u16 flags, u32 reserved
    chunks    ...    coded chunk payloads, back to back
    index     ...    u32 json_len, u32 coded_len, u32 json_checksum, coded JSON (entries, files,
                     source), chunk table (u32 csize, u32 checksum of the raw chunk; 8 B per chunk)
    footer    32 B   u64 index_offset, u64 index_len, u64 xxh64(index), b"WZINDEX\\0"

The index sits at the end so that packing streams: nothing is buffered beyond one slab.
Every size read from a file is checked against the file before anything is allocated.
"""
from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import numpy as np

from . import _C
from .dtypes import BY_NAME, DType, by_name
from .errors import ChecksumError, FormatError
from .levels import DEFAULT_LEVEL, LEVELS, level_code

MAGIC = b"\x89WZP\r\n\x1a\n"
FOOTER_MAGIC = b"WZINDEX\x00"
VERSION = 1
PREAMBLE = struct.Struct("<8sHHI")
FOOTER = struct.Struct("<QQQ8s")
CHUNK_RECORD = np.dtype([("csize", "<u4"), ("hash", "<u4")])
INDEX_HEAD = struct.Struct("<III")
MAX_JSON = 256 << 20
JSON_EXPANSION = 64  # writers keep json_len <= 64 * coded_len + 4096; readers enforce it
CHUNK_BYTES = 1 << 20  # 1 MiB: enough symbols to amortise tables, small enough to parallelise
MAX_CHUNK_BYTES = 16 << 20  # readers refuse larger chunks: bounds what one record can claim
SLAB_BYTES = 32 << 20  # unit of streaming I/O: bounds memory whatever the tensor size
MAX_INDEX = 1 << 30
MAX_DIMS = 32  # numpy 1.x's limit: a tensor of more dims could not be loaded (stored as bytes)
METHODS = ("raw", "const", "rans", "zstd", "cm")
BYTES = BY_NAME["U8"]


@dataclass
class Entry:
    """One stored item: a tensor, or an opaque blob (file headers, configs, gaps)."""

    kind: str  # "tensor" | "blob"
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
        if self.extra:
            d["extra"] = self.extra
        return d


def check_threads(threads: int | None) -> int | None:
    """None (all cores) or a positive int; anything else (0, -1, 2.5, True) is a ValueError."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer (or None for all cores), not {threads!r}")
    return threads


def _threads(threads: int | None) -> int:
    return 0 if check_threads(threads) is None else int(threads)


class Writer:
    """Streams entries into a .wz file. Call finish() once; nothing is valid before that."""

    def __init__(self, f: BinaryIO, level: str = DEFAULT_LEVEL, threads: int | None = None,
                 chunk_bytes: int = CHUNK_BYTES, on_bytes: Callable[[int], None] | None = None):
        self.level_code = level_code(level)
        self.f, self.level, self.threads = f, level, _threads(threads)
        self.chunk_bytes = chunk_bytes
        self.on_bytes = on_bytes or (lambda n: None)
        self.pos = PREAMBLE.size
        self.entries: list[Entry] = []
        self.tables: list[np.ndarray] = []
        self.nchunks = 0
        f.write(PREAMBLE.pack(MAGIC, VERSION, 0, 0))

    def _encode(self, slabs: Iterator[memoryview], dt: DType, row: int) -> tuple[int, int, int]:
        first, nbytes = self.nchunks, 0
        for slab in slabs:
            payload, tab = _C.encode_chunks(slab, dt.itemsize, dt.transform, self.chunk_bytes,
                                            self.level_code, row, self.threads)
            rec = np.empty(len(tab), CHUNK_RECORD)
            rec["csize"], rec["hash"] = tab[:, 0], tab[:, 2]
            self.f.write(payload)
            self.pos += payload.size
            self.tables.append(rec)
            self.nchunks += len(rec)
            nbytes += len(slab)
            self.on_bytes(len(slab))
        return first, self.nchunks - first, nbytes

    def add_tensor(self, name: str, dt: DType, shape: tuple[int, ...],
                   slabs: Iterator[memoryview], extra: dict | None = None) -> int:
        row = int(shape[-1]) if len(shape) >= 2 else 0
        first, count, nbytes = self._encode(slabs, dt, row)
        if nbytes != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"tensor {name!r}: data size does not match its shape")
        if len(shape) > MAX_DIMS:
            raise ValueError(f"tensor {name!r}: more than {MAX_DIMS} dimensions")
        self.entries.append(Entry("tensor", first, count, nbytes, name, dt.name, tuple(shape), extra or {}))
        return len(self.entries) - 1

    def add_blob(self, data: bytes | memoryview | Iterator[memoryview]) -> int:
        slabs = slabs_of(memoryview(data)) if isinstance(data, (bytes, bytearray, memoryview)) else data
        first, count, nbytes = self._encode(slabs, BYTES, 0)
        self.entries.append(Entry("blob", first, count, nbytes))
        return len(self.entries) - 1

    def finish(self, files: list[dict], source: dict, metadata: dict | None = None) -> None:
        index = {
            "format": "weightzip", "version": VERSION, "level": self.level,
            "chunk_bytes": self.chunk_bytes, "nchunks": self.nchunks,
            "entries": [e.to_json() for e in self.entries],
            "files": files, "source": source, "metadata": metadata or {},
        }
        js = json.dumps(index, separators=(",", ":")).encode()
        coded, tab = _C.encode_chunks(js, 1, 0, len(js), LEVELS[DEFAULT_LEVEL], 0, 1)
        if len(js) > JSON_EXPANSION * coded.size + 4096:  # keep the reader's bomb check valid
            coded, tab = _C.encode_chunks(js, 1, 0, len(js), LEVELS[DEFAULT_LEVEL], 0, 1, 0)
        table = np.concatenate(self.tables) if self.tables else np.empty(0, CHUNK_RECORD)
        blob = INDEX_HEAD.pack(len(js), coded.size, int(tab[0, 2])) + coded.tobytes() + table.tobytes()
        self.f.write(blob)
        self.f.write(FOOTER.pack(self.pos, len(blob), _C.xxh64(blob), FOOTER_MAGIC))


def slabs_of(buf: memoryview, size: int = SLAB_BYTES) -> Iterator[memoryview]:
    buf = memoryview(buf).cast("B")
    for off in range(0, len(buf), size):
        yield buf[off:off + size]


def slabs_from_file(f: BinaryIO, nbytes: int, size: int = SLAB_BYTES) -> Iterator[memoryview]:
    """Read nbytes from f in slabs into one reusable buffer (bounded memory)."""
    buf = bytearray(min(size, nbytes))
    left = nbytes
    while left:
        n = min(size, left)
        view = memoryview(buf)[:n]
        if f.readinto(view) != n:
            raise FormatError("input file is shorter than its header says")
        left -= n
        yield view


NAME_MAX = 255  # bytes per path component (Linux, macOS, Windows): a longer name is no file's


def _check_name(name: str) -> None:
    """A name from the index that unpack() turns into a file name: encodable, no NUL byte, no
    component longer than NAME_MAX (pack() never stores one; the OS would refuse it)."""
    if not isinstance(name, str) or "\x00" in name or \
            any(len(part) > NAME_MAX for part in name.encode("utf-8").split(b"/")):
        raise FormatError(f"corrupt index (file name {str(name)[:40]!r})")


def _check_source(source: dict, entries: list[Entry]) -> None:
    """The parts of `source` that unpack()/decompress() use directly, by kind (docs/format.md)."""
    kind = source.get("kind")
    if not isinstance(kind, str):
        raise FormatError("corrupt index (source kind)")
    if isinstance(source.get("name"), str):
        _check_name(source["name"])
    if kind == "array" and (len(entries) != 1 or entries[0].kind != "tensor"):
        raise FormatError("corrupt index (an array frame holds exactly one tensor)")
    if kind == "npz-arrays":
        for a in source["arrays"]:
            _check_name(a["name"])  # becomes a member name of the rebuilt .npz


class Reader:
    """Parses and validates the index of a .wz file; decodes entries on demand."""

    def __init__(self, f: BinaryIO, size: int | None = None):
        self.f = f
        if size is None:
            size = f.seek(0, io.SEEK_END)
        self.size = size
        if size < PREAMBLE.size + FOOTER.size:
            raise FormatError("not a weightzip file (too short)")
        f.seek(0)
        magic, version, _flags, _ = PREAMBLE.unpack(f.read(PREAMBLE.size))
        if magic != MAGIC:
            raise FormatError("not a weightzip file (bad magic bytes)")
        if version > VERSION:
            raise FormatError(f"file format version {version} is newer than this weightzip "
                              f"(reads up to {VERSION}): upgrade weightzip")
        f.seek(size - FOOTER.size)
        ioff, ilen, ihash, fmagic = FOOTER.unpack(f.read(FOOTER.size))
        if fmagic != FOOTER_MAGIC:
            raise FormatError("truncated or corrupt weightzip file (no index footer)")
        if ilen > MAX_INDEX or ioff < PREAMBLE.size or ioff + ilen + FOOTER.size != size:
            raise FormatError("corrupt weightzip file (index out of bounds)")
        f.seek(ioff)
        blob = f.read(ilen)
        if len(blob) != ilen or _C.xxh64(blob) != ihash:
            raise ChecksumError("index checksum mismatch (file is corrupt)")
        if ilen < INDEX_HEAD.size:
            raise FormatError("corrupt index (too short)")
        jlen, clen, jhash = INDEX_HEAD.unpack_from(blob)
        tstart = INDEX_HEAD.size + clen
        if jlen > min(MAX_JSON, JSON_EXPANSION * clen + 4096) or tstart > ilen or \
                (ilen - tstart) % CHUNK_RECORD.itemsize:
            raise FormatError("corrupt index sizes")
        js = np.empty(jlen, np.uint8)
        tab = np.array([[0, clen, jlen, jhash]], np.uint64)
        _C.decode_chunks(blob[INDEX_HEAD.size:tstart], tab, 1, 0, js, 1, True)
        try:
            index = json.loads(js.tobytes())
        except (ValueError, RecursionError) as e:
            raise FormatError(f"corrupt index ({e})") from None
        self.table = np.frombuffer(blob, CHUNK_RECORD, offset=tstart)
        self.payload_end = ioff
        self._load_index(index)

    def _load_index(self, index: Any) -> None:
        try:
            self.level = index["level"]
            self.chunk_bytes = int(index["chunk_bytes"])
            if not 0 < self.chunk_bytes <= MAX_CHUNK_BYTES:
                raise FormatError("corrupt index (chunk size)")
            self.files = list(index["files"])
            self.source = dict(index["source"])
            self.metadata = dict(index["metadata"])
            self._next_chunk = 0
            self.entries = [self._entry(e) for e in index["entries"]]
            if self._next_chunk != len(self.table):
                raise FormatError("corrupt index (unclaimed chunks)")
            if int(index["nchunks"]) != len(self.table):
                raise FormatError("corrupt index (chunk count)")
            for fdesc in self.files:
                if not isinstance(fdesc["path"], str) or any(
                        not isinstance(i, int) or not 0 <= i < len(self.entries) for i in fdesc["parts"]):
                    raise FormatError("corrupt file list")
                _check_name(fdesc["path"])
            _check_source(self.source, self.entries)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            if isinstance(e, FormatError):
                raise
            raise FormatError(f"corrupt index ({type(e).__name__}: {e})") from None
        ends = PREAMBLE.size + np.cumsum(self.table["csize"], dtype=np.uint64)
        if (ends[-1] if len(ends) else PREAMBLE.size) != self.payload_end:
            raise FormatError("corrupt chunk table (sizes do not match the file)")
        self.offset = ends - self.table["csize"]
        owner = {i: fd["path"] for fd in self.files for i in fd["parts"]}
        names = [e.name for e in self.entries if e.kind == "tensor"]
        dup = {n for n in names if names.count(n) > 1} if len(set(names)) != len(names) else set()
        # Tensor names repeat across the files of a folder (checkpoint series): qualify them.
        self.tensors = {(f"{owner.get(i, '')}:{e.name}" if e.name in dup else e.name): i
                        for i, e in enumerate(self.entries) if e.kind == "tensor"}

    def _entry(self, d: dict) -> Entry:
        first, count = (int(x) for x in d["chunks"])
        nbytes = int(d["nbytes"])
        if nbytes < 0:
            raise FormatError("corrupt index (negative size)")
        # Entries tile the chunk table in order; every chunk is full but an entry's last.
        if first != self._next_chunk or count != -(-nbytes // self.chunk_bytes) or \
                first + count > len(self.table):
            raise FormatError("corrupt index (chunk range)")
        self._next_chunk = first + count
        e = Entry(str(d["kind"]), first, count, nbytes, extra=dict(d.get("extra", {})))
        if e.kind == "tensor":
            e.name, e.dtype = str(d["name"]), str(d["dtype"])
            e.shape = tuple(int(s) for s in d["shape"])
            if len(e.shape) > MAX_DIMS:
                raise FormatError(f"corrupt index (tensor {e.name!r} has {len(e.shape)} dimensions)")
            if any(s < 0 for s in e.shape) or by_name(e.dtype).itemsize * int(np.prod(e.shape, dtype=object)) != nbytes:
                raise FormatError(f"corrupt index (tensor {e.name!r} shape/size)")
            # An empty tensor's other dims are unchecked by its size; numpy refuses shapes whose
            # nonzero dims multiply past int64, so such a shape is corrupt, not an empty tensor.
            if by_name(e.dtype).itemsize * int(np.prod([s for s in e.shape if s], dtype=object)) >= 1 << 63:
                raise FormatError(f"corrupt index (tensor {e.name!r} shape)")
        elif e.kind != "blob":
            raise FormatError(f"unknown entry kind {e.kind!r}")
        return e

    def rsizes(self, e: Entry) -> np.ndarray:
        r = np.full(e.count, self.chunk_bytes, np.uint64)
        if e.count:
            r[-1] = e.nbytes - (e.count - 1) * self.chunk_bytes
        return r

    def dtype_of(self, e: Entry) -> DType:
        return by_name(e.dtype) if e.kind == "tensor" else BYTES

    def _decode(self, e: Entry, first: int, count: int, out: memoryview, threads: int | None,
                verify: bool) -> None:
        if count == 0:
            return
        rec = self.table[first:first + count]
        offs = self.offset[first:first + count]
        rsize = self.rsizes(e)[first - e.first:first - e.first + count]
        start, end = int(offs[0]), int(offs[-1] + rec["csize"][-1])
        self.f.seek(start)
        payload = self.f.read(end - start)
        if len(payload) != end - start:
            raise FormatError("truncated weightzip file")
        tab = np.stack([offs - np.uint64(start), rec["csize"].astype(np.uint64), rsize,
                        rec["hash"].astype(np.uint64)], axis=1)
        dt = self.dtype_of(e)
        _C.decode_chunks(payload, np.ascontiguousarray(tab), dt.itemsize, dt.transform, out,
                         _threads(threads), verify)

    def read_entry(self, idx: int, threads: int | None = None, verify: bool = True) -> np.ndarray:
        """Decode a whole entry into a new uint8 array."""
        e = self.entries[idx]
        out = np.empty(e.nbytes, np.uint8)
        self._decode(e, e.first, e.count, memoryview(out), threads, verify)
        return out

    def iter_entry(self, idx: int, threads: int | None = None, verify: bool = True,
                   slab: int = SLAB_BYTES) -> Iterator[memoryview]:
        """Decode an entry slab by slab into one reusable buffer (bounded memory)."""
        e = self.entries[idx]
        rsize = self.rsizes(e)
        buf = np.empty(min(max(slab, self.chunk_bytes), e.nbytes), np.uint8)
        i = 0
        while i < e.count:
            j, acc = i, 0
            while j < e.count and (j == i or acc + int(rsize[j]) <= len(buf)):
                acc += int(rsize[j])
                j += 1
            view = memoryview(buf)[:acc]
            self._decode(e, e.first + i, j - i, view, threads, verify)
            yield view
            i = j

    def chunk_methods(self, e: Entry) -> dict[str, int]:
        """How many streams of this entry each method coded (for `weightzip info`)."""
        counts: dict[str, int] = {}
        k = _C.stream_count(self.dtype_of(e).transform, self.dtype_of(e).itemsize)
        for off in self.offset[e.first:e.first + e.count]:
            self.f.seek(int(off))
            head = self.f.read(k)
            names = ["stored"] if head[:1] == b"\xff" else \
                [METHODS[m] if m < len(METHODS) else "?" for m in head]
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        return counts
