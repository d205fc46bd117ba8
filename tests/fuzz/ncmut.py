"""Structure-aware mutation of .nc files (atheris custom mutator of fuzz_nc.py).

A file is parsed into its header fields and streams (docs/nc_format.md), one part is edited
(a header field, a shape value, one stream, the audio parameter stream's varints, one rANS
stream inside an audio index stream with its length fixed up, the stream split) and the
file is written back with both checksums valid, so the codecs' decoders see the edit. About
a fifth of the mutations are plain byte mutations, which keep the checksum checks covered.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from weightzip import _C
from weightzip.core import write_varint as varint

MAGIC = b"\x89NC"
ByteMutator = Callable[[bytes, int], bytes]
VALUES = [0, 1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 320, 1000, 999, 8000, 24000, 48000, 768000, 768001,
          1 << 12, (1 << 13) + 1, 1 << 16, 1 << 25, (1 << 25) + 1, 24000 * 86400, 1 << 40, (1 << 40) + 1, 1 << 62]


@dataclass
class Nc:
    version: int
    codec_id: int
    quality: int
    flags: int
    shape: list[int]
    streams: list[bytes]


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Laxer than neurocodec's reader (up to 63 bits), so that files this mutator wrote with
    out-of-range values can be mutated again."""
    v = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[pos]
        v, pos, shift = v | (b & 0x7F) << shift, pos + 1, shift + 7
        if not b & 0x80:
            return v, pos


def h32(b: bytes) -> int:
    return _C.xxh64(b) & 0xFFFFFFFF


def parse(buf: bytes) -> Nc | None:
    try:
        if buf[:3] != MAGIC:
            return None
        pos = 8
        ndim, pos = read_varint(buf, pos)
        shape = []
        for _ in range(min(ndim, 16)):
            v, pos = read_varint(buf, pos)
            shape.append(v)
        n, pos = read_varint(buf, pos)
        lens = []
        for _ in range(min(n, 64) - 1):
            v, pos = read_varint(buf, pos)
            lens.append(v)
        payload, streams, at = buf[pos + 8:], [], 0
        for ln in lens:
            streams.append(payload[at:at + ln])
            at += ln
        streams.append(payload[at:])
        return Nc(buf[3], int.from_bytes(buf[4:6], "little"), buf[6], buf[7], shape, streams)
    except (ValueError, IndexError):
        return None


def build(nc: Nc) -> bytes:
    head = bytearray(MAGIC) + bytes([nc.version & 0xFF]) + (nc.codec_id & 0xFFFF).to_bytes(2, "little")
    head += bytes([nc.quality & 0xFF, nc.flags & 0xFF]) + varint(len(nc.shape))
    head += b"".join(varint(v) for v in nc.shape) + varint(len(nc.streams))
    head += b"".join(varint(len(s)) for s in nc.streams[:-1])
    payload = b"".join(nc.streams)
    head += h32(payload).to_bytes(4, "little")
    head += h32(bytes(head)).to_bytes(4, "little")
    return bytes(head) + payload


