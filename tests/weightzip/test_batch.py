"""Batches (weightzip/batch.py): entries coded in one core call. The core's encode_segments codes
each part exactly as encode_chunks codes it alone, and a file written with batches is byte for
byte the file written entry by entry, whatever the batch size, thread count or entry mix."""
from __future__ import annotations

import hashlib

import ml_dtypes
import numpy as np
import pytest

import weightzip
from weightzip import _C, batch
from weightzip.container import Reader, Writer
from weightzip.dtypes import by_name
from weightzip.levels import LEVELS

st = pytest.importorskip("safetensors.numpy")


def parts_and_specs(seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(70001).astype(np.float32), (rng.standard_normal(513) * 1e-3).astype(np.float16),
              np.zeros(0, np.float32), rng.standard_normal(3).astype(ml_dtypes.bfloat16),
              np.array([np.nan, -np.inf, np.inf, -0.0, 1e-45, 3.4e38], np.float32),
              rng.integers(0, 255, 999, dtype=np.uint8), np.repeat(np.float32(0.5), 40000)]
    names = ["F32", "F16", "F32", "BF16", "F32", "U8", "F32"]
    specs = [(by_name(n).itemsize, by_name(n).transform, row) for n, row in zip(names, [7, 0, 0, 3, 0, 0, 100])]
    return [a.view(np.uint8) for a in arrays], np.array(specs, np.uint64)


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize("threads", [1, 2])
def test_segments_code_each_part_as_encode_chunks_does(level, threads):
    parts, specs = parts_and_specs()
    cb = 64 << 10  # several chunks for the largest part, a short last one
    payload, tab = _C.encode_segments(parts, specs, LEVELS[level], cb, threads)
    alone = [_C.encode_chunks(p, int(s[0]), int(s[1]), cb, LEVELS[level], int(s[2]), 1) for p, s in zip(parts, specs)]
    assert payload.tobytes() == b"".join(a[0].tobytes() for a in alone)
    assert np.array_equal(tab, np.concatenate([a[1] for a in alone]))
    assert len(tab) == sum(-(-p.size // cb) for p in parts)


def test_segments_refuse_bad_input():
    good = np.zeros(8, np.uint8)
    f32 = by_name("F32")
    with pytest.raises(ValueError, match="whole elements"):
        _C.encode_segments([good[:6]], np.array([[4, f32.transform, 0]]), 1, 1 << 20)
    with pytest.raises(ValueError, match="specs"):
        _C.encode_segments([good, good], np.array([[4, f32.transform, 0]]), 1, 1 << 20)
    with pytest.raises(ValueError):
        _C.encode_segments([good], np.array([[99, f32.transform, 0]]), 1, 1 << 20)
    with pytest.raises(ValueError, match="chunk_bytes"):
        _C.encode_segments([good], np.array([[4, f32.transform, 0]]), 1, 6)
    payload, tab = _C.encode_segments([], np.zeros((0, 3), np.uint64), 1, 1 << 20)
    assert tab.shape == (0, 3)


def model(seed: int = 0) -> dict[str, np.ndarray]:
    """Small (packed), mid-sized (batched) and large (coded alone: above BATCH_ITEM) tensors,
    interleaved, with an empty one and edge values."""
    rng = np.random.default_rng(seed)
    t: dict[str, np.ndarray] = {}
    for i in range(12):
        t[f"l{i}.norm"] = (1 + 0.05 * rng.standard_normal(64)).astype(np.float16)
        t[f"l{i}.w"] = (rng.standard_normal((96, 130 + i)) * 0.02).astype(ml_dtypes.bfloat16)
        t[f"l{i}.b"] = rng.standard_normal(4097 + i).astype(np.float32)
        if i % 5 == 2:
            t[f"l{i}.big"] = rng.standard_normal((1100, 1000)).astype(np.float32)  # 4.4 MB
    t["empty"] = np.zeros((0, 5), np.float32)
    t["edge"] = np.array([np.nan, -np.inf, np.inf, -0.0, 1e-45], np.float32)
    return t


@pytest.mark.parametrize("level", ["fast", "default"])
def test_batched_file_is_the_entry_by_entry_file(tmp_path, monkeypatch, level):
    t = model()
    src = tmp_path / "m.safetensors"
    st.save_file(t, src)
    digests = set()
    for item, nbytes, threads in [(-1, 0, 1), (batch.BATCH_ITEM, batch.BATCH_BYTES, 1),
                                  (batch.BATCH_ITEM, 300 << 10, 2), (1 << 30, 1 << 30, 2)]:
        monkeypatch.setattr(batch, "BATCH_BYTES", nbytes)
        monkeypatch.setattr("weightzip.container.BATCH_ITEM", item)  # -1: nothing is batched
        out = weightzip.pack(src, tmp_path / f"m{item}_{nbytes}_{threads}.wz", level=level, threads=threads,
                             progress=False)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
        back = weightzip.unpack(out, tmp_path / f"back{len(digests)}_{item}_{threads}.safetensors")
        assert back.read_bytes() == src.read_bytes()
    assert len(digests) == 1


def test_queued_slabs_of_reused_buffers_are_copied(tmp_path):
    """A slab is valid only until the next is asked for (slabs_from_file reuses its buffers): a
    queued entry must not read a buffer that changed after add_tensor returned. Views of
    immutable bytes are kept without a copy."""
    rng = np.random.default_rng(1)
    buf = rng.standard_normal(50000).astype(np.float32)  # one reused buffer
    f32 = by_name("F32")
    want = []
    with open(tmp_path / "a.wz", "wb") as f:
        w = Writer(f, "default", 1)
        for i in range(3):
            buf[:] = rng.standard_normal(buf.size)
            want.append(buf.tobytes())
            w.add_tensor(f"t{i}", f32, buf.shape, [memoryview(buf).cast("B")])
        frozen = bytes(want[0])
        w.add_tensor("frozen", f32, buf.shape, [memoryview(frozen)])
        assert w._parts[-1].obj is frozen  # kept as it is: no copy
        locked = np.frombuffer(want[1], np.uint8).copy()
        view = np.frombuffer(want[1], np.uint8)  # read-only, but a view of another object
        locked.flags.writeable = False  # owns its memory and cannot change: kept too
        w.add_tensor("locked", f32, buf.shape, [memoryview(locked)])
        w.add_tensor("view", f32, buf.shape, [memoryview(view)])
        assert w._parts[-2].obj is locked and not isinstance(w._parts[-1], memoryview)
        assert len(w._parts) == 6  # all queued: nothing coded yet
        w.finish([], {"kind": "test"})
    r = Reader(open(tmp_path / "a.wz", "rb"))
    got = [r.read_entry(r.tensors[f"t{i}"]).tobytes() for i in range(3)]
    assert got == want and r.read_entry(r.tensors["frozen"]).tobytes() == want[0]
    assert r.read_entry(r.tensors["locked"]).tobytes() == r.read_entry(r.tensors["view"]).tobytes() == want[1]


def test_kept_copies_are_queued_without_another_copy(tmp_path):
    """The Writer's keep mode (delta series) keeps a private copy of each tensor; the batch
    queues that copy itself."""
    a = np.random.default_rng(2).standard_normal(4000).astype(np.float32)
    with open(tmp_path / "k.wz", "wb") as f:
        w = Writer(f, "fast", 1, pack_small=False)
        w.keep = {}
        i = w.add_tensor("a", by_name("F32"), a.shape, [memoryview(a).cast("B")])
        assert w._parts[-1].obj is w.keep[i]
        a[:] = 0  # the caller's buffer changes: what was queued does not
        w.finish([], {"kind": "test"})
    assert Reader(open(tmp_path / "k.wz", "rb")).read_entry(0).tobytes() == w.keep[i].tobytes() != a.tobytes()


def test_segments_decode_as_decode_chunks_does():
    parts, specs = parts_and_specs()
    cb = 64 << 10
    payload, tab = _C.encode_segments(parts, specs, LEVELS["default"], cb, 2)
    rows, at, pos = [], 0, 0
    for p, s in zip(parts, specs):
        for k in range(-(-p.size // cb)):
            n = min(cb, p.size - k * cb)
            csize, rsize, h = (int(v) for v in tab[len(rows)])
            assert rsize == n
            rows.append([at, csize, rsize, h, pos + k * cb, int(s[0]), int(s[1])])
            at += csize
        pos += p.size
    table = np.array(rows, np.uint64)
    for threads in (1, 2):
        out = np.full(pos, 7, np.uint8)
        _C.decode_segments(payload, table, out, threads)
        assert out.tobytes() == b"".join(p.tobytes() for p in parts)
    out = np.empty(pos, np.uint8)
    bad = table.copy()
    bad[3, 4] = pos - 1  # past the end of out
    with pytest.raises(weightzip.FormatError, match="output"):
        _C.decode_segments(payload, bad, out)
    bad = table.copy()
    bad[0, 1] = payload.size + 1  # past the end of the payload
    with pytest.raises(weightzip.FormatError, match="outside the file"):
        _C.decode_segments(payload, bad, out)
    bad = table.copy()
    bad[0, 5] = 3  # itemsize 3 does not fit the float transform
    with pytest.raises(weightzip.FormatError):
        _C.decode_segments(payload, bad, out)
    bad = table.copy()
    bad[0, 3] ^= np.uint64(1)
    with pytest.raises(weightzip.ChecksumError):
        _C.decode_segments(payload, bad, out)
    with pytest.raises(ValueError, match="7"):
        _C.decode_segments(payload, table[:, :4], out)


@pytest.mark.parametrize("lossy", [False, True])
def test_whole_file_decode_is_the_streamed_decode(tmp_path, monkeypatch, lossy):
    """unpack() decodes a file of at most WHOLE_MAX bytes in one call (packs, blobs, lossy and
    mid-sized entries at their places); the entry-by-entry path gives the same file."""
    t = model(2)
    src = tmp_path / "m.safetensors"
    st.save_file(t, src, metadata={"note": "x" * 3000})
    wz = weightzip.pack(src, tmp_path / "m.wz", progress=False, max_error=1e-3 if lossy else None)
    whole = weightzip.unpack(wz, tmp_path / "whole.safetensors")
    monkeypatch.setattr(batch, "WHOLE_MAX", 0)
    streamed = weightzip.unpack(wz, tmp_path / "streamed.safetensors")
    assert whole.read_bytes() == streamed.read_bytes()
    assert lossy or whole.read_bytes() == src.read_bytes()


def test_whole_file_decode_reports_corruption(tmp_path):
    t = model(3)
    src = tmp_path / "m.safetensors"
    st.save_file(t, src)
    wz = weightzip.pack(src, tmp_path / "m.wz", progress=False)
    blob = bytearray(wz.read_bytes())
    blob[len(blob) // 3] ^= 0x10  # inside the chunks
    bad = tmp_path / "bad.wz"
    bad.write_bytes(bytes(blob))
    with pytest.raises((weightzip.ChecksumError, weightzip.FormatError)):
        weightzip.unpack(bad, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
