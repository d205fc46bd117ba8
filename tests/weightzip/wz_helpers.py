"""What the weightzip tests know of the .wz layout (weightzip/container.py): enough to locate
regions of a file and build files with a hand-made index, so robustness tests aim corruption
precisely; plus dtype tables and round-trip helpers."""
from __future__ import annotations

import json
import struct
from collections import OrderedDict

import ml_dtypes
import numpy as np
from common import sha256_file, tree_hashes  # noqa: F401

import weightzip
from weightzip.index import as_list_entries
from weightzip.levels import LEVEL_NAMES

LEVELS = LEVEL_NAMES  # weightzip.levels: the one list of level names


DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


MAGIC = b"\x89WZP\r\n\x1a\n"


FOOTER_MAGIC = b"WZINDEX\x00"


PREAMBLE_SIZE = 16


FOOTER_SIZE = 32


def random_bits(dtype, shape, seed=0) -> np.ndarray:
    """An array whose elements are uniformly random bit patterns (every NaN payload too)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8)
    if dtype == np.dtype("?"):
        b &= 1  # numpy bools must be 0/1
    return b.view(dtype).reshape(shape)


def wz_regions(blob: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges [start, end) of the parts of a valid .wz file."""
    size = len(blob)
    ioff, ilen, _h, magic = struct.unpack("<QQQ8s", blob[-FOOTER_SIZE:])
    assert magic == FOOTER_MAGIC and ioff + ilen + FOOTER_SIZE == size
    return {"preamble": (0, PREAMBLE_SIZE), "payload": (PREAMBLE_SIZE, ioff),
            "index": (ioff, ioff + ilen), "footer": (size - FOOTER_SIZE, size)}


def read_index(blob: bytes, entries_form: bool = False) -> tuple[dict, bytes]:
    """(index JSON, chunk table bytes) of a valid .wz file, decoded with the C core. With
    entries_form, a version 4 entry table is rewritten as versions 1-3 list entries (one
    object each, as Entry.to_json gives them), for tests of that parser and of per-entry edits."""
    from weightzip import _C
    ioff, ilen, _h, _m = struct.unpack("<QQQ8s", blob[-FOOTER_SIZE:])
    iblob = blob[ioff:ioff + ilen]
    jlen, clen, jhash = struct.unpack_from("<III", iblob)
    js = np.empty(jlen, np.uint8)
    tab = np.array([[0, clen, jlen, jhash]], np.uint64)
    _C.decode_chunks(iblob[12:12 + clen], tab, 1, 0, js, 1, True)
    index = json.loads(js.tobytes())
    if entries_form:
        as_list_entries(index)
    return index, iblob[12 + clen:]


def xxh64(data: bytes) -> int:
    from weightzip import _C
    return _C.xxh64(data)


def build_wz(payload: bytes, index, table: bytes, version: int = 1,
             json_bytes: bytes | None = None, index_blob: bytes | None = None) -> bytes:
    """A .wz file with a hand-made index; every checksum is made valid, so only the reader's
    own validation stands between the file and the decoders. The JSON is stored with the
    stored chunk form: u8 0xFF, then the bytes."""
    if index_blob is None:
        js = json_bytes if json_bytes is not None else json.dumps(index).encode()
        coded = b"\xff" + js
        index_blob = struct.pack("<III", len(js), len(coded), xxh64(js) & 0xFFFFFFFF) + coded + table
    ioff = PREAMBLE_SIZE + len(payload)
    return (MAGIC + struct.pack("<HHI", version, 0, 0) + payload + index_blob
            + struct.pack("<QQQ8s", ioff, len(index_blob), xxh64(index_blob), FOOTER_MAGIC))


def rebuild_wz(blob: bytes, mutate_index, version: int = 1) -> bytes:
    """Re-emit a valid .wz after mutate_index(index_dict) edits its index in place: with
    version < 4 the index has list entries (read_index's entries_form), with 4 its table."""
    index, table = read_index(blob, entries_form=version < 4)
    mutate_index(index)
    ioff = struct.unpack("<Q", blob[-FOOTER_SIZE:][:8])[0]
    return build_wz(blob[PREAMBLE_SIZE:ioff], index, table, version=version)


def roundtrip(src, tmp_path, level="default", name="out"):
    """pack + unpack; asserts the input is unchanged and verify() passes. Returns (wz, out)."""
    before = tree_hashes(src) if src.is_dir() else sha256_file(src)
    wz = weightzip.pack(src, tmp_path / f"{name}.wz", level=level)
    out = weightzip.unpack(wz, tmp_path / name)
    assert (tree_hashes(src) if src.is_dir() else sha256_file(src)) == before, "input was modified"
    assert weightzip.verify(wz).startswith("OK")
    assert weightzip.verify(wz, src).startswith("OK")
    return wz, out


def torch_tensors():
    import torch
    g = torch.Generator().manual_seed(0)
    return OrderedDict([
        ("embed.weight", torch.randn(50, 16, generator=g)),
        ("layer.0.w", torch.randn(16, 16, generator=g).to(torch.bfloat16)),
        ("layer.0.b", torch.randn(16, generator=g).to(torch.float16)),
        ("layer.0.f8", torch.randn(8, 4, generator=g).to(torch.float8_e4m3fn)),
        ("pos_ids", torch.arange(40, dtype=torch.int64).reshape(1, 40)),
        ("mask", torch.rand(7, generator=g) > 0.5),
        ("scale", torch.tensor(0.5, dtype=torch.float64)),
    ])


def handmade_safetensors(path, gap=13, trailing=b"TRAILING-bytes\x00\xff"):
    """Tensors stored out of header order, with unclaimed bytes between and after them and a
    header padded with spaces: all legal enough for readers, and must survive byte-exact."""
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.array([1, -2, 3], dtype=np.int16)
    off_b = 0
    off_a = b.nbytes + gap
    header = {"a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [off_a, off_a + a.nbytes]},
              "b": {"dtype": "I16", "shape": [3], "data_offsets": [off_b, off_b + b.nbytes]},
              "__metadata__": {"k": "v"}}
    js = json.dumps(header).encode() + b"   "
    data = b.tobytes() + bytes(range(gap)) + a.tobytes() + trailing
    path.write_bytes(struct.pack("<Q", len(js)) + js + data)
    return {"a": a, "b": b}