def _value(rng: random.Random, old: int) -> int:
    r = rng.random()
    if r < 0.4:
        return max(0, old + rng.choice([-2, -1, 1, 2, 16, -16, 320]))
    if r < 0.6:
        return max(0, old * 2 if rng.random() < 0.5 else old // 2)
    return rng.choice(VALUES)


def _params(nc: Nc, rng: random.Random) -> None:
    """Audio stream 0: varint T24, then one varint e per channel."""
    try:
        vals, pos = [], 0
        while pos < len(nc.streams[0]):
            v, pos = read_varint(nc.streams[0], pos)
            vals.append(v)
    except ValueError:
        return
    if not vals:
        return
    i = rng.randrange(len(vals))
    if rng.random() < 0.5 and i:
        vals[i] = rng.choice([1023, 1024, 1025, 2048, 6144, 12287, 12288, 12289, 0, 1 << 20])
    else:
        vals[i] = _value(rng, vals[i])
    if rng.random() < 0.1:
        vals.append(1024) if rng.random() < 0.5 else vals.pop()
    nc.streams[0] = b"".join(varint(v) for v in vals)


def _resize_audio(nc: Nc, rng: random.Random) -> None:
    """A new duration with a matching T24, so that the decoder is asked for that much audio."""
    if len(nc.shape) != 3 or not nc.shape[0] or not nc.streams:
        return
    n = rng.choice([1, 2, 319, 320, 321, 24000, 250 * 320 + 1, nc.shape[1] * 2, nc.shape[0] * 3600])
    try:
        _t, pos = read_varint(nc.streams[0], 0)
    except ValueError:
        return
    nc.shape[1] = n
    nc.streams[0] = varint(round(n * 24000 / nc.shape[0])) + nc.streams[0][pos:]


def _index_stream(s: bytes, rng: random.Random, mut: ByteMutator) -> bytes:
    """Audio streams 1..C: varint L, L-1 varint lengths / 4, L rANS streams."""
    try:
        L, pos = read_varint(s, 0)
        if not 1 <= L <= 256:
            return mut(s, 2 * len(s) + 16)
        lens = []
        for _ in range(L - 1):
            v, pos = read_varint(s, pos)
            lens.append(4 * v)
    except ValueError:
        return mut(s, 2 * len(s) + 16)
    body, parts, at = s[pos:], [], 0
    for ln in lens:
        parts.append(body[at:at + ln])
        at += ln
    parts.append(body[at:])
    j = rng.randrange(len(parts))
    if rng.random() < 0.5:  # whole words, so that the length field stays exact
        p = mut(parts[j], 2 * len(parts[j]) + 16)
        parts[j] = p[:len(p) // 4 * 4] if j < L - 1 else p
    else:
        p = bytearray(parts[j])
        for _ in range(rng.randint(1, 3)):
            if p:
                p[rng.randrange(len(p))] = rng.randrange(256)
        parts[j] = bytes(p)
    return varint(L) + b"".join(varint(len(p) // 4) for p in parts[:-1]) + b"".join(parts)


def mutate(data: bytes, max_size: int, seed: int, bytes_mutator: ByteMutator | None = None) -> bytes:
    if bytes_mutator is None:
        import atheris
        bytes_mutator = atheris.Mutate
    rng = random.Random(seed)
    r = rng.random()
    nc = parse(data) if r >= 0.2 else None
    if nc is None:
        return bytes_mutator(data, max_size)
    audio = nc.codec_id == 3
    if r < 0.3:  # header fields
        f = rng.randrange(5)
        if f == 0:
            nc.codec_id = rng.choice([1, 2, 3, 1, 2, 3, 0, 4, 900, 65535])
        elif f == 1:
            nc.quality = rng.choice([0, 1, 2, 3, 4, 5, 6, 60, 255])
        elif f == 2:
            nc.flags = rng.choice([1, 0x80])
        elif f == 3:
            nc.version = rng.choice([0, 2, 255])
        else:
            nc.shape.append(1) if rng.random() < 0.5 else nc.shape.pop() if nc.shape else None
    elif r < 0.5 and nc.shape:
        i = rng.randrange(len(nc.shape))
        nc.shape[i] = _value(rng, nc.shape[i])
    elif r < 0.55 and audio:
        _resize_audio(nc, rng)
    elif r < 0.65 and audio:
        _params(nc, rng)
    elif r < 0.8 and audio and len(nc.streams) > 1:
        j = rng.randrange(1, len(nc.streams))
        nc.streams[j] = _index_stream(nc.streams[j], rng, bytes_mutator)
    elif r < 0.93:
        j = rng.randrange(len(nc.streams))
        nc.streams[j] = bytes_mutator(nc.streams[j], 2 * len(nc.streams[j]) + 16)
    else:  # the stream split: merge, split, drop or duplicate
        j = rng.randrange(len(nc.streams))
        op = rng.randrange(4)
        if op == 0 and j + 1 < len(nc.streams):
            nc.streams[j:j + 2] = [nc.streams[j] + nc.streams[j + 1]]
        elif op == 1 and nc.streams[j]:
            k = rng.randrange(len(nc.streams[j]) + 1)
            nc.streams[j:j + 1] = [nc.streams[j][:k], nc.streams[j][k:]]
        elif op == 2 and len(nc.streams) > 1:
            del nc.streams[j]
        else:
            nc.streams.insert(j, nc.streams[j])
    out = build(nc)
    return out if len(out) <= max_size else bytes_mutator(data, max_size)
