"""The .nc container itself (neurocodec/runtime/bitstream.py, docs/nc_format.md), without any
codec: NcFile round trips over shapes and stream counts, the exact bytes of a known file,
every refusal of from_bytes (with its message), and to_bytes' argument checks.

The checksums are recomputed here with a pure-Python XXH64, so these tests pin the documented
layout ("low 32 bits of XXH64, seed 0"), not whatever the implementation happens to call."""
from __future__ import annotations

import struct

import pytest

from neurocodec.runtime import bitstream
from neurocodec.runtime.bitstream import MAGIC, MAX_DIMS, MAX_STREAMS, MAX_VALUE, VERSION, NcFile, NcFormatError

# ---------------------------------------------------------------- an independent XXH64

_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5
_M = (1 << 64) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def _merge(acc: int, val: int) -> int:
    return ((acc ^ _round(0, val)) * _P1 + _P4) & _M


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 as specified (github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md)."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed, (seed - _P1) & _M]
        while i + 32 <= n:
            lanes = struct.unpack_from("<4Q", data, i)
            v = [_round(a, b) for a, b in zip(v, lanes)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for a in v:
            h = _merge(h, a)
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        h = ((_rotl(h ^ _round(0, struct.unpack_from("<Q", data, i)[0]), 27) * _P1) + _P4) & _M
        i += 8
    if i + 4 <= n:
        h = ((_rotl(h ^ (struct.unpack_from("<I", data, i)[0] * _P1) & _M, 23) * _P2) + _P3) & _M
        i += 4
    while i < n:
        h = (_rotl(h ^ (data[i] * _P5) & _M, 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    return h ^ (h >> 32)


def test_reference_xxh64():
    """Known answers (xxhsum), so the checksums below rest on the real XXH64."""
    assert xxh64(b"") == 0xEF46DB3751D8E999
    assert xxh64(b"a") == 0xD24EC4F1A98C6E5B
    assert xxh64(b"abc") == 0x44BC2CF5AD770999
    from weightzip.core import checksum32
    for data in (b"", b"abc", bytes(range(256)) * 3, b"x" * 31, b"y" * 33):
        assert checksum32(data) == xxh64(data) & 0xFFFFFFFF


# ---------------------------------------------------------------- building headers by hand

def leb(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def c32(b: bytes) -> bytes:
    return (xxh64(b) & 0xFFFFFFFF).to_bytes(4, "little")


def raw_nc(streams=(b"ab", b"cde"), shape=(24, 40, 3), codec_id=1, quality=3, flags=0, version=1,
           ndim=None, nstreams=None, lengths=None, shape_bytes=None, payload=None,
           payload_sum=None) -> bytes:
    """A .nc file laid out by hand from docs/nc_format.md, both checksums valid, whatever the
    fields say (ndim, nstreams, lengths, shape_bytes and payload override what the streams
    imply); payload_sum: checksum the payload field over these bytes instead."""
    head = MAGIC + bytes([version]) + codec_id.to_bytes(2, "little") + bytes([quality, flags])
    if shape_bytes is None:
        shape_bytes = leb(len(shape) if ndim is None else ndim) + b"".join(leb(v) for v in shape)
    head += shape_bytes
    if lengths is None:
        lengths = [len(s) for s in streams[:-1]]
    head += leb(len(streams) if nstreams is None else nstreams) + b"".join(leb(n) for n in lengths)
    payload = b"".join(streams) if payload is None else payload
    head += c32(payload if payload_sum is None else payload_sum)
    return head + c32(head) + payload


def refuses(data: bytes, match: str | None) -> NcFormatError:
    with pytest.raises(NcFormatError, match=match) as e:
        NcFile.from_bytes(data)
    assert isinstance(e.value, ValueError)
    return e.value


GOOD = raw_nc()


# ---------------------------------------------------------------- the exact layout

def test_constants():
    assert MAGIC == b"\x89NC" and VERSION == 1
    assert (MAX_DIMS, MAX_STREAMS, MAX_VALUE) == (8, 64, 1 << 40)
    assert issubclass(NcFormatError, ValueError)


def test_exact_bytes_of_a_known_file():
    """codec 1, quality 3, a 24x40 RGB image, streams b'ab' and b'cde': every byte pinned."""
    got = NcFile(1, 3, (24, 40, 3), [b"ab", b"cde"]).to_bytes()
    assert got == GOOD
    assert got.hex(" ") == ("89 4e 43 01 01 00 03 00 03 18 28 03 02 02 "
                            + c32(b"abcde").hex(" ") + " " + c32(got[:18]).hex(" ") + " 61 62 63 64 65")
    assert len(got) == 3 + 1 + 2 + 1 + 1 + 4 + 2 + 4 + 4 + 5
    # the two checksums, as constants: a change of hash function or of its coverage shows here
    assert got[14:22].hex() == "ebc78d0c99b875bd"
    assert NcFile(1, 3, (24, 40, 3), [b"ab", b"cde"]).overhead == 22


def test_exact_bytes_with_multibyte_varints():
    """768x512 RGB, a 300-byte first stream: LEB128 low group first (768 = 80 06, 300 = ac 02)."""
    s0, s1 = bytes(300), b"\x01"
    got = NcFile(65535, 255, (512, 768, 3), [s0, s1]).to_bytes()
    head = bytes.fromhex("89 4e 43 01 ff ff ff 00 03 80 04 80 06 03 02 ac 02")
    assert got[:len(head)] == head
    assert got[len(head):len(head) + 4] == c32(s0 + s1)
    assert got[len(head) + 4:len(head) + 8] == c32(got[:len(head) + 4])
    assert got[len(head) + 8:] == s0 + s1
    assert got == raw_nc([s0, s1], (512, 768, 3), 65535, 255)
    # 16 fixed bytes + the varints (ndim, 512, 768, 3, stream count, 300): 16 + 9
    assert NcFile(1, 0, (512, 768, 3), [s0, s1]).overhead == 25


# ---------------------------------------------------------------- round trips

SHAPES = [(), (0,), (1,), (24, 40, 3), (512, 768, 3), (16000, 8000, 2), tuple(range(1, MAX_DIMS + 1)),
          (MAX_VALUE, 0, MAX_VALUE), (127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 35, 2 ** 40)]
STREAMS = {
    "one empty": [b""],
    "one": [b"\x00\xff" * 50],
    "all empty": [b"", b"", b""],
    "empty first and last": [b"", b"x", b""],
    "lengths of 1-3 bytes": [bytes(127), bytes(128), bytes(16384), b"tail"],
    "64": [bytes([i]) * (i % 5) for i in range(MAX_STREAMS)],
    "64 empty": [b""] * MAX_STREAMS,
}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("streams", list(STREAMS))
def test_round_trip(shape, streams):
    s = STREAMS[streams]
    nc = NcFile(77, 9, shape, list(s))
    data = nc.to_bytes()
    assert data == raw_nc(s, shape, 77, 9)  # the documented layout, whatever the case
    back = NcFile.from_bytes(data)
    assert back == NcFile(77, 9, tuple(shape), list(s), VERSION)
    assert isinstance(back.shape, tuple) and all(type(b) is bytes for b in back.streams)
    assert nc.overhead == len(data) - sum(map(len, s))
    for view in (bytearray(data), memoryview(data)):  # any bytes-like input
        assert NcFile.from_bytes(view) == back


def test_round_trip_of_extreme_header_fields():
    for codec_id, quality in ((1, 0), (65535, 255), (256, 128)):
        back = NcFile.from_bytes(NcFile(codec_id, quality, (3,), [b"z"]).to_bytes())
        assert (back.codec_id, back.quality, back.version) == (codec_id, quality, 1)


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("data", [b"", b"PK\x03\x04" + bytes(40), b"\x89PNG\r\n\x1a\n" + bytes(40),
                                  b"\x89WZP\r\n\x1a\n" + bytes(40), b"NC\x89\x01" + bytes(20),
                                  b"\x89nc\x01" + GOOD[4:], b"\x00" + GOOD[1:], b"RIFF"])
def test_bad_magic(data):
    refuses(data, r"^not a \.nc file \(bad magic bytes\)$")


def test_truncated_at_every_length():
    """Every prefix of a file is refused, and (but for the empty file) says it is truncated."""
    for case in (GOOD, raw_nc([bytes(200), b"", bytes(3)], (512, 768, 3)), raw_nc([b""], ())):
        for n in range(len(case)):
            e = refuses(case[:n], "bad magic" if n == 0 else "truncated")
            assert n == 0 or "truncated" in str(e)
        NcFile.from_bytes(case)


def test_truncated_header_messages():
    refuses(GOOD[:3], r"^truncated \.nc header$")  # the magic alone
    refuses(GOOD[:7], r"^truncated \.nc header$")
    refuses(GOOD[:12], r"^truncated \.nc header$")  # inside the varints
    refuses(GOOD[:20], r"^truncated \.nc header$")  # inside the checksums
    refuses(GOOD[:-2], r"^corrupt or truncated \.nc payload \(checksum mismatch\)$")  # last stream short
    refuses(GOOD[:-4], r"^truncated \.nc file \(streams run past the end\)$")  # first stream short


@pytest.mark.parametrize("version", [2, 3, 0x7F, 0xFF])
def test_newer_version(version):
    data = bytearray(GOOD)
    data[3] = version  # checked before the header checksum: its own message, not "corrupt"
    refuses(bytes(data), rf"^\.nc format version {version} is newer than this neurocodec \(reads up to 1\); "
                         r"upgrade neurocodec$")
    refuses(raw_nc(version=version), "newer than this neurocodec")
    refuses(bytes(data[:5]), "newer than this neurocodec")  # even cut short


def test_version_zero():
    refuses(raw_nc(version=0), r"^corrupt \.nc header \(version 0\)$")
    refuses(b"\x89NC\x00", r"version 0")


def test_header_checksum():
    n_head = len(GOOD) - 5
    for i in range(4, n_head):  # every header byte after the version, checksums included
        for bit in (0x01, 0x80):
            data = bytearray(GOOD)
            data[i] ^= bit
            refuses(bytes(data), None)  # some flips are caught earlier (a varint, a count): still refused
    for i in (4, 5, 6, 7, 14, 15, 16, 17, 18, 21):  # fixed fields and stored checksums: this message
        data = bytearray(GOOD)
        data[i] ^= 0x10
        refuses(bytes(data), r"^corrupt \.nc header \(checksum mismatch\)$")


def test_payload_checksum():
    for i in range(len(GOOD) - 5, len(GOOD)):
        data = bytearray(GOOD)
        data[i] ^= 0x04
        refuses(bytes(data), r"^corrupt or truncated \.nc payload \(checksum mismatch\)$")
    refuses(GOOD + b"\x00", r"payload \(checksum mismatch\)")  # appended bytes join the last stream
    refuses(raw_nc(payload=b"abcdX", payload_sum=b"abcde"), r"payload \(checksum mismatch\)")


def test_payload_checksum_covers_the_stream_split():
    """The same payload bytes split differently: the header checksum changes, not the payload's."""
    a, b = raw_nc([b"ab", b"cde"]), raw_nc([b"abc", b"de"])
    assert a[14:18] == b[14:18] and a[18:22] != b[18:22]
    assert NcFile.from_bytes(b).streams == [b"abc", b"de"]


@pytest.mark.parametrize("flags", [1, 0x80, 0xFF])
def test_flags_must_be_zero(flags):
    refuses(raw_nc(flags=flags), r"^unsupported \.nc flags$")
    data = bytearray(GOOD)
    data[7] = flags  # without fixing the checksum: the header checksum is checked first
    refuses(bytes(data), r"header \(checksum mismatch\)")


def test_stream_lengths_past_the_end():
    refuses(raw_nc(lengths=[6]), r"^truncated \.nc file \(streams run past the end\)$")
    refuses(raw_nc([b"a", b"b", b"c"], lengths=[2, 2]), "streams run past the end")
    refuses(raw_nc([b"ab", b"cde"], lengths=[MAX_VALUE]), "streams run past the end")
    # exactly to the end is legal: the last stream is then empty
    assert NcFile.from_bytes(raw_nc([b"ab", b"cde"], lengths=[5])).streams == [b"abcde", b""]


def test_absurd_varints():
    too_big = leb(MAX_VALUE + 1)
    refuses(raw_nc(shape_bytes=leb(1) + too_big), r"^corrupt \.nc header \(absurd size\)$")
    refuses(raw_nc(shape_bytes=too_big), r"absurd size")  # a dimension count
    refuses(raw_nc(nstreams=1 << 41), r"absurd size")  # a stream count
    refuses(raw_nc(lengths=[MAX_VALUE + 1]), r"absurd size")  # a stream length
    refuses(raw_nc(shape_bytes=leb(1) + b"\xff" * 7 + b"\x01"), r"^corrupt \.nc header \(varint too long\)$")
    refuses(raw_nc(shape_bytes=leb(1) + b"\x80" * 7 + b"\x00"), r"varint too long")  # padded, not large
    assert NcFile.from_bytes(raw_nc(shape=(MAX_VALUE,), streams=[b""])).shape == (MAX_VALUE,)
    # a 7-byte varint of a small value is accepted (LEB128 allows padding)
    assert NcFile.from_bytes(raw_nc(shape_bytes=leb(1) + b"\x85" + b"\x80" * 5 + b"\x00")).shape == (5,)


def test_too_many_dimensions_or_streams():
    refuses(raw_nc(shape=tuple(range(1, MAX_DIMS + 2))), r"^corrupt \.nc header \(too many dimensions\)$")
    refuses(raw_nc(ndim=200, shape=()), "too many dimensions")
    refuses(raw_nc([b"x"] * (MAX_STREAMS + 1)), r"^corrupt \.nc header \(stream count\)$")
    refuses(raw_nc([b"x"], nstreams=0, lengths=[]), r"stream count")
    assert len(NcFile.from_bytes(raw_nc([b"x"] * MAX_STREAMS)).streams) == MAX_STREAMS


def test_checks_run_in_the_documented_order():
    """magic, version, header checksum, flags, stream lengths, payload checksum."""
    bad_everything = bytearray(raw_nc(flags=1, lengths=[99], payload=b"zz", payload_sum=b"other"))
    refuses(b"\x89NX" + bytes(bad_everything[3:]), "bad magic")
    v2 = bytearray(bad_everything)
    v2[3] = 2
    refuses(bytes(v2), "newer")
    broken = bytearray(bad_everything)
    broken[6] ^= 1
    refuses(bytes(broken), r"header \(checksum")
    refuses(bytes(bad_everything), "flags")
    refuses(raw_nc(lengths=[99], payload=b"zz", payload_sum=b"other"), "past the end")
    refuses(raw_nc(lengths=[1], payload=b"zz", payload_sum=b"other"), r"payload \(checksum")


# ---------------------------------------------------------------- to_bytes arguments

@pytest.mark.parametrize("codec_id,quality", [(0, 0), (65536, 0), (-1, 0), (1 << 20, 0), (1, 256), (1, -1),
                                              (1, 1000)])
def test_to_bytes_refuses_bad_ids_and_qualities(codec_id, quality):
    with pytest.raises(ValueError, match="codec id must be in 1..65535 and quality in 0..255"):
        NcFile(codec_id, quality, (1,), [b""]).to_bytes()


@pytest.mark.parametrize("shape,streams", [(tuple(range(MAX_DIMS + 1)), [b""]), ((1,), []),
                                           ((1,), [b""] * (MAX_STREAMS + 1))])
def test_to_bytes_refuses_too_many_dims_or_streams(shape, streams):
    with pytest.raises(ValueError, match="too many dimensions or streams"):
        NcFile(1, 0, shape, streams).to_bytes()


def test_to_bytes_refuses_negative_shape_values():
    with pytest.raises(ValueError):
        NcFile(1, 0, (-1,), [b""]).to_bytes()


def test_read_varint_is_the_header_reader():
    assert bitstream.read_varint(b"\xac\x02", 0) == (300, 2)
    with pytest.raises(NcFormatError, match="truncated"):
        bitstream.read_varint(b"\x80", 0)
