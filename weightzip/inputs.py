"""Readers that turn source files into container entries, remembering how to rebuild them.

A source file is stored as an ordered list of parts (entry indices): tensors, coded with the
float-aware coder, and blobs, the bytes around them (safetensors/npy headers, zip records,
gaps, config files). Concatenating the parts rebuilds the file byte for byte.
"""
from __future__ import annotations

import json
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import torch_zip, zipscan
from .container import MAX_DIMS, Writer, slabs_from_file
from .dtypes import BY_NAME, from_numpy
from .errors import FormatError
from .slabs import SLAB_BYTES, MemFile

MAX_ST_HEADER = 100 << 20  # safetensors' own limit on the JSON header
READ_WHOLE = 64 << 20  # smaller files are mapped (or read) whole (MemFile), not read per tensor


def _blob_range(w: Writer, f: BinaryIO, start: int, end: int) -> int:
    f.seek(start)
    return w.add_blob(slabs_from_file(f, end - start), end - start) if end > start else w.add_blob(b"")


def _tensor_range(w: Writer, f: BinaryIO, name: str, dtype: str, shape: tuple, start: int,
                  nbytes: int, extra: dict | None = None, lossy_ok: bool = False) -> int:
    """lossy_ok only where the format keeps no checksum of the bytes (not in zip records)."""
    if isinstance(f, MemFile) and nbytes <= SLAB_BYTES:  # one view, no seek and no generator
        return w.add_tensor(name, BY_NAME[dtype], shape, (f.view_at(start, nbytes),), extra, lossy_ok)
    f.seek(start)
    return w.add_tensor(name, BY_NAME[dtype], shape, slabs_from_file(f, nbytes), extra, lossy_ok)


def safetensors_layout(f: BinaryIO, size: int) -> tuple[int, list[tuple], dict] | None:
    """(data_start, [(begin, end, name, dtype, shape)] sorted, metadata), or None if the file
    is not a well-formed safetensors file that we can split (then it is stored opaque)."""
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        return None
    (hlen,) = struct.unpack("<Q", head)
    if hlen == 0 or hlen > min(size - 8, MAX_ST_HEADER):
        return None
    try:
        header = json.loads(f.read(hlen))
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    data_start, data_len = 8 + hlen, size - 8 - hlen
    metadata = header.get("__metadata__") or {}
    spans = []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = t["dtype"], tuple(t["shape"]), t["data_offsets"]
        except (TypeError, KeyError, ValueError):
            return None
        if type(begin) is not int or type(end) is not int or not set(map(type, shape)) <= {int} or \
                not isinstance(dtype, str):
            return None
        if len(shape) > MAX_DIMS:  # valid safetensors, but no numpy array: kept as bytes
            return None
        dt = BY_NAME.get(dtype)
        if dt is None or not (0 <= begin <= end <= data_len) or (shape and min(shape) < 0):
            return None
        if end - begin != dt.itemsize * math.prod(shape):  # Python ints: no overflow
            return None
        spans.append((begin, end, name, dtype, shape))
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        if a[1] > b[0]:
            return None  # overlapping tensors
    return data_start, spans, metadata if isinstance(metadata, dict) else {}


def add_safetensors(w: Writer, f: BinaryIO, size: int) -> tuple[list[int], dict] | None:
    layout = safetensors_layout(f, size)
    if layout is None:
        return None
    data_start, spans, metadata = layout
    parts = [_blob_range(w, f, 0, data_start)]
    pos = 0
    for begin, end, name, dtype, shape in spans:
        if begin > pos:  # bytes no tensor claims: kept verbatim
            parts.append(_blob_range(w, f, data_start + pos, data_start + begin))
        parts.append(_tensor_range(w, f, name, dtype, shape, data_start + begin, end - begin, lossy_ok=True))
        pos = end
    if data_start + pos < size:
        parts.append(_blob_range(w, f, data_start + pos, size))
    return parts, metadata


def _npy_layout(f: BinaryIO, start: int, end: int):
    """(data_offset, dtype, shape, fortran) of an .npy stored at [start, end), or None."""
    f.seek(start)
    try:
        version = np.lib.format.read_magic(f)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, fortran, dtype = reader(f)
    except (ValueError, KeyError, OSError, SyntaxError):
        return None
    off = f.tell()
    if dtype.hasobject or off + dtype.itemsize * int(np.prod(shape, dtype=object)) != end:
        return None
    return off, dtype, shape, fortran


def add_npy(w: Writer, f: BinaryIO, start: int, end: int, name: str) -> list[int]:
    layout = _npy_layout(f, start, end)
    if layout is None:
        return [_blob_range(w, f, start, end)]
    off, dtype, shape, fortran = layout
    dt = from_numpy(dtype)
    parts = [_blob_range(w, f, start, off)]
    if dt is None:  # big-endian, complex, datetime...: kept exact, coded as bytes
        parts.append(_blob_range(w, f, off, end))
    else:
        extra = {"order": "F"} if fortran and len(shape) > 1 else None
        parts.append(_tensor_range(w, f, name, dt.name, tuple(shape), off, end - off, extra))
    return parts


