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
import math
import os
import struct
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, Callable

import numpy as np

from . import _C
from .batch import BATCH_ITEM, BatchWriter
from .dtypes import BY_NAME, DType, by_name
from .errors import ChecksumError, FormatError, RefError
from .index import MAX_CHUNK_BYTES, MAX_DIMS, Entry, RefId, load_index, table_of  # noqa: F401  (re-exported)
from .levels import DEFAULT_LEVEL, LEVELS, level_code
from .packs import PackReader, PackWriter, member_of
from .slabs import SLAB_BYTES, Feed, WriteBehind, slabs_from_file, slabs_of  # noqa: F401  (re-exported)

MAGIC = b"\x89WZP\r\n\x1a\n"
FOOTER_MAGIC = b"WZINDEX\x00"
VERSION = 4  # written and newest read: 2 added references and lossy chunks, 3 packs, 4 the entry table
PREAMBLE = struct.Struct("<8sHHI")
FOOTER = struct.Struct("<QQQ8s")
CHUNK_RECORD = np.dtype([("csize", "<u4"), ("hash", "<u4")])
INDEX_HEAD = struct.Struct("<III")
MAX_JSON = 256 << 20
JSON_EXPANSION = 64  # writers keep json_len <= 64 * coded_len + 4096; readers enforce it
CHUNK_BYTES = 1 << 20  # 1 MiB: enough symbols to amortise tables, small enough to parallelise
MAX_INDEX = 1 << 30
DICT_MAX = 8 << 20  # a reference blob used as a zstd dictionary (a blob whose size changed)
METHODS = ("raw", "const", "rans", "zstd", "cm")
PREDICTORS = ("zstd-dict", "xor", "sub", "sublen")  # chunks coded against a reference (csrc/predict.hpp)
BYTES = BY_NAME["U8"]


