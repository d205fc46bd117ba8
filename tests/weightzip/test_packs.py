"""Packs (container version 3, weightzip/packs.py): small tensors share chunks. Round trips are
byte-exact, a pack is decoded once for all its members, crafted member references are refused
(in version 3's list entries and version 4's table), and files with only large tensors (or made
with pack_small=False) have no packs."""
from __future__ import annotations

import io
import os
import struct

import ml_dtypes
import numpy as np
import pytest
from common import needs_zstd
from wz_helpers import FOOTER_SIZE, PREAMBLE_SIZE, build_wz, read_index

import weightzip
from weightzip import container, packs
from weightzip.container import Reader, Writer, slabs_of
from weightzip.dtypes import from_numpy

st = pytest.importorskip("safetensors.numpy")


def small_model(seed: int = 0) -> dict[str, np.ndarray]:
    """Interleaved dtypes and sizes: norms, biases, odd lengths, an empty and a 0-d tensor,
    edge values, and one tensor above packs.PACK_MAX."""
    rng = np.random.default_rng(seed)
    t: dict[str, np.ndarray] = {}
    for i in range(40):
        t[f"l{i}.bias"] = (rng.standard_normal(96 + i) * 0.02).astype(np.float32)
        t[f"l{i}.norm"] = (1 + 0.05 * rng.standard_normal(64)).astype(np.float16)
        t[f"l{i}.gate"] = (rng.standard_normal(33) * 0.1).astype(ml_dtypes.bfloat16)
    t["steps"] = np.arange(7, dtype=np.int64)
    t["empty"] = np.zeros((3, 0), np.float32)
    t["scalar"] = np.array(2.5, np.float32)
    t["edge"] = np.array([np.nan, -np.inf, np.inf, -0.0, 1e-45, 3.4e38], np.float32)
    t["big"] = rng.standard_normal((64, 1024)).astype(np.float32)  # 256 KiB: own chunks
    return t


def version(blob: bytes) -> int:
    return struct.unpack_from("<H", blob, 8)[0]


def test_roundtrip_is_exact_and_small_tensors_share_chunks(tmp_path):
    t = small_model()
    p = weightzip.save(t, tmp_path / "m.wz")
    got = weightzip.load(p)
    assert list(got) == list(t)
    for k in t:
        assert got[k].dtype == t[k].dtype and got[k].shape == t[k].shape
        assert got[k].tobytes() == t[k].tobytes(), k
    r = Reader(open(p, "rb"))
    kinds = [e.kind for e in r.entries]
    assert version(p.read_bytes()) == 4 and kinds.count("pack") == 4  # F32, F16, BF16, I64
    members = [e for e in r.entries if packs.member_of(e)]
    assert len(members) == 123 and all(e.count == 0 for e in members)
    big = r.entries[r.tensors["big"]]
    assert packs.member_of(big) is None and big.count == 1
    # a safetensors file of them unpacks byte for byte
    st.save_file(t, tmp_path / "m.safetensors")
    wz = weightzip.pack(tmp_path / "m.safetensors", tmp_path / "f.wz")
    out = weightzip.unpack(wz, tmp_path / "o.safetensors")
    assert out.read_bytes() == (tmp_path / "m.safetensors").read_bytes()
    assert weightzip.verify(wz, tmp_path / "m.safetensors").startswith("OK")


