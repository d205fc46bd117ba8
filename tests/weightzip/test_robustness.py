"""Corrupt, truncated, foreign and hand-crafted files: weightzip must raise FormatError /
ChecksumError (never another exception, never crash, hang or return wrong data), write
outputs atomically. (CLI error reporting: test_cli.py.) Decoding of mutated files runs in a
child process (common.decode_in_child), so a segfault or hang is a failure, not a crash of
pytest. Allocation checks use tracemalloc, which sees numpy/Python buffers, not C++ ones."""
from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from common import assert_safe_outcomes, decode_in_child
from decode_worker import digest
from wz_helpers import FOOTER_SIZE, LEVELS, PREAMBLE_SIZE, build_wz, read_index, rebuild_wz, wz_regions, xxh64

import weightzip


def frame(level: str) -> tuple[bytes, np.ndarray]:
    """A small compress() frame whose planes go through rANS / zstd / CM, not only 'raw'."""
    rng = np.random.default_rng(42)
    a = (rng.standard_normal((24, 40)) * 0.02).astype(np.float32)
    a[0, :5] = [np.nan, np.inf, -0.0, 1e-45, -np.inf]
    return weightzip.compress(a, level=level), a


def footer(blob: bytes) -> tuple[int, int, int]:
    return struct.unpack("<QQQ", blob[-32:-8])


# ------------------------------------------------------------------ truncation / bit flips

def truncation_lengths(blob: bytes) -> list[int]:
    ioff, ilen, _ = footer(blob)
    n = len(blob)
    cuts = {0, 1, 15, 16, 17, 47, 48, 49, ioff // 2, ioff - 1, ioff, ioff + 1, ioff + 12,
            ioff + ilen // 2, n - 33, n - 32, n - 31, n - 9, n - 8, n - 1}
    return sorted(c for c in cuts if 0 <= c < n)


@pytest.mark.parametrize("api", ["decompress", "load", "unpack"])
def test_truncated_files_raise(tmp_path, small_st_wz, api):
    blob = frame("default")[0] if api == "decompress" else small_st_wz[1]
    cuts = truncation_lengths(blob)
    outcomes = decode_in_child([blob[:c] for c in cuts], api, tmp_path)
    for c, (status, detail) in zip(cuts, outcomes):
        assert status == "FMT", f"truncated to {c} bytes: {status} {detail}"


def flip_positions(blob: bytes, rng) -> list[tuple[int, int]]:
    """(byte, bit): every bit of preamble, index and footer; one bit of every payload byte."""
    reg = wz_regions(blob)
    out = []
    for name in ("preamble", "index", "footer"):
        a, b = reg[name]
        out += [(i, bit) for i in range(a, b) for bit in range(8)]
    a, b = reg["payload"]
    out += [(i, int(rng.integers(8))) for i in range(a, b)]
    return out


@pytest.mark.parametrize("level", LEVELS)
def test_single_bit_flips_compress_frame(tmp_path, level):
    blob, a = frame(level)
    rng = np.random.default_rng(0)
    pos = flip_positions(blob, rng)
    cases = []
    for i, bit in pos:
        b = bytearray(blob)
        b[i] ^= 1 << bit
        cases.append(bytes(b))
    outcomes = decode_in_child(cases, "decompress", tmp_path, timeout=300)
    counts = assert_safe_outcomes(outcomes, digest(a), labels=[f"byte {i} bit {b}" for i, b in pos])
    # flips the decoder may ignore (preamble flags/reserved, unused header bits) are rare
    assert counts["FMT"] >= 0.95 * len(cases), counts


@pytest.mark.parametrize("api", ["load", "unpack"])
def test_single_bit_flips_packed_file(tmp_path, small_st_wz, api):
    src_bytes, blob, tensors = small_st_wz
    rng = np.random.default_rng(1)
    reg = wz_regions(blob)
    pos = [(i, int(rng.integers(8))) for i in range(len(blob)) if i % 3 == 0 or i < 16 or i >= reg["footer"][0]]
    cases = []
    for i, bit in pos:
        b = bytearray(blob)
        b[i] ^= 1 << bit
        cases.append(bytes(b))
    outcomes = decode_in_child(cases, api, tmp_path / "w", timeout=300)
    good = decode_in_child([blob], api, tmp_path / "ref")[0]
    assert good[0] == "OK"
    if api == "unpack":
        ref = tmp_path / "ref.safetensors"
        ref.write_bytes(src_bytes)
        assert good[1] == digest(ref)
    assert_safe_outcomes(outcomes, good[1], labels=[f"byte {i} bit {b}" for i, b in pos])


FOREIGN = {
    "empty": b"",
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(60),
    "random": np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "zeros": bytes(48),
    "text": b"hello, this is not a weightzip file\n" * 4,
    "magic_only": b"\x89WZP\r\n\x1a\n",
    "magic_and_garbage": b"\x89WZP\r\n\x1a\n\x01\x00" + bytes(100),
    "footer_only": bytes(16) + struct.pack("<QQQ8s", 16, 0, 0, b"WZINDEX\x00"),
}


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "x" * 100)
    return buf.getvalue()


