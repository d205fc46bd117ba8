"""File-to-file codecs compared by the benchmark.

Every codec is timed file-to-file (read input, compress, write output) so that the baselines
pay the same I/O as weightzip.pack / weightzip.unpack.  Imports are lazy so a child process
only loads what its method needs (zipnn pulls in torch, which shows up in its peak RSS).

zipnn 0.5.4 notes (from reading zipnn/zipnn.py and the zipnn_core C source):
  * byte API:  ZipNN(input_format="byte", bytearray_dtype=<"bfloat16"|"float16"|"float32">,
    threads=N, method="HUFFMAN").compress(buf); decompression reads dtype/layout from the
    32-byte header: ZipNN(threads=N).decompress(blob) -> bytearray.
  * the C core byte-groups each 256 KiB chunk into planes and Huffman-codes every plane
    (a plane is stored raw if it does not shrink below 95 %).  For bfloat16/float32 it first
    rotates the sign bit next to the mantissa ("bit_reorder") -- IN PLACE in the caller's buffer,
    so the input must be a private mutable copy (bytes would be corrupted silently).
  * float32 mode segfaults when the last 256 KiB chunk is 1..3 bytes long, so we only hand it
    a prefix whose length is a multiple of the element size and store the tail raw.
  * `threads` defaults to min(cpu_count, 16); threads=1 is single-threaded.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Callable, NamedTuple

from bench._common import ST_DTYPES, read_bytearray, read_bytes, read_st_header

ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}
WZ_PREFIX = "weightzip-"
try:  # the level names live in weightzip.levels; without weightzip its methods are skipped anyway
    from weightzip.levels import DEFAULT_LEVEL, LEVEL_NAMES
except Exception:  # noqa: BLE001 - ImportError, or a broken native extension
    DEFAULT_LEVEL, LEVEL_NAMES = "", ()


class Codec(NamedTuple):
    compress: Callable[[Path, Path, int], None]
    decompress: Callable[[Path, Path, int], None]


# --------------------------------------------------------------------------- zstd

def _zstd(level: int) -> Codec:
    def compress(src: Path, dst: Path, threads: int) -> None:
        import zstandard as zstd
        data = read_bytes(src)
        # threads=0: compress in the calling thread (single-threaded); N>1: N worker threads.
        blob = zstd.ZstdCompressor(level=level, threads=0 if threads <= 1 else threads).compress(data)
        dst.write_bytes(blob)

    def decompress(src: Path, dst: Path, threads: int) -> None:
        import zstandard as zstd  # zstd decompression is always single-threaded
        dst.write_bytes(zstd.ZstdDecompressor().decompress(read_bytes(src)))

    return Codec(compress, decompress)


# --------------------------------------------------------------------------- zipnn, whole file

def _zipnn_file(dtype: str) -> Codec:
    """The whole file as one byte buffer of `dtype` -- how zipnn's file CLI compresses."""
    item = ITEMSIZE[dtype]

    def compress(src: Path, dst: Path, threads: int) -> None:
        from zipnn import ZipNN
        buf = read_bytearray(src)  # fresh private copy: zipnn rewrites it in place
        n = len(buf) - len(buf) % item
        z = ZipNN(input_format="byte", bytearray_dtype=dtype, threads=threads, method="HUFFMAN")
        blob = z.compress(memoryview(buf)[:n])
        tail = bytes(buf[n:])
        with open(dst, "wb") as f:
            f.write(blob)
            f.write(tail + bytes([len(tail)]))

    def decompress(src: Path, dst: Path, threads: int) -> None:
        from zipnn import ZipNN
        data = read_bytes(src)
        tail_len = data[-1]
        end = len(data) - 1 - tail_len
        out = ZipNN(threads=threads).decompress(memoryview(data)[:end])
        with open(dst, "wb") as f:
            f.write(out)
            f.write(data[end:end + tail_len])

    return Codec(compress, decompress)


# --------------------------------------------------------------------------- zipnn, per tensor

_ZNT_MAGIC = b"ZNT1"
_SEG = struct.Struct("<BQ")  # kind (0 raw, 1 zipnn), payload length


