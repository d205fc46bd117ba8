"""Packs: small tensors that share chunks (container version 3, docs/format.md).

A checkpoint is mostly small tensors (biases, norms, LoRA factors): coded one chunk each, every
one pays a coder call, stream headers and tables. The Writer instead gathers tensors under
PACK_MAX bytes per dtype into a pending pack of at most one chunk; when it is full (or at
finish) the pack is written as one `"kind": "pack"` entry, and each member is a tensor entry
with no chunks of its own and `extra.in = {"pack": p, "offset": o}`: its bytes are bytes
[o, o + nbytes) of pack entry p. Readers decode a pack once (a small cache) and slice it.
Members are never coded against a reference or lossy; such tensors keep their own chunks.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from .index import Entry

PACK_MAX = 16 << 10  # tensors smaller than this (bytes) are packed (64 KiB lost 1.2 % on rwkv FP16)
CACHE_PACKS = 4  # decoded packs a Reader keeps (dtypes interleave in a file)


class _Pending:
    """A pack being filled: its dtype, member entry indices, their bytes and the total."""

    def __init__(self, dt: Any) -> None:
        self.dt, self.members, self.parts, self.used = dt, [], [], 0


class PackWriter:
    """Writer mixin: pending packs per dtype (each at most one chunk, so memory is bounded)."""

    entries: list[Entry]
    chunk_bytes: int
    pack_small: bool

    def _start_packs(self, enabled: bool) -> None:
        self.pack_small = enabled
        self._pending: dict[str, _Pending] = {}

    def _packable(self, nbytes: int) -> bool:
        return self.pack_small and 0 < nbytes < min(PACK_MAX, self.chunk_bytes)

    def _add_member(self, name: str, dt: Any, shape: tuple[int, ...], data: bytes | memoryview,
                    extra: dict | None) -> int:
        p = self._pending.get(dt.name)
        if p is not None and p.used + len(data) > self.chunk_bytes:
            self._flush_pack(dt.name)
            p = None
        if p is None:
            p = self._pending[dt.name] = _Pending(dt)
        idx = len(self.entries)
        self.entries.append(Entry("tensor", self.nchunks, 0, len(data), name, dt.name, tuple(shape),
                                  {**(extra or {}), "in": {"pack": -1, "offset": p.used}}))
        p.members.append(idx)
        p.parts.append(data)
        p.used += len(data)
        return idx

    def _flush_pack(self, key: str) -> None:
        p = self._pending.pop(key)
        first, count, n = self._encode([b"".join(p.parts)], p.dt, 0, nbytes=p.used)
        pi = len(self.entries)
        self.entries.append(Entry("pack", first, count, n, dtype=p.dt.name))
        for m in p.members:
            self.entries[m].extra["in"]["pack"] = pi

    def _flush_packs(self) -> None:
        for key in list(self._pending):
            self._flush_pack(key)


def member_of(e: Entry) -> tuple[int, int] | None:
    """(pack entry, byte offset) of a packed tensor, else None."""
    m = e.extra.get("in")
    return None if m is None else (int(m["pack"]), int(m["offset"]))


class PackReader:
    """Reader mixin: a member's bytes from its (cached) decoded pack."""

    entries: list[Entry]

    def _member_bytes(self, e: Entry, threads: int | None) -> np.ndarray:
        p, off = member_of(e)  # type: ignore[misc]
        cache: OrderedDict[int, np.ndarray] = self.__dict__.setdefault("_packs", OrderedDict())
        if p in cache:
            cache.move_to_end(p)
        else:
            cache[p] = self.read_entry(p, threads, True)  # type: ignore[attr-defined]
            if len(cache) > CACHE_PACKS:
                cache.popitem(last=False)
        return cache[p][off:off + e.nbytes]