@pytest.mark.parametrize("kind", [*FOREIGN, "zip", "safetensors"])
def test_foreign_files_raise_format_error(tmp_path, small_st_wz, kind):
    data = {"zip": _zip_bytes(), "safetensors": small_st_wz[0]}.get(kind) or FOREIGN[kind]
    p = tmp_path / "x.wz"
    p.write_bytes(data)
    calls = [lambda: weightzip.decompress(data), lambda: weightzip.load(p), lambda: weightzip.info(p),
             lambda: weightzip.verify(p), lambda: weightzip.open(p), lambda: weightzip.unpack(p, tmp_path / "o")]
    for call in calls:
        with pytest.raises(weightzip.FormatError):
            call()
    assert sorted(os.listdir(tmp_path)) == ["x.wz"]


@pytest.mark.parametrize("version", [5, 7, 0xFFFF])  # 2: deltas (test_delta.py), 3: packs (test_packs.py)
def test_newer_version_asks_to_upgrade(version):
    blob = bytearray(frame("fast")[0])
    blob[8:10] = struct.pack("<H", version)
    with pytest.raises(weightzip.FormatError, match="(?i)upgrade"):
        weightzip.decompress(bytes(blob))


def test_random_table_edits_are_format_errors(tmp_path):
    """Random edits of a version 4 entry table (values of other types, out of range, columns
    of the wrong length, unknown kinds) give FormatError or ChecksumError, never another error."""
    import copy
    import random

    rng = random.Random(0)
    t = {f"t{i}": (np.arange(7 * (i + 1), dtype=[np.float32, np.float16, np.int64][i % 3]) * 2).reshape(-1, 7)
         for i in range(12)}
    t["big"] = np.random.default_rng(0).standard_normal((300, 100)).astype(np.float32)
    blob = weightzip.save(t, tmp_path / "m.wz").read_bytes()
    index, table = read_index(blob)
    ioff = struct.unpack("<Q", blob[-FOOTER_SIZE:][:8])[0]
    values = [None, -1, 0, 1, 3, 2**31, 2**63, 2**70, 1.5, True, "", "F32", "x", [], [0], [2**40, 2**40], {},
              {"in": 1}]
    p = tmp_path / "c.wz"
    for _ in range(150):
        ix = copy.deepcopy(index)
        cols = ix["table"]
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(list(cols))
            col = cols[name]
            if isinstance(col, list) and col and rng.random() < 0.8:
                col[rng.randrange(len(col))] = rng.choice(values)
            elif isinstance(col, str):
                cols[name] = "".join(rng.choice("tbpx") for _ in range(len(col) + rng.choice([0, 0, 1, -1])))
            else:
                cols[name] = rng.choice(values)
        p.write_bytes(build_wz(blob[PREAMBLE_SIZE:ioff], ix, table, version=4))
        for call in (lambda: weightzip.load(p), lambda: weightzip.unpack(p, tmp_path / "o", overwrite=True)):
            try:
                call()
            except (weightzip.FormatError, weightzip.ChecksumError):
                pass


def with_footer(blob: bytes, ioff=None, ilen=None, ihash=None) -> bytes:
    o, l, h = footer(blob)
    return blob[:-32] + struct.pack("<QQQ8s", o if ioff is None else ioff, l if ilen is None else ilen,
                                    h if ihash is None else ihash, b"WZINDEX\x00")


def assert_small_alloc(fn, limit=16 << 20):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit, f"allocated {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("field", ["ilen=2**60", "ilen=2**64-1", "ioff=2**63", "ioff=0", "ilen=0",
                                   "both", "jlen=2**32-1", "clen=2**32-1"])
def test_absurd_sizes_rejected_without_allocating(field):
    blob = frame("default")[0]
    ioff, ilen, _ = footer(blob)
    if field.startswith(("jlen", "clen")):
        head = bytearray(blob[ioff:ioff + ilen])
        at = 0 if field[0] == "j" else 4  # INDEX_HEAD = u32 json_len, u32 coded_len, u32 checksum
        head[at:at + 4] = b"\xff\xff\xff\xff"
        bad = blob[:ioff] + bytes(head) + blob[ioff + ilen:]
        bad = with_footer(bad, ihash=xxh64(bytes(head)))  # checksum made valid on purpose
    else:
        kw = {"ilen=2**60": dict(ilen=2**60), "ilen=2**64-1": dict(ilen=2**64 - 1),
              "ioff=2**63": dict(ioff=2**63), "ioff=0": dict(ioff=0), "ilen=0": dict(ilen=0),
              "both": dict(ioff=2**62, ilen=2**62)}[field]
        bad = with_footer(blob, **kw)

    def call():
        with pytest.raises(weightzip.FormatError):
            weightzip.decompress(bad)
    assert_small_alloc(call)