def check_threads(threads: int | None) -> int | None:
    """None (all cores) or a positive int; anything else (0, -1, 2.5, True) is a ValueError."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer (or None for all cores), not {threads!r}")
    return threads


def note_no_zstd() -> None:
    """Say once per process that packing runs without zstd (files stay readable anywhere)."""
    if not _C.zstd_available() and not _NOTED:
        _NOTED.append(True)
        warnings.warn("libzstd.so.1 could not be loaded (or WEIGHTZIP_NO_ZSTD is set): packing without zstd, "
                      "which only costs ratio on files with repeats; reading zstd-coded files needs it",
                      RuntimeWarning, stacklevel=4)


_NOTED: list[bool] = []


def _threads(threads: int | None) -> int:
    return 0 if check_threads(threads) is None else int(threads)


class Writer(PackWriter, BatchWriter, WriteBehind):
    """Streams entries into a .wz file. Call finish() once; nothing is valid before that.

    With `ref` (a refs.RefSource: an earlier .wz of the same model), tensors and blobs that
    match one of the reference (same file, name, dtype and shape) are coded against it; set
    `file` to the path (in the folder) of the file whose entries are being added. Tensors under
    packs.PACK_MAX bytes share chunks (packs.py) unless pack_small=False."""

    def __init__(self, f: BinaryIO, level: str = DEFAULT_LEVEL, threads: int | None = None,
                 chunk_bytes: int = CHUNK_BYTES, on_bytes: Callable[[int], None] | None = None,
                 ref: Any = None, lossy: Callable[[str, str, int], tuple[float, str] | None] | None = None,
                 pack_small: bool = True):
        self.level_code = level_code(level)
        self.f, self.level, self.threads = f, level, _threads(threads)
        self.chunk_bytes = chunk_bytes
        self.on_bytes = on_bytes or (lambda n: None)
        self.pos = PREAMBLE.size
        self.entries: list[Entry] = []
        self.tables: list[np.ndarray] = []
        self.nchunks = 0
        self.ref, self.file, self._blobs = ref, "", {}  # _blobs: blobs added per file so far
        self.lossy = lossy
        self.keep: dict[int, np.ndarray] | None = None  # set to {} to keep each tensor's decoded bytes
        self.last_recon: np.ndarray | None = None  # the last tensor's reconstruction, if it was lossy
        self._start_packs(pack_small)
        self._start_batch()
        self._start_writes()
        if level != "fast":
            note_no_zstd()
        f.write(PREAMBLE.pack(MAGIC, VERSION, 0, 0))

    def _encode(self, slabs: Iterable[memoryview], dt: DType, row: int,
                ref: Iterator[memoryview] | np.ndarray | None = None,
                nbytes: int | None = None) -> tuple[int, int, int]:
        """ref: the reference entry's slabs (coded chunk by chunk against them), or its whole
        bytes as a zstd dictionary (an array; a blob of one chunk whose size changed). An entry
        of known size (nbytes) up to batch.BATCH_ITEM without ref joins the batch (batch.py)."""
        if ref is None and nbytes is not None and nbytes <= BATCH_ITEM:
            first, count, n = self._queue(slabs, dt, row)
            self.on_bytes(n)
            return first, count, n
        first, nbytes = self.nchunks, 0
        feed = Feed(ref) if ref is not None and not isinstance(ref, np.ndarray) else None
        for slab in slabs:
            self._append(*_C.encode_chunks(slab, dt.itemsize, dt.transform, self.chunk_bytes,
                                           self.level_code, row, self.threads,
                                           ref=feed.take(len(slab)) if feed else ref))
            nbytes += len(slab)
            self.on_bytes(len(slab))
        return first, self.nchunks - first, nbytes

    def _append(self, payload: np.ndarray, tab: np.ndarray) -> None:
        """Write chunks coded on their own (after the batch's, which come first in the file)."""
        self._flush_batch()
        self._write_chunks(payload, tab)
        self.nchunks += len(tab)

    def _write_chunks(self, payload: np.ndarray, tab: np.ndarray) -> None:
        """Write coded chunks and their table records (csize, checksum)."""
        rec = np.empty(len(tab), CHUNK_RECORD)
        rec["csize"], rec["hash"] = tab[:, 0], tab[:, 2]
        self._write(payload)
        self.pos += payload.size
        self.tables.append(rec)

    def add_tensor(self, name: str, dt: DType, shape: tuple[int, ...],
                   slabs: Iterable[memoryview], extra: dict | None = None, lossy_ok: bool = False) -> int:
        """lossy_ok: the caller's format keeps no checksum of these bytes (safetensors, save()),
        so the Writer's `lossy` policy (name, dtype, numel) -> (E, domain) | None may apply."""
        row = int(shape[-1]) if len(shape) >= 2 else 0
        j = self.ref.match(self.file, name, dt.name, tuple(shape), self.chunk_bytes) if self.ref else None
        plan = self.lossy(name, dt.name, math.prod(shape)) if self.lossy and lossy_ok else None
        self.last_recon = None
        if plan is not None:
            return self._add_lossy(name, dt, tuple(shape), slabs, extra, j, row, *plan)
        if j is None and self.keep is None and self.ref is None and len(shape) <= MAX_DIMS and \
                self._packable(size := dt.itemsize * math.prod(shape)):
            views = list(slabs)  # one view of a MemFile, or one fresh buffer: kept as it is
            data = views[0] if len(views) == 1 else b"".join(views)
            if len(data) != size:
                raise ValueError(f"tensor {name!r}: data size does not match its shape")
            self.on_bytes(size)
            return self._add_member(name, dt, tuple(shape), data, extra)
        if self.keep is not None:  # a private copy: the caller's buffers may change after this
            kept = np.concatenate([np.frombuffer(s, np.uint8) for s in slabs] or [np.empty(0, np.uint8)])
            kept.flags.writeable = False  # immutable: a batch queues it without another copy
            self.keep[len(self.entries)] = kept
            slabs = slabs_of(memoryview(kept))
        if j is not None:
            extra = {**(extra or {}), "ref": {"entry": j}}
        size = dt.itemsize * math.prod(shape)
        first, count, nbytes = self._encode(slabs, dt, row, None if j is None else self.ref.slabs(j), size)
        if nbytes != size:
            raise ValueError(f"tensor {name!r}: data size does not match its shape")
        if len(shape) > MAX_DIMS:
            raise ValueError(f"tensor {name!r}: more than {MAX_DIMS} dimensions")
        self.entries.append(Entry("tensor", first, count, nbytes, name, dt.name, tuple(shape), extra or {}))
        return len(self.entries) - 1

    def _add_lossy(self, name: str, dt: DType, shape: tuple[int, ...], slabs: Iterable[memoryview],
                   extra: dict | None, j: int | None, row: int, max_error: float, domain: str) -> int:
        """A float tensor quantised within max_error x RMS (lossy.py); closed-loop against the
        reference's decoded bytes (its reconstruction, if it was lossy) when one matches."""
        from . import lossy
        data = np.concatenate([np.frombuffer(s, np.uint8) for s in slabs] or [np.empty(0, np.uint8)])
        if data.size != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"tensor {name!r}: data size does not match its shape")
        step, bound, checked = lossy.plan(data.view(dt.numpy), max_error, domain)
        pred = self.ref.whole(j) if j is not None else None
        payload, tab, recon = _C.encode_chunks_lossy(data, dt.itemsize, dt.transform, self.chunk_bytes, row,
                                                     self.threads, step, checked, domain, pred)
        self.last_recon = recon
        if self.keep is not None:
            self.keep[len(self.entries)] = recon
        first = self.nchunks
        self._append(payload, tab)
        self.on_bytes(data.size)
        extra = {**(extra or {}), "lossy": {"max_error": max_error, "domain": domain, "step": step, "bound": bound}}
        if j is not None:
            extra["ref"] = {"entry": j}
        self.entries.append(Entry("tensor", first, self.nchunks - first, data.size, name, dt.name, shape, extra))
        return len(self.entries) - 1

    def add_blob(self, data: bytes | memoryview | Iterable[memoryview], nbytes: int | None = None) -> int:
        """A blob; `nbytes` (the size of an iterable's data) lets it be matched to a reference."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            nbytes, data = len(data), slabs_of(memoryview(data))
        ordinal = self._blobs[self.file] = self._blobs.get(self.file, -1) + 1
        j = self.ref.match_blob(self.file, ordinal, nbytes, self.chunk_bytes) if self.ref and nbytes else None
        ref = None if j is None else self.ref.slabs(j) if self.ref.nbytes(j) == nbytes else self.ref.whole(j)
        first, count, n = self._encode(data, BYTES, 0, ref, nbytes)
        self.entries.append(Entry("blob", first, count, n, extra={"ref": {"entry": j}} if j is not None else {}))
        return len(self.entries) - 1

    def finish(self, files: list[dict], source: dict, metadata: dict | None = None) -> tuple[int, int]:
        """Write the index and footer; returns the file's identity (index XXH64, size)."""
        self._flush_packs()
        self._flush_batch()
        self._stop_writes()
        assert sum(len(t) for t in self.tables) == self.nchunks, "chunks planned and written differ"
        uses_ref = any("ref" in e.extra for e in self.entries)
        index = {
            "format": "weightzip", "version": VERSION, "level": self.level,
            "chunk_bytes": self.chunk_bytes, "nchunks": self.nchunks, "table": table_of(self.entries),
            "files": files, "source": source, "metadata": metadata or {},
        }
        if uses_ref:  # only files that need their reference say so
            index["ref"] = self.ref.id.to_json()
        js = json.dumps(index, separators=(",", ":")).encode()
        coded, tab = _C.encode_chunks(js, 1, 0, len(js), LEVELS[DEFAULT_LEVEL], 0, 1)
        if len(js) > JSON_EXPANSION * coded.size + 4096:  # keep the reader's bomb check valid
            coded, tab = _C.encode_chunks(js, 1, 0, len(js), LEVELS[DEFAULT_LEVEL], 0, 1, 0)
        table = np.concatenate(self.tables) if self.tables else np.empty(0, CHUNK_RECORD)
        blob = INDEX_HEAD.pack(len(js), coded.size, int(tab[0, 2])) + coded.tobytes() + table.tobytes()
        self.f.write(blob)
        ihash = _C.xxh64(blob)
        self.f.write(FOOTER.pack(self.pos, len(blob), ihash, FOOTER_MAGIC))
        return ihash, self.pos + len(blob) + FOOTER.size