def test_small_files_read_whole_pack_to_the_same_bytes_as_streamed_ones(tmp_path, monkeypatch):
    """Files under inputs.READ_WHOLE are mapped (or, where mapping fails, read in one call)
    and sliced (MemFile); larger ones are streamed slab by slab. All must write the same .wz,
    and the source is left as it was."""
    import mmap

    from weightzip import inputs, slabs

    src = tmp_path / "m.safetensors"
    st.save_file(small_model(), src)
    before = src.read_bytes()
    mapped = []
    real = mmap.mmap
    monkeypatch.setattr(slabs.mmap, "mmap", lambda *a, **k: mapped.append(1) or real(*a, **k))
    whole = weightzip.pack(src, tmp_path / "whole.wz", threads=1).read_bytes()
    assert mapped, "a small file is mapped"

    def refuse(*a, **k):
        raise OSError("no mmap here")
    monkeypatch.setattr(slabs.mmap, "mmap", refuse)
    read = weightzip.pack(src, tmp_path / "read.wz", threads=1).read_bytes()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert weightzip.unpack(weightzip.pack(empty, tmp_path / "e.wz"), tmp_path / "e.bin").read_bytes() == b""
    monkeypatch.setattr(inputs, "READ_WHOLE", 0)
    streamed = weightzip.pack(src, tmp_path / "streamed.wz", threads=1).read_bytes()
    assert whole == read == streamed and src.read_bytes() == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_pipe_is_read_not_mapped(tmp_path):
    """A named pipe cannot be mapped or seeked: its bytes are read once, as a file's would be."""
    import threading

    t = {"a": np.arange(40, dtype=np.float32), "b": np.ones((3, 5), np.float16)}
    st.save_file(t, tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    wz = weightzip.pack(fifo, tmp_path / "p.wz")
    writer.join()
    assert weightzip.unpack(wz, tmp_path / "o.safetensors").read_bytes() == data


@needs_zstd  # the index JSON of members compresses well with zstd only
def test_packing_saves_bytes_on_many_small_tensors(tmp_path):
    t = small_model()
    del t["big"]
    st.save_file(t, tmp_path / "m.safetensors")
    packed = weightzip.pack(tmp_path / "m.safetensors", tmp_path / "a.wz").stat().st_size
    buf = io.BytesIO()  # the same tensors, one chunk each
    w = Writer(buf, pack_small=False)
    for k, a in t.items():
        raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        w.add_tensor(k, from_numpy(a.dtype), a.shape, slabs_of(memoryview(raw)))
    w.finish([], {"kind": "safetensors"})
    assert not any(e.kind == "pack" for e in Reader(io.BytesIO(buf.getvalue())).entries)
    assert packed < 0.9 * len(buf.getvalue())


def test_a_pack_is_decoded_once_for_all_its_members(tmp_path, monkeypatch):
    t = small_model()
    p = weightzip.save(t, tmp_path / "m.wz")
    calls = []
    real = container.Reader._decode
    monkeypatch.setattr(container.Reader, "_decode",
                        lambda self, e, *a, **k: calls.append(e.kind) or real(self, e, *a, **k))
    with weightzip.open(p) as f:
        for k in f.keys():
            assert f.get_tensor(k).tobytes() == t[k].tobytes()
    assert calls.count("pack") == 4 and calls.count("tensor") == 2  # 4 packs, "big" and "empty"


def test_info_counts_each_byte_once(tmp_path):
    t = small_model()
    p = weightzip.save(t, tmp_path / "m.wz")
    info = weightzip.info(p)
    names = [row["name"] for row in info["entries"] if row["kind"] == "tensor"]
    assert names == list(t) and all(row["kind"] != "pack" for row in info["entries"])
    raw = sum(a.nbytes for a in t.values())
    assert raw < info["total_bytes"] < raw + 64 * 1024  # + the safetensors header blob
    stored = sum(row["stored"] for row in info["entries"])
    assert abs(stored - (p.stat().st_size - 16)) < 0.2 * p.stat().st_size  # the index is the rest


def test_large_tensors_only_are_not_packed(tmp_path):
    a = np.random.default_rng(1).standard_normal(1 << 16).astype(np.float32)
    p = weightzip.save({"w": a, "v": a[::-1].copy()}, tmp_path / "m.wz")
    assert [e.kind for e in Reader(open(p, "rb")).entries] == ["blob", "tensor", "tensor"]
    frame = weightzip.compress(np.ones(5, np.float32))  # frames never pack
    assert [e.kind for e in Reader(io.BytesIO(frame)).entries] == ["tensor"]


def test_deltas_use_packed_tensors_of_the_reference(tmp_path):
    t0 = small_model()
    t1 = {k: (a + np.asarray(1e-3, a.dtype) if a.dtype.kind == "f" and a.size else a) for k, a in t0.items()}
    ref = weightzip.save(t0, tmp_path / "c0.wz")
    delta = weightzip.save(t1, tmp_path / "c1.wz", ref=ref)
    r = Reader(open(delta, "rb"))
    assert not any(e.kind == "pack" for e in r.entries)
    assert sum(e.ref_entry is not None for e in r.entries) > 100
    got = weightzip.load(delta)
    assert all(got[k].tobytes() == t1[k].tobytes() for k in t1)


def _crafted(tmp_path, mutate, v: int = 3):
    blob = weightzip.save(small_model(), tmp_path / "m.wz").read_bytes()
    index, table = read_index(blob, entries_form=True)
    mutate(index)
    ioff = struct.unpack("<Q", blob[-FOOTER_SIZE:][:8])[0]
    p = tmp_path / "c.wz"
    p.write_bytes(build_wz(blob[PREAMBLE_SIZE:ioff], index, table, version=v))
    return p


def _member(index) -> dict:
    return next(e for e in index["entries"] if "in" in e.get("extra", {}))


CRAFTED = {
    "offset past the pack": lambda i: _member(i)["extra"]["in"].update(offset=1 << 30),
    "negative offset": lambda i: _member(i)["extra"]["in"].update(offset=-4),
    "pack is a tensor": lambda i: _member(i)["extra"]["in"].update(pack=len(i["entries"]) - 1),
    "pack out of range": lambda i: _member(i)["extra"]["in"].update(pack=10**6),
    "pack not int": lambda i: _member(i)["extra"]["in"].update(pack="3"),
    "member with chunks": lambda i: _member(i).update(chunks=[0, 1]),
    "member also lossy": lambda i: _member(i)["extra"].update(lossy={"max_error": 0.1}),
    "other dtype": lambda i: _member(i).update(dtype="U8", shape=[_member(i)["nbytes"]]),
    "pack inside a pack": lambda i: next(e for e in i["entries"] if e["kind"] == "pack").update(
        extra={"in": {"pack": 0, "offset": 0}}),
}


def _tabled(tmp_path, mutate):
    """A version 4 file whose entry table mutate(table, first member's index) edited."""
    blob = weightzip.save(small_model(), tmp_path / "m.wz").read_bytes()
    index, table = read_index(blob)
    t = index["table"]
    mutate(t, next(i for i, p in enumerate(t["pack"]) if p >= 0))
    ioff = struct.unpack("<Q", blob[-FOOTER_SIZE:][:8])[0]
    p = tmp_path / "t.wz"
    p.write_bytes(build_wz(blob[PREAMBLE_SIZE:ioff], index, table, version=4))
    return p


def _col(name, value):
    return lambda t, i: t[name].__setitem__(i, value)


CRAFTED_TABLE = {  # the same faults in version 4's columns (a member's chunks are implied)
    "offset past the pack": _col("offset", 1 << 30), "negative offset": _col("offset", -4),
    "pack is a tensor": lambda t, i: t["pack"].__setitem__(i, t["kind"].index("t", i + 1)),
    "pack out of range": _col("pack", 10**6), "pack not int": _col("pack", "3"),
    "member also lossy": lambda t, i: t.setdefault("extra", {}).__setitem__(str(i), {"lossy": {"max_error": 0.1}}),
    "other dtype": lambda t, i: (_col("dtype", "U8")(t, i), _col("shape", [t["nbytes"][i]])(t, i)),
    "offsets without packs": lambda t, i: t.pop("pack"),
    "pack column short": lambda t, i: t["pack"].pop(),
    "pack inside a pack": lambda t, i: t["pack"].__setitem__(t["kind"].index("p"), t["kind"].index("p")),
}


@pytest.mark.parametrize("case", list(CRAFTED) + [f"table: {c}" for c in CRAFTED_TABLE])
def test_crafted_member_references_are_format_errors(tmp_path, case):
    p = _tabled(tmp_path, CRAFTED_TABLE[case[7:]]) if case.startswith("table: ") else _crafted(tmp_path, CRAFTED[case])
    for call in (lambda: weightzip.load(p), lambda: weightzip.info(p), lambda: weightzip.unpack(p, tmp_path / "o")):
        with pytest.raises(weightzip.FormatError):
            call()


def test_version_3_list_entries_still_read(tmp_path):
    """A file in the previous index form (list entries, version 3) reads as the table form does."""
    t = small_model()
    p = _crafted(tmp_path, lambda i: None)
    got = weightzip.load(p)
    assert list(got) == list(t) and all(got[k].tobytes() == t[k].tobytes() for k in t)
    assert weightzip.verify(p).startswith("OK")


def test_packs_in_an_older_version_are_refused(tmp_path):
    with pytest.raises(weightzip.FormatError, match="version"):
        weightzip.load(_crafted(tmp_path, lambda i: None, v=2))


SIMD_SCRIPT = """
import sys, hashlib, numpy as np
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/.."]
from test_packs import small_model
import weightzip
print(hashlib.sha256(weightzip.save(small_model(), sys.argv[2], threads=int(sys.argv[3])).read_bytes()).hexdigest())
"""


def test_same_bytes_at_every_thread_count_and_simd_level(tmp_path):
    """The coder's output depends on neither (csrc/tests check the kernels; this the file)."""
    import hashlib
    import os
    import subprocess
    import sys
    from pathlib import Path

    def saved(name: str, threads: int) -> Path:  # the same file name: it is stored in the index
        (tmp_path / name).mkdir()
        return weightzip.save(small_model(), tmp_path / name / "m.wz", threads=threads)

    want = hashlib.sha256(saved("t1", 1).read_bytes()).hexdigest()
    assert hashlib.sha256(saved("t2", 2).read_bytes()).hexdigest() == want
    for simd, threads in (("none", 1), ("avx2", 2), ("", 2)):
        (tmp_path / f"simd-{simd}").mkdir()
        r = subprocess.run([sys.executable, "-c", SIMD_SCRIPT, str(Path(__file__).parent),
                            str(tmp_path / f"simd-{simd}" / "m.wz"), str(threads)],
                           env={**os.environ, "WEIGHTZIP_SIMD": simd}, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip() == want, f"WEIGHTZIP_SIMD={simd or 'best'} threads={threads}"