def test_json_len_is_bounded_by_the_file():
    blob = frame("fast")[0]
    ioff, ilen, _ = footer(blob)
    head = bytearray(blob[ioff:ioff + ilen])
    head[0:4] = struct.pack("<I", (256 << 20) - 1)
    bad = with_footer(blob[:ioff] + bytes(head) + blob[ioff + ilen:], ihash=xxh64(bytes(head)))

    def call():
        with pytest.raises(weightzip.FormatError):
            weightzip.decompress(bad)
    assert_small_alloc(call)


# ------------------------------------------------------------------ hand-crafted indexes

def _set(key, value):
    return lambda i: i.__setitem__(key, value)


def _entry0(**kw):
    return lambda i: i["entries"][0].update(kw)


def _neg_blob(i):
    i["entries"].append({"kind": "blob", "chunks": [1, 0], "nbytes": -5})
    i["files"], i["source"] = [{"path": "x.bin", "parts": [1]}], {"kind": "raw"}


CRAFTED = {  # every checksum in these files is valid: only the reader's validation remains
    "dtype unknown": _entry0(dtype="F99"), "dtype not str": _entry0(dtype=["F32"]),
    "shape huge": _entry0(shape=[0, 2**70]), "shape str": _entry0(shape="960"),
    "shape negative": _entry0(shape=[-24, -40]), "nbytes lies": _entry0(nbytes=3),
    "chunks overlap": _entry0(chunks=[1, 1]), "chunks str": _entry0(chunks="01"),
    "kind unknown": _entry0(kind="weird"), "extra not dict": _entry0(extra=[1]),
    "entries null": _set("entries", None), "entries empty": _set("entries", []),
    "chunk_bytes 0": _set("chunk_bytes", 0), "chunk_bytes 3": _set("chunk_bytes", 3),
    "chunk_bytes 2**40": _set("chunk_bytes", 2**40), "files not list": _set("files", 5),
    "file path int": _set("files", [{"path": 1, "parts": [0]}]),
    "file part out of range": _set("files", [{"path": "a", "parts": [9]}]),
    "nchunks wrong": _set("nchunks", 2),
    "no nchunks": lambda i: i.pop("nchunks"),
    "nchunks str": _set("nchunks", "x"),
    "blob nbytes negative": _neg_blob,
    "torch tree malformed": _set("source", {"kind": "torch", "tree": {"x": 1}}),
    "npz arrays malformed": _set("source", {"kind": "npz-arrays", "arrays": [{"name": "a"}]}),
}


def _table(key, value):
    return lambda i: i["table"].__setitem__(key, value)


def _table0(key, value):
    return lambda i: i["table"][key].__setitem__(0, value)


CRAFTED_TABLE = {  # version 4: the entry table's columns
    "no table": lambda i: i.pop("table"), "table null": _set("table", None),
    "table and entries": lambda i: i.__setitem__("entries", []) or i.pop("table"),
    "kind list": _table("kind", ["t"]), "kind unknown": _table("kind", "x"),
    "kind longer": lambda i: i["table"].__setitem__("kind", i["table"]["kind"] + "b"),
    "nbytes str": _table0("nbytes", "960"), "nbytes negative": _table0("nbytes", -8),
    "nbytes bool": _table0("nbytes", True), "nbytes float": _table0("nbytes", 960.0),
    "nbytes huge": _table0("nbytes", 2**70), "nbytes lies": _table0("nbytes", 3),
    "column short": lambda i: i["table"]["shape"].pop(), "name int": _table0("name", 5),
    "dtype unknown": _table0("dtype", "F99"), "dtype not str": _table0("dtype", ["F32"]),
    "shape huge": _table0("shape", [0, 2**70]), "shape str": _table0("shape", "960"),
    "shape negative": _table0("shape", [-24, -40]), "shape float": _table0("shape", [24.0, 40]),
    "shape 33 dims": _table0("shape", [1] * 33), "extra not dict": _table("extra", {"0": [1]}),
    "extra says in": _table("extra", {"0": {"in": {"pack": 0, "offset": 0}}}),
    "extra ref without ref": _table("extra", {"0": {"ref": {"entry": 0}}}),
    "nchunks wrong": _set("nchunks", 2),
}


