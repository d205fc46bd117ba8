"""The .nc container, shared by every neurocodec codec (image, audio, INR).

Layout (little-endian; 20-30 bytes for an image, ≤ 32 for any codec in this release):

  3 B   magic  b"\\x89NC"
  1 B   format version (1)
  2 B   codec id (u16, from the registry; 0 is never used)
  1 B   quality index
  1 B   flags (reserved, 0)
  var   shape: a LEB128 count, then that many LEB128 values (image: H, W, channels;
        audio: sample rate, samples, channels)
  var   streams: a LEB128 count n, then the byte lengths of the first n-1 streams (LEB128);
        the last stream runs to the end of the file
  4 B   payload checksum: low 32 bits of XXH64 of all stream bytes
  4 B   header checksum: low 32 bits of XXH64 of every header byte before it
  ...   the streams, back to back

Decoding checks the magic, then the version (a newer file gets its own message), then the
header checksum, then the stream lengths against the file size, then the payload checksum.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from weightzip.core import VarintError, checksum32, write_varint
from weightzip.core import read_varint as _read

MAGIC = b"\x89NC"
VERSION = 1
MAX_DIMS = 8
MAX_STREAMS = 64
MAX_VALUE = 1 << 40  # any shape value or length beyond this is a corrupt header


class NcFormatError(ValueError):
    """Not a valid .nc file: wrong magic, newer version, corrupt or truncated, or streams a
    codec cannot decode. The one error family of neurocodec.decode() for a bad file (the
    codecs' own decode errors subclass it)."""


def _hash32(data) -> int:
    return checksum32(data)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A LEB128 value of a .nc header; NcFormatError if truncated, too long or absurd."""
    try:
        return _read(buf, pos, MAX_VALUE)
    except VarintError as e:
        raise NcFormatError(_VARINT_ERRORS[e.reason]) from None


_VARINT_ERRORS = {"truncated": "truncated .nc header", "too long": "corrupt .nc header (varint too long)",
                  "too large": "corrupt .nc header (absurd size)"}


@dataclass
class NcFile:
    codec_id: int
    quality: int
    shape: tuple[int, ...]
    streams: list[bytes] = field(default_factory=list)
    version: int = VERSION

    def to_bytes(self) -> bytes:
        if not 0 < self.codec_id < 1 << 16 or not 0 <= self.quality < 256:
            raise ValueError("codec id must be in 1..65535 and quality in 0..255")
        if len(self.shape) > MAX_DIMS or not 0 < len(self.streams) <= MAX_STREAMS:
            raise ValueError("too many dimensions or streams")
        if not all(isinstance(v, numbers.Integral) and 0 <= v <= MAX_VALUE for v in self.shape):  # from_bytes reads it
            raise ValueError(f"shape values must be whole numbers in 0..2**40, got {tuple(self.shape)}")
        head = bytearray(MAGIC)
        head += bytes([VERSION]) + self.codec_id.to_bytes(2, "little") + bytes([self.quality, 0])
        head += write_varint(len(self.shape)) + b"".join(write_varint(int(v)) for v in self.shape)
        head += write_varint(len(self.streams)) + b"".join(write_varint(len(s)) for s in self.streams[:-1])
        payload = b"".join(self.streams)
        head += _hash32(payload).to_bytes(4, "little")
        head += _hash32(bytes(head)).to_bytes(4, "little")
        return bytes(head) + payload

    @property
    def overhead(self) -> int:
        return len(self.to_bytes()) - sum(len(s) for s in self.streams)

    @classmethod
    def from_bytes(cls, buf: bytes) -> NcFile:
        buf = bytes(buf)
        if len(buf) < 4 or buf[:3] != MAGIC:
            if buf and MAGIC.startswith(buf[:3]):  # b"\x89NC" cut short, not another format
                raise NcFormatError("truncated .nc header")
            raise NcFormatError("not a .nc file (bad magic bytes)")
        if buf[3] > VERSION:
            raise NcFormatError(f".nc format version {buf[3]} is newer than this neurocodec "
                                f"(reads up to {VERSION}); upgrade neurocodec")
        if buf[3] == 0:
            raise NcFormatError("corrupt .nc header (version 0)")
        if len(buf) < 8:
            raise NcFormatError("truncated .nc header")
        codec_id = int.from_bytes(buf[4:6], "little")
        quality, flags = buf[6], buf[7]
        pos = 8
        ndim, pos = read_varint(buf, pos)
        if ndim > MAX_DIMS:
            raise NcFormatError("corrupt .nc header (too many dimensions)")
        shape = []
        for _ in range(ndim):
            v, pos = read_varint(buf, pos)
            shape.append(v)
        n, pos = read_varint(buf, pos)
        if not 0 < n <= MAX_STREAMS:
            raise NcFormatError("corrupt .nc header (stream count)")
        lengths = []
        for _ in range(n - 1):
            v, pos = read_varint(buf, pos)
            lengths.append(v)
        if pos + 8 > len(buf):
            raise NcFormatError("truncated .nc header")
        payload_hash = int.from_bytes(buf[pos:pos + 4], "little")
        if _hash32(buf[:pos + 4]) != int.from_bytes(buf[pos + 4:pos + 8], "little"):
            raise NcFormatError("corrupt .nc header (checksum mismatch)")
        if flags != 0:
            raise NcFormatError("unsupported .nc flags")
        payload = memoryview(buf)[pos + 8:]  # no copy: a big file is held twice at most, not 3x
        if sum(lengths) > len(payload):
            raise NcFormatError("truncated .nc file (streams run past the end)")
        if _hash32(payload) != payload_hash:
            raise NcFormatError("corrupt or truncated .nc payload (checksum mismatch)")
        streams, off = [], 0
        for ln in lengths:
            streams.append(bytes(payload[off:off + ln]))
            off += ln
        streams.append(bytes(payload[off:]))
        return cls(codec_id, quality, tuple(shape), streams, buf[3])
