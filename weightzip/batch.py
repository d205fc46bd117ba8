"""Batches: many entries coded in one call of the core (`_C.encode_segments`).

A checkpoint of small and mid-sized tensors cost one coder call per tensor: Python work, a
fresh output buffer and, with threads, a thread pool per call that had one or two chunks to
share. The Writer instead queues entries of at most BATCH_ITEM bytes (plain ones: no
reference, not lossy) and codes the queue in one call when it holds BATCH_BYTES, before any
entry coded on its own, and at finish. The file is the same: every entry keeps its own chunks,
in entry order, and each chunk is coded exactly as encode_chunks codes it.

An entry's chunk range is known when it is queued (ceil(nbytes / chunk_bytes) chunks after
those already planned), so entries are written to the index at once; the chunks follow when
the batch is coded.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _C
from .slabs import SLAB_BYTES

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
        if one is not None and (isinstance(one, bytes) or isinstance(getattr(one, "obj", None), bytes)):
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