@pytest.mark.parametrize("case", list(CRAFTED) + [f"v4: {c}" for c in CRAFTED_TABLE])
def test_crafted_index_raises_format_error(tmp_path, case):
    blob = frame("fast")[0]
    p = tmp_path / "c.wz"
    v4 = case.startswith("v4: ")
    p.write_bytes(rebuild_wz(blob, CRAFTED_TABLE[case[4:]] if v4 else CRAFTED[case], version=4 if v4 else 1))
    calls = {"load": lambda: weightzip.load(p), "info": lambda: weightzip.info(p),
             "verify": lambda: weightzip.verify(p), "unpack": lambda: weightzip.unpack(p, tmp_path / "o"),
             "torch": lambda: weightzip.load(p, framework="torch")}
    for name, call in calls.items():
        try:
            call()
        except weightzip.FormatError:
            pass
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"{name}: {type(e).__name__}: {e}")
    assert sorted(os.listdir(tmp_path)) == ["c.wz"]
    if v4:  # every one of these is caught while the index is read
        with pytest.raises(weightzip.FormatError):
            weightzip.info(p, verify=False)


def test_crafted_tiny_index():
    blob = frame("fast")[0]
    ioff = footer(blob)[0]
    with pytest.raises(weightzip.FormatError):
        weightzip.decompress(build_wz(blob[16:ioff], None, b"", index_blob=b"\0\0\0\0"))


@pytest.mark.parametrize("path", ["../evil.txt", "sub/../../evil.txt", "/ABS/evil.txt", "", "."])
def test_unpack_refuses_paths_outside_the_folder(tmp_path, path):
    src = tmp_path / "folder"
    src.mkdir()
    (src / "a.txt").write_text("a")
    blob = weightzip.pack(src, tmp_path / "f.wz").read_bytes()
    path = path.replace("/ABS", str(tmp_path))
    p = tmp_path / "evil.wz"
    p.write_bytes(rebuild_wz(blob, lambda i: i["files"][0].__setitem__("path", path)))
    (tmp_path / "work").mkdir()
    with pytest.raises(weightzip.FormatError):
        weightzip.unpack(p, tmp_path / "work" / "out")
    assert sorted(os.listdir(tmp_path)) == ["evil.wz", "f.wz", "folder", "work"]  # no evil.txt
    assert os.listdir(tmp_path / "work") == []


# ------------------------------------------------------------------ atomic outputs

def corrupt_last_chunk(blob: bytes) -> bytes:
    ioff = footer(blob)[0]
    b = bytearray(blob)
    b[ioff - 3] ^= 0x40
    return bytes(b)


def test_failed_unpack_leaves_nothing_and_keeps_old_output(tmp_path, small_st_wz):
    bad = tmp_path / "m.safetensors.wz"
    bad.write_bytes(corrupt_last_chunk(small_st_wz[1]))
    with pytest.raises(weightzip.FormatError):
        weightzip.unpack(bad)
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors.wz"]
    old = tmp_path / "m.safetensors"
    old.write_bytes(b"previous content")
    with pytest.raises(FileExistsError):
        weightzip.unpack(bad, old)
    with pytest.raises(weightzip.FormatError):
        weightzip.unpack(bad, old, overwrite=True)
    assert old.read_bytes() == b"previous content"
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors", "m.safetensors.wz"]


def test_failed_folder_unpack_leaves_nothing(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(3):
        (src / "sub" / f"f{i}.bin").write_bytes(os.urandom(5000))
    blob = weightzip.pack(src, tmp_path / "src.wz").read_bytes()
    (tmp_path / "src.wz").write_bytes(corrupt_last_chunk(blob))
    out = tmp_path / "out"
    with pytest.raises(weightzip.FormatError):
        weightzip.unpack(tmp_path / "src.wz", out)
    assert sorted(os.listdir(tmp_path)) == ["src", "src.wz"]


def test_failed_pack_leaves_nothing_and_keeps_old_output(tmp_path, monkeypatch):
    import torch

    import weightzip.container
    src = tmp_path / "c.pt"
    torch.save(OrderedDict(a=torch.randn(300, 300), z=torch.zeros(3)), src)

    def fail(*a, **k):  # every tensor is written, then writing the index fails
        raise ValueError("disk full (simulated)")
    monkeypatch.setattr(weightzip.container.Writer, "finish", fail)
    with pytest.raises(ValueError):
        weightzip.pack(src)
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]
    dst = tmp_path / "c.pt.wz"
    dst.write_bytes(b"old archive")
    with pytest.raises(FileExistsError):
        weightzip.pack(src, dst)
    with pytest.raises(ValueError):
        weightzip.pack(src, dst, overwrite=True)
    assert dst.read_bytes() == b"old archive"
    assert sorted(os.listdir(tmp_path)) == ["c.pt", "c.pt.wz"]


def test_unpack_of_a_compress_frame_is_refused(tmp_path):
    p = tmp_path / "a.wz"
    p.write_bytes(frame("fast")[0])
    with pytest.raises(weightzip.FormatError, match="decompress"):
        weightzip.unpack(p)
    assert sorted(os.listdir(tmp_path)) == ["a.wz"]
