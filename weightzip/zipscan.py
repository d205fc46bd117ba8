"""Just enough of the zip format to find where each member's bytes lie, with zip64.

torch.save writes an uncompressed zip (members STORED, padded to 64-byte alignment through
the local header's extra field, sizes in data descriptors and the central directory). The
central directory is read once, bounded; every offset and size is checked against the file
before it is used; anything inconsistent raises FormatError.
"""
from __future__ import annotations

import struct
import zlib
from typing import BinaryIO, NamedTuple

from .errors import FormatError

EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory record, 22 bytes
EOCD64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes, just before the EOCD
EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes (+ extensible data)
CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes + name + extra + comment
LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes + name + extra
MAX_CENTRAL = 128 << 20  # bytes of central directory read at once
MAX_MEMBERS = 1 << 20  # checkpoints have a few thousand; bounds the member list (~200 MB)
U16, U32 = 0xFFFF, 0xFFFFFFFF
STORED, DEFLATED = 0, 8


class Member(NamedTuple):
    name: str
    method: int  # 0 stored, 8 deflated, ...
    csize: int  # bytes in the file
    usize: int  # bytes once decompressed
    offset: int  # file offset of the member's local header
    flags: int = 0  # general purpose flags (bit 3: sizes and CRC in a data descriptor)
    crc_at: int = -1  # file offset of the central directory's CRC-32 field of this member


def is_zip(head: bytes) -> bool:
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _zip64_extra(extra: bytes, fields: list[int]) -> list[int]:
    """Replace the 0xFFFFFFFF fields (usize, csize, offset, in order) from the zip64 extra."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + n]
        if tag == 1:
            out, k = list(fields), 0
            for i, v in enumerate(fields):
                if v == U32:
                    if k + 8 > len(body):
                        raise FormatError("zip64 extra field too short")
                    out[i] = struct.unpack_from("<Q", body, k)[0]
                    k += 8
            return out
        pos += 4 + n
    if U32 in fields:
        raise FormatError("zip member needs a zip64 extra field that is missing")
    return fields


def _directory(f: BinaryIO, size: int) -> tuple[int, int, int]:
    """(number of members, central directory offset, its size)."""
    tail_len = min(size, EOCD.size + U16)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(b"PK\x05\x06")
    while i >= 0 and i + EOCD.size > len(tail):
        i = tail.rfind(b"PK\x05\x06", 0, i)
    if i < 0:
        raise FormatError("no zip end-of-directory record")
    _sig, disk, cd_disk, n_this, count, cd_size, cd_off, _clen = EOCD.unpack_from(tail, i)
    end = size - tail_len + i  # the directory must end before this record
    loc = i - EOCD64_LOCATOR.size
    if loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07":
        _s, _d, off64, _n = EOCD64_LOCATOR.unpack_from(tail, loc)
        if off64 + EOCD64.size > size - tail_len + loc:
            raise FormatError("zip64 end-of-directory record out of bounds")
        f.seek(off64)
        rec = f.read(EOCD64.size)
        if len(rec) != EOCD64.size or rec[:4] != b"PK\x06\x06":
            raise FormatError("bad zip64 end-of-directory record")
        _s, _n, _vm, _vn, disk, cd_disk, n_this, count, cd_size, cd_off = EOCD64.unpack(rec)
        end = off64
    elif U32 in (cd_size, cd_off) or U16 in (n_this, count):
        raise FormatError("zip64 archive without a zip64 locator")
    if disk or cd_disk or n_this != count:
        raise FormatError("multi-disk zip archives are not supported")
    if cd_size > MAX_CENTRAL or cd_off + cd_size > end or \
            count > min(cd_size // CENTRAL.size, MAX_MEMBERS):
        raise FormatError("zip central directory out of bounds")
    return count, cd_off, cd_size


def members(f: BinaryIO, size: int) -> list[Member]:
    """Every member of the zip archive in f (size bytes), in central-directory order."""
    count, cd_off, cd_size = _directory(f, size)
    f.seek(cd_off)
    cd = f.read(cd_size)
    if len(cd) != cd_size:
        raise FormatError("zip central directory truncated")
    out, pos = [], 0
    for _ in range(count):
        pos_entry = pos
        if pos + CENTRAL.size > len(cd):
            raise FormatError("zip central directory truncated")
        (sig, _vm, _vn, flags, method, _t, _d, _crc, csize, usize, nlen, xlen, clen, disk,
         _ia, _ea, offset) = CENTRAL.unpack_from(cd, pos)
        name_end = pos + CENTRAL.size + nlen
        if sig != b"PK\x01\x02" or name_end + xlen + clen > len(cd):
            raise FormatError("bad zip central directory entry")
        raw_name = cd[pos + CENTRAL.size:name_end]
        usize, csize, offset = _zip64_extra(cd[name_end:name_end + xlen], [usize, csize, offset])
        pos = name_end + xlen + clen
        if disk == U16:  # a zip64 disk number would follow; torch never writes one
            raise FormatError("multi-disk zip archives are not supported")
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        out.append(Member(name, method, csize, usize, offset, flags, cd_off + pos_entry + 16))
    return out


def data_start(f: BinaryIO, size: int, m: Member) -> int:
    """File offset of m's data, read from its local header (only for members we need)."""
    if m.offset + LOCAL.size > size:
        raise FormatError("zip local header out of bounds")
    f.seek(m.offset)
    head = f.read(LOCAL.size)
    if len(head) != LOCAL.size or head[:4] != b"PK\x03\x04":
        raise FormatError("bad zip local header")
    nlen, xlen = struct.unpack_from("<HH", head, 26)
    start = m.offset + LOCAL.size + nlen + xlen
    if start + m.csize > size:
        raise FormatError("zip member data out of bounds")
    return start


def read_member(f: BinaryIO, size: int, m: Member, limit: int) -> bytes:
    """The decompressed bytes of a small member (stored or deflated), at most limit bytes."""
    if m.csize > limit or m.usize > limit:
        raise FormatError(f"zip member {m.name!r} too large to read")
    f.seek(data_start(f, size, m))
    data = f.read(m.csize)
    if len(data) != m.csize:
        raise FormatError("zip member truncated")
    if m.method == STORED:
        return data
    if m.method != DEFLATED:
        raise FormatError(f"zip member {m.name!r}: unsupported compression {m.method}")
    try:
        out = zlib.decompressobj(-15).decompress(data, limit + 1)
    except zlib.error as e:
        raise FormatError(f"zip member {m.name!r}: {e}") from None
    if len(out) > limit:
        raise FormatError(f"zip member {m.name!r} too large to read")
    return out


def crc_fields(f: BinaryIO, size: int, ms: list[Member]) -> dict[int, list[int]]:
    """Data start of each STORED member -> file offsets of the CRC-32 fields that describe its
    bytes: the central directory's, the local header's (unless 0: sizes deferred) and the
    data descriptor's (flag bit 3; with or without its optional signature). Lossy packing of a
    torch checkpoint rewrites them for the reconstructed bytes."""
    out: dict[int, list[int]] = {}
    for m in ms:
        if m.method != STORED or m.crc_at < 0:
            continue
        start = data_start(f, size, m)
        at = [m.crc_at]
        f.seek(m.offset + 14)
        if f.read(4) != b"\0\0\0\0":
            at.append(m.offset + 14)
        if m.flags & 8 and start + m.csize + 8 <= size:
            end = start + m.csize
            f.seek(end)
            at.append(end + 4 if f.read(4) == b"PK\x07\x08" else end)
        out[start] = at
    return out