def _zipnn_tensor_compress(src: Path, dst: Path, threads: int) -> None:
    """Each float tensor of a safetensors file with its own dtype (like zipnn's
    zipnn_compress_safetensors.py); header, integer tensors and gaps stored raw."""
    from zipnn import ZipNN
    buf = read_bytearray(src)
    mv = memoryview(buf)
    hdr = read_st_header(buf)
    zs: dict[str, ZipNN] = {}
    segs: list[tuple[int, int, str | None]] = []
    pos = 0
    for t in hdr.tensors:
        if t.begin > pos:
            segs.append((pos, t.begin, None))
        zdt = ST_DTYPES.get(t.dtype, (1, False, None))[2]
        if zdt not in ITEMSIZE:  # zipnn's FP8 mode exists, but keep to the tested dtypes
            zdt = None
        segs.append((t.begin, t.end, zdt))
        pos = max(pos, t.end)
    if pos < len(buf):
        segs.append((pos, len(buf), None))
    with open(dst, "wb") as f:
        f.write(_ZNT_MAGIC + len(segs).to_bytes(4, "little"))
        for b, e, zdt in segs:
            payload: bytes | memoryview = mv[b:e]
            kind = 0
            if zdt is not None and e - b >= 64:
                if zdt not in zs:
                    zs[zdt] = ZipNN(input_format="byte", bytearray_dtype=zdt, threads=threads,
                                    method="HUFFMAN")
                blob = zs[zdt].compress(mv[b:e])  # note: rewrites mv[b:e] in place
                if len(blob) < e - b:
                    payload, kind = blob, 1
                else:  # incompressible tensor: store the original bytes from the file
                    with open(src, "rb") as fin:
                        fin.seek(b)
                        payload = fin.read(e - b)
            f.write(_SEG.pack(kind, len(payload)))
            f.write(payload)


def _zipnn_tensor_decompress(src: Path, dst: Path, threads: int) -> None:
    from zipnn import ZipNN
    data = read_bytes(src)
    mv = memoryview(data)
    if data[:4] != _ZNT_MAGIC:
        raise ValueError("not a zipnn-tensor container")
    nseg = int.from_bytes(data[4:8], "little")
    z = ZipNN(threads=threads)
    pos = 8
    with open(dst, "wb") as f:
        for _ in range(nseg):
            kind, n = _SEG.unpack_from(data, pos)
            pos += _SEG.size
            f.write(z.decompress(mv[pos:pos + n]) if kind else mv[pos:pos + n])
            pos += n


# --------------------------------------------------------------------------- weightzip

def _quiet(fn: Callable[..., object]) -> dict[str, bool]:
    """progress=False if the weightzip function has such a parameter (keeps worker logs clean)."""
    import inspect
    try:
        return {"progress": False} if "progress" in inspect.signature(fn).parameters else {}
    except (TypeError, ValueError):
        return {}


def _weightzip(level: str) -> Codec:
    def compress(src: Path, dst: Path, threads: int) -> None:
        import weightzip
        weightzip.pack(src, dst, level=level, threads=threads, **_quiet(weightzip.pack))

    def decompress(src: Path, dst: Path, threads: int) -> None:
        import weightzip
        weightzip.unpack(src, dst, threads=threads, **_quiet(weightzip.unpack))

    return Codec(compress, decompress)


def get_codec(method: str, dtype_hint: str | None) -> Codec:
    if method.startswith("zstd-"):
        return _zstd(int(method.split("-", 1)[1]))
    if method == "zipnn":
        return _zipnn_file(dtype_hint or "bfloat16")
    if method == "zipnn-tensor":
        return Codec(_zipnn_tensor_compress, _zipnn_tensor_decompress)
    if method.startswith(WZ_PREFIX):
        return _weightzip(method.removeprefix(WZ_PREFIX))
    raise ValueError(f"unknown method {method!r}")


def dominant_float_dtype(path: Path) -> str:
    """zipnn dtype covering the most bytes of the file (float32 for .pt checkpoints)."""
    if path.suffix != ".safetensors":
        return "float32"
    by: dict[str, int] = {}
    for t in read_st_header(path).tensors:
        zdt = ST_DTYPES.get(t.dtype, (1, False, None))[2]
        if zdt in ITEMSIZE:
            by[zdt] = by.get(zdt, 0) + t.end - t.begin
    return max(by, key=lambda k: by[k]) if by else "float32"


def file_size(path: Path) -> int:
    return os.path.getsize(path)