def add_npz(w: Writer, f: BinaryIO, size: int) -> list[int] | None:
    """Byte-exact split of an uncompressed .npz (np.savez); None if members are deflated."""
    try:
        with zipfile.ZipFile(f) as z:
            infos = sorted(z.infolist(), key=lambda i: i.header_offset)
    except zipfile.BadZipFile:
        return None
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        return None
    parts, pos = [], 0
    for info in infos:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            return None
        nlen, xlen = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + nlen + xlen
        end = start + info.compress_size
        if start < pos or end > size:
            return None
        parts.append(_blob_range(w, f, pos, start))
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        parts += add_npy(w, f, start, end, name)
        pos = end
    parts.append(_blob_range(w, f, pos, size))
    return parts


def add_npz_arrays(w: Writer, path: Path) -> list[dict]:
    """Tensor-exact fallback for compressed .npz: arrays are stored, zip bytes are not.
    Arrays of dtypes weightzip has no coder for (big-endian, complex...) are kept as bytes."""
    arrays = []
    with np.load(path, allow_pickle=False) as z:
        loaded = [(name, np.require(z[name], requirements="C")) for name in z.files]
    for name, a in loaded:
        dt = from_numpy(a.dtype)
        flat = memoryview(a.reshape(-1).view(np.uint8))
        if dt is None:
            idx = w.add_tensor(name, BY_NAME["U8"], (a.nbytes,), iter([flat]))
            arrays.append({"name": name, "entry": idx, "npdtype": a.dtype.str, "shape": list(a.shape)})
        else:
            arrays.append({"name": name, "entry": w.add_tensor(name, dt, a.shape, iter([flat]))})
    return arrays


def torch_layout(f: BinaryIO, size: int) -> tuple[str, list[tuple]] | None:
    """("torch-zip" | "torch-legacy", storage spans) of a torch checkpoint, found by content
    whatever the suffix; None when f is not one or does not parse (then it is stored some
    other way, byte-exact all the same: pack never fails on a strange checkpoint)."""
    try:
        return torch_zip.layout(f, size)
    except FormatError:
        return None


def add_torch(w: Writer, f: BinaryIO, size: int) -> tuple[list[int], str] | None:
    """Byte-exact split of a torch checkpoint (spec: docs/format.md): each storage a tensor
    entry coded by its dtype and named by a tensor using it; the rest (zip records, pickles,
    padding) blobs between them."""
    found = torch_layout(f, size)
    if found is None:
        return None
    how, spans = found
    if w.lossy is not None:
        return _add_torch_lossy(w, f, size, how, spans), how
    parts, pos = [], 0
    for begin, end, name, dtype, shape in spans:
        if begin > pos:
            parts.append(_blob_range(w, f, pos, begin))
        parts.append(_tensor_range(w, f, name, dtype, shape, begin, end - begin))
        pos = end
    if size > pos or not parts:
        parts.append(_blob_range(w, f, pos, size))
    return parts, how


def _add_torch_lossy(w: Writer, f: BinaryIO, size: int, how: str, spans: list) -> list[int]:
    """add_torch when the Writer may quantise: every storage is coded before the bytes in
    front of it, so that the zip records' CRC-32 fields (local header, data descriptor,
    central directory) can be rewritten for the reconstruction; the parts list keeps the
    file order. Legacy files hold no CRCs."""
    crc_at = zipscan.crc_fields(f, size, zipscan.members(f, size)) if how == "torch-zip" else {}
    patches: dict[int, int] = {}

    def gap(start: int, end: int) -> int:
        f.seek(start)
        data = bytearray(f.read(end - start))
        for off, crc in patches.items():
            if start <= off and off + 4 <= end:
                data[off - start:off - start + 4] = crc.to_bytes(4, "little")
        return w.add_blob(bytes(data))

    parts, pos = [], 0
    for begin, end, name, dtype, shape in spans:
        idx = _tensor_range(w, f, name, dtype, shape, begin, end - begin, lossy_ok=True)
        if w.last_recon is not None:
            for off in crc_at.get(begin, []):
                patches[off] = zlib.crc32(w.last_recon)
        if begin > pos:
            parts.append(gap(pos, begin))
        parts.append(idx)
        pos = end
    if size > pos or not parts:
        parts.append(gap(pos, size))
    return parts


def add_file(w: Writer, path: Path) -> tuple[list[int], str, dict]:
    """Store one file; returns (parts, how it was split, safetensors metadata)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= READ_WHOLE:
            f = MemFile.of(f)  # type: ignore[assignment]
            size = len(f.mem)  # the bytes read (a file growing under us is read as it was)
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return add_npy(w, f, 0, size, path.stem), "npy", {}
        if suffix == ".npz":
            parts = add_npz(w, f, size)
            if parts is not None:
                return parts, "npz", {}
        elif (pt := add_torch(w, f, size)) is not None:
            return pt[0], pt[1], {}
        if suffix == ".safetensors" or suffix not in {".npz", ".npy"}:
            st = add_safetensors(w, f, size)
            if st is not None:
                return st[0], "safetensors", st[1]
        return [_blob_range(w, f, 0, size)], "raw", {}


def walk_folder(root: Path) -> list[Path]:
    """Files under root in a stable order; symlinks are followed (each real folder once),
    hidden files kept. Links are restored as regular files and folders."""
    out, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        out += [Path(dirpath) / n for n in sorted(filenames) if os.path.isfile(Path(dirpath) / n)]
    return out
