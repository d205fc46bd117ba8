"""Batches: many entries coded, or decoded, in one call of the core.

A checkpoint of small and mid-sized tensors cost one coder call per tensor: Python work, a
fresh output buffer and, with threads, a thread pool per call that had one or two chunks to
share. The Writer instead queues entries of at most BATCH_ITEM bytes (plain ones: no
reference, not lossy) and codes the queue in one call (`_C.encode_segments`) when it holds
BATCH_BYTES, before any entry coded on its own, and at finish. The file is the same: every
entry keeps its own chunks, in entry order, and each chunk is coded exactly as encode_chunks
codes it. An entry's chunk range is known when it is queued (ceil(nbytes / chunk_bytes)
chunks after those already planned), so entries go into the index at once; the chunks follow
when the batch is coded.

unpack() of a file of at most WHOLE_MAX bytes decodes all its chunks in one call
(`_C.decode_segments`) into one buffer, the file's own layout, and writes it at once.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from . import _C
from .slabs import SLAB_BYTES, immutable

BATCH_ITEM = 4 << 20  # entries up to this size are queued (larger ones are coded on their own)
BATCH_BYTES = SLAB_BYTES  # a batch is coded once it holds this much (bounds the memory it keeps)


class BatchWriter:
    """Writer mixin: the queue of entries waiting for one coder call."""

    nchunks: int  # chunks planned so far, queued ones included
    chunk_bytes: int
    level_code: int
    threads: int

    def _start_batch(self) -> None:
        self._parts: list[Any] = []  # each queued entry's bytes, in order
        self._specs: list[tuple[int, int, int]] = []  # itemsize, transform, row
        self._queued = 0  # bytes in the queue

    def _queue(self, slabs: Iterable[Any], dt: Any, row: int) -> tuple[int, int, int]:
        """Queue an entry; returns (first chunk, chunk count, nbytes) as coding it would.
        A single view of immutable bytes (a MemFile's) is kept as it is; anything else is
        copied, since a slab's buffer may be reused before the batch is coded."""
        parts = list(slabs)
        one = parts[0] if len(parts) == 1 else None
        if one is not None and immutable(one):
            data = one
        else:
            data = b"".join(parts)
        n = memoryview(data).nbytes
        first, count = self.nchunks, -(-n // self.chunk_bytes)
        self._parts.append(data)
        self._specs.append((dt.itemsize, dt.transform, row))
        self.nchunks += count
        self._queued += n
        if self._queued >= BATCH_BYTES:
            self._flush_batch()
        return first, count, n

    def _flush_batch(self) -> None:
        if not self._parts:
            return
        parts, specs = self._parts, np.array(self._specs, np.uint64).reshape(-1, 3)
        self._start_batch()
        payload, tab = _C.encode_segments(parts, specs, self.level_code, self.chunk_bytes, self.threads)
        self._write_chunks(payload, tab)

    def _write_chunks(self, payload: np.ndarray, tab: np.ndarray) -> None:
        raise NotImplementedError


WHOLE_MAX = 64 << 20  # a file's parts up to this size are decoded in one core call, into one buffer


def decode_parts(r: Any, parts: list[int], threads: int) -> memoryview | None:
    """The bytes of a file's parts (entry indices, in order), decoded with one core call into
    one buffer: the chunks of every plain entry at its place, packs after the end (their members
    are then copied to theirs). None where that does not apply: more than WHOLE_MAX bytes, or a
    delta file (its chunks need the reference)."""
    from .packs import member_of

    entries = [r.entries[i] for i in parts]
    total = sum(e.nbytes for e in entries)
    if total > WHOLE_MAX or r.ref is not None:
        return None
    placed, members, pos = [], [], 0  # (entry, offset in out); (offset, pack, offset in pack, n)
    packs: dict[int, int] = {}
    for e in entries:
        m = member_of(e)
        if m is None:
            placed.append((e, pos))
        else:
            members.append((pos, m[0], m[1], e.nbytes))
            packs.setdefault(m[0], -1)
        pos += e.nbytes
    for p in packs:
        packs[p] = pos
        placed.append((r.entries[p], pos))
        pos += r.entries[p].nbytes
    if pos > 2 * WHOLE_MAX:  # packs far larger than their members here (a crafted index): stream
        return None
    table = _chunk_rows(r, placed)
    start = int(table[:, 0].min()) if len(table) else 0
    end = int((table[:, 0] + table[:, 1]).max()) if len(table) else 0
    if end - start > 2 * WHOLE_MAX:  # the chunk table is validated; this bounds a crafted one
        return None
    payload = r.read_range(start, end)
    table[:, 0] -= np.uint64(start)
    out = np.empty(pos, np.uint8)
    _C.decode_segments(payload, table, out, threads, True)
    for dst, p, off, n in members:
        src = packs[p] + off
        out[dst:dst + n] = out[src:src + n]
    return memoryview(out)[:total]


def _chunk_rows(r: Any, placed: list[tuple[Any, int]]) -> np.ndarray:
    """decode_segments' table (uint64[n, 7]) for the chunks of entries placed at offsets."""
    cb = r.chunk_bytes
    spec = [r.dtype_of(e) for e, _ in placed]
    cols = np.array([(e.first, e.count, e.nbytes, at, d.itemsize, d.transform)
                     for (e, at), d in zip(placed, spec)], np.int64).reshape(-1, 6)
    first, count, nbytes, at, item, tr = cols.T
    n = int(count.sum())
    starts = np.cumsum(count) - count
    k = np.arange(n, dtype=np.int64) - np.repeat(starts, count)  # chunk number within its entry
    chunk = np.repeat(first, count) + k
    table = np.empty((n, 7), np.uint64)
    table[:, 0] = r.offset[chunk]
    table[:, 1] = r.table["csize"][chunk]
    table[:, 2] = np.minimum(cb, np.repeat(nbytes, count) - k * cb)
    table[:, 3] = r.table["hash"][chunk]
    table[:, 4] = np.repeat(at, count) + k * cb
    table[:, 5] = np.repeat(item, count)
    table[:, 6] = np.repeat(tr, count)
    return table


def write_parts(r: Any, parts: list[int], path: Path, threads: int | None, bar: Any) -> None:
    """A file of at most WHOLE_MAX bytes is decoded in one core call and written at once;
    a larger one entry by entry, small pieces (packed tensors, headers) gathered into one buffer:
    a write call each cost more than decoding them."""
    whole = decode_parts(r, parts, 0 if threads is None else threads)
    small = bytearray()
    with open(path, "wb") as out:
        if whole is not None:
            out.write(whole)
            bar.update(len(whole))
            return
        for idx in parts:
            for slab in r.iter_entry(idx, threads):
                bar.update(len(slab))
                if len(slab) < (1 << 20):
                    small += slab
                    if len(small) >= (8 << 20):
                        out.write(small)
                        small = bytearray()
                    continue
                if small:
                    out.write(small)
                    small = bytearray()
                out.write(slab)
        out.write(small)
