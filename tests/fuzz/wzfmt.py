"""Parse a .wz file into its parts and write it back with every checksum valid (the layout
of docs/format.md), for the structure-aware mutators: a mutated index, chunk table or chunk
reaches the reader's own validation and the decoders instead of stopping at a checksum.

The index JSON is written in the stored chunk form (0xFF + bytes), which readers accept like
any coded form; chunk checksums are recomputed by decoding the chunk with the core.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightzip import _C
from weightzip.dtypes import BY_NAME
from weightzip.index import as_list_entries

MAGIC = b"\x89WZP\r\n\x1a\n"
FOOTER_MAGIC = b"WZINDEX\x00"
PREAMBLE = struct.Struct("<8sHHI")
FOOTER = struct.Struct("<QQQ8s")
INDEX_HEAD = struct.Struct("<III")


@dataclass
class Wz:
    version: int
    flags: int
    reserved: int
    chunks: list[bytes]
    index: Any
    hashes: list[int]
    tail: bytes = b""  # chunk-table bytes that are not a whole record (none in valid files)
    json_text: bytes | None = field(default=None)  # verbatim JSON instead of json.dumps(index)


def xxh32(b: bytes) -> int:
    return _C.xxh64(b) & 0xFFFFFFFF


def parse(blob: bytes) -> Wz | None:
    """The parts of a .wz file whose index decodes and whose chunk sizes add up; else None."""
    try:
        if len(blob) < PREAMBLE.size + FOOTER.size:
            return None
        magic, version, flags, reserved = PREAMBLE.unpack_from(blob)
        ioff, ilen, _h, fmagic = FOOTER.unpack_from(blob, len(blob) - FOOTER.size)
        if magic != MAGIC or fmagic != FOOTER_MAGIC or ioff + ilen + FOOTER.size != len(blob):
            return None
        iblob = blob[ioff:ioff + ilen]
        jlen, clen, jhash = INDEX_HEAD.unpack_from(iblob)
        if jlen > 1 << 22 or INDEX_HEAD.size + clen > len(iblob):
            return None
        js = np.empty(jlen, np.uint8)
        tab = np.array([[0, clen, jlen, jhash]], np.uint64)
        _C.decode_chunks(iblob[INDEX_HEAD.size:INDEX_HEAD.size + clen], tab, 1, 0, js, 1, False)
        index = json.loads(js.tobytes())
        table = iblob[INDEX_HEAD.size + clen:]
        nrec = len(table) // 8
        recs = struct.unpack(f"<{2 * nrec}I", table[:8 * nrec])
        chunks, at = [], PREAMBLE.size
        for i in range(nrec):
            chunks.append(blob[at:at + recs[2 * i]])
            at += recs[2 * i]
        if at != ioff:
            return None
        return Wz(version, flags, reserved, chunks, index, list(recs[1::2]), table[8 * nrec:])
    except Exception:  # anything unparsable is mutated as plain bytes instead
        return None


def build(w: Wz) -> bytes:
    """The file bytes: chunk records, JSON checksum, index checksum and footer all valid."""
    js = w.json_text if w.json_text is not None else json.dumps(w.index, separators=(",", ":")).encode()
    coded = b"\xff" + js
    table = b"".join(struct.pack("<II", len(c), h & 0xFFFFFFFF) for c, h in zip(w.chunks, w.hashes)) + w.tail
    iblob = INDEX_HEAD.pack(len(js), len(coded), xxh32(js)) + coded + table
    payload = b"".join(w.chunks)
    ioff = PREAMBLE.size + len(payload)
    return (PREAMBLE.pack(MAGIC, w.version & 0xFFFF, w.flags & 0xFFFF, w.reserved & 0xFFFFFFFF) + payload
            + iblob + FOOTER.pack(ioff, len(iblob), _C.xxh64(iblob), FOOTER_MAGIC))


def entry_ranges(index: Any) -> list[tuple[int, int, int, str, str]]:
    """(first chunk, count, nbytes, kind, dtype) per entry, from list entries (versions 1-3) or
    the entry table (version 4)."""
    if "table" in index:
        from weightzip.index import parse_table
        return [(e.first, e.count, e.nbytes, e.kind, e.dtype)
                for e in parse_table(index["table"], int(index["chunk_bytes"]))]
    return [(int(e["chunks"][0]), int(e["chunks"][1]), int(e["nbytes"]), e.get("kind"), e.get("dtype"))
            for e in index["entries"]]


def entries_form(w: Wz) -> None:
    """Rewrite a version 4 entry table as version 3's list entries (for edits written for them)."""
    if "table" in w.index:
        as_list_entries(w.index)
        w.version = 3


def chunk_layout(w: Wz, i: int) -> tuple[int, int, int] | None:
    """(itemsize, transform, raw size) of chunk i as the index describes it, or None."""
    try:
        cb = int(w.index["chunk_bytes"])
        for first, count, nbytes, kind, dtype in entry_ranges(w.index):
            if first <= i < first + count:
                dt = BY_NAME[dtype] if kind == "tensor" else BY_NAME["U8"]
                raw = cb if i < first + count - 1 else nbytes - (count - 1) * cb
                return dt.itemsize, dt.transform, raw
    except Exception:
        return None
    return None


def reseal_chunk(w: Wz, i: int) -> None:
    """Set chunk i's checksum to that of what it decodes to (unchanged if it does not)."""
    lay = chunk_layout(w, i)
    if lay is None or not 0 <= lay[2] <= 1 << 24:
        return
    itemsize, transform, raw = lay
    out = np.empty(raw, np.uint8)
    tab = np.array([[0, len(w.chunks[i]), raw, 0]], np.uint64)
    try:
        _C.decode_chunks(w.chunks[i], tab, itemsize, transform, out, 1, False)
    except ValueError:  # FormatError: the chunk does not decode; the reader will say so
        return
    w.hashes[i] = xxh32(out.tobytes())