class Reader(PackReader):
    """Parses and validates the index of a .wz file; decodes entries on demand."""

    # set by index.load_index
    level: str
    chunk_bytes: int
    files: list[dict]
    source: dict[str, Any]
    metadata: dict[str, Any]
    entries: list[Entry]
    ref: RefId | None
    mem: memoryview | None = None  # the whole file, when it is in memory

    def __init__(self, f: BinaryIO, size: int | None = None):
        self.f = f
        self.name = os.path.basename(str(getattr(f, "name", ""))) or "this file"
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
        self.index_xxh64 = ihash
        self.ref_reader: Reader | None = None  # the reference, attached by refs.Resolver
        self._load_index(index, version)

    def _load_index(self, index: Any, version: int) -> None:
        load_index(self, index, version)
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

    def rsizes(self, e: Entry) -> np.ndarray:
        r = np.full(e.count, self.chunk_bytes, np.uint64)
        if e.count:
            r[-1] = e.nbytes - (e.count - 1) * self.chunk_bytes
        return r

    def dtype_of(self, e: Entry) -> DType:
        return BYTES if e.kind == "blob" else by_name(e.dtype)

    def read_range(self, start: int, end: int) -> Any:
        """The file's bytes [start, end): a view of an in-memory file (decompress), no copy."""
        if self.mem is not None:
            payload = self.mem[start:end]
        else:
            self.f.seek(start)
            payload = self.f.read(end - start)
        if len(payload) != end - start:
            raise FormatError("truncated weightzip file")
        return payload

    def _decode(self, e: Entry, first: int, count: int, out: memoryview, threads: int | None,
                verify: bool) -> None:
        if count == 0:
            return
        rec = self.table[first:first + count]
        offs = self.offset[first:first + count]
        rsize = self.rsizes(e)[first - e.first:first - e.first + count]
        start, end = int(offs[0]), int(offs[-1] + rec["csize"][-1])
        payload = self.read_range(start, end)
        tab = np.stack([offs - np.uint64(start), rec["csize"].astype(np.uint64), rsize,
                        rec["hash"].astype(np.uint64)], axis=1)
        dt = self.dtype_of(e)
        ref = None if e.ref_entry is None else self._ref_bytes(e, first, count, int(rsize.sum()), threads)
        _C.decode_chunks(payload, np.ascontiguousarray(tab), dt.itemsize, dt.transform, out,
                         _threads(threads), verify, ref=ref)

    def _ref_bytes(self, e: Entry, first: int, count: int, nbytes: int, threads: int | None) -> np.ndarray:
        """The reference's bytes for chunks [first, first + count) of e (decoded, recursively
        down a chain, from the attached reference)."""
        src = self.ref_reader
        if src is None:
            raise RefError(f"{self.name} is a delta against {self.ref.describe() if self.ref else '?'}: "
                           "give the reference with --ref (ref=)")
        j = e.ref_entry
        re = src.entries[j] if j is not None and j < len(src.entries) else None
        if re is not None and e.kind == re.kind == "blob" and re.nbytes != e.nbytes and e.count == 1 \
                and 0 < re.nbytes <= DICT_MAX:  # a blob that changed size: the reference is a dictionary
            return src.read_entry(j, threads)
        if re is None or (re.kind, re.dtype, re.shape, re.nbytes) != (e.kind, e.dtype, e.shape, e.nbytes) \
                or src.chunk_bytes != self.chunk_bytes:
            raise FormatError(f"corrupt index (entry coded against reference entry {j}, which does not match it)")
        if member_of(re):  # a packed tensor of the reference
            return src._member_bytes(re, threads)[(first - e.first) * self.chunk_bytes:][:nbytes].copy()
        out = np.empty(nbytes, np.uint8)
        src._decode(re, re.first + first - e.first, count, memoryview(out), threads, True)
        return out

    def read_entry(self, idx: int, threads: int | None = None, verify: bool = True) -> np.ndarray:
        """Decode a whole entry into a new uint8 array."""
        e = self.entries[idx]
        if member_of(e):
            return self._member_bytes(e, threads).copy()
        out = np.empty(e.nbytes, np.uint8)
        self._decode(e, e.first, e.count, memoryview(out), threads, verify)
        return out

    def iter_entry(self, idx: int, threads: int | None = None, verify: bool = True,
                   slab: int = SLAB_BYTES) -> Iterator[memoryview]:
        """Decode an entry slab by slab into one reusable buffer (bounded memory)."""
        e = self.entries[idx]
        if member_of(e):
            yield memoryview(self._member_bytes(e, threads))
            return
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
