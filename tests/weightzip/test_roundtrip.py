"""Round trips through compress/decompress and save/load/open: every dtype x every level,
compared bit for bit (NaN payloads, -0.0, denormals and all)."""
from __future__ import annotations

import hashlib

import ml_dtypes
import numpy as np
import pytest
from common import assert_same_array, raw, run_python, sha256_bytes
from wz_helpers import DTYPES, FLOAT_DTYPES, LEVELS, random_bits

import weightzip

UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def float_edge_patterns(name: str, exhaustive: bool = True) -> np.ndarray:
    """Interesting bit patterns of a float dtype; every pattern of 8/16-bit types when
    exhaustive."""
    dt = DTYPES[name]
    bits = 8 * dt.itemsize
    u = UINT[dt.itemsize]
    if bits <= 16 and exhaustive:
        return np.arange(1 << bits, dtype=np.uint64).astype(u).view(dt)
    fi = ml_dtypes.finfo(dt)
    sign, mant = 1 << (bits - 1), (1 << fi.nmant) - 1
    exp = ((1 << fi.nexp) - 1) << fi.nmant
    quiet = 1 << (fi.nmant - 1)
    pats = [0, sign,                                    # +0.0, -0.0
            1, mant, sign | 1, sign | mant,             # denormals (min, max, negative)
            1 << fi.nmant, sign | (1 << fi.nmant),      # smallest normals
            exp - 1, sign | (exp - 1),                  # max / min finite
            exp, sign | exp,                            # +inf, -inf
            exp | quiet, sign | exp | quiet,            # canonical quiet NaNs
            exp | 1, exp | (quiet | 1), exp | mant,     # NaN payloads (signalling, quiet, all)
            sign | exp | 1, sign | exp | 0x5A5A & mant, (1 << bits) - 1]
    return np.array(pats, dtype=np.uint64).astype(u).view(dt)


def edge_values(name: str) -> np.ndarray:
    dt = DTYPES[name]
    if name in FLOAT_DTYPES:
        return float_edge_patterns(name)
    if name == "BOOL":
        return np.array([False, True, True, False, False], dtype=bool)
    info = np.iinfo(dt)
    return np.array([0, 1, info.max, info.min, info.max - 1, info.min + 1, 2, 3], dtype=dt)


def weightlike(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Structured (compressible) data with edge values sprinkled in, so that every coder
    (const/rANS/zstd/CM), not only 'raw', sees NaN payloads and infinities."""
    rng = np.random.default_rng(seed)
    dt = DTYPES[name]
    if name in FLOAT_DTYPES:
        a = (rng.standard_normal(n) * 0.02).astype(np.float32).astype(dt)
        edges = float_edge_patterns(name, exhaustive=False)
    elif name == "BOOL":
        return rng.random(n) < 0.1
    else:
        a = rng.integers(-3 if np.iinfo(dt).min < 0 else 0, 50, n).astype(dt)
        edges = edge_values(name)
    pos = rng.choice(n, size=min(n, 64), replace=False)
    a[pos] = np.resize(edges, len(pos))
    return a


def cases(name: str):
    dt = DTYPES[name]
    yield "edges", edge_values(name)
    yield "empty", np.zeros((0,), dt)
    yield "empty2d", np.zeros((3, 0), dt)
    yield "scalar", edge_values(name)[-1].reshape(())  # NaN with payload for floats
    yield "one", edge_values(name)[2:3]
    yield "seven", weightlike(name, 7, seed=1)
    yield "const", np.full((33, 31), edge_values(name)[1], dt)
    yield "random_bits_2d", random_bits(dt, (17, 29), seed=3)
    yield "weightlike_2d", weightlike(name, 64 * 96, seed=4).reshape(64, 96)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", list(DTYPES))
def test_compress_roundtrip_every_dtype(name, level):
    for label, a in cases(name):
        blob = weightzip.compress(a, level=level)
        assert isinstance(blob, bytes)
        got = weightzip.decompress(blob)
        assert got.dtype == a.dtype and got.shape == a.shape, label
        assert raw(got) == raw(a), f"{name}/{level}/{label}: bits differ"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", list(DTYPES))
def test_compress_crosses_chunk_boundaries(name, level):
    # 1_048_577 elements: every dtype spans > 1 MiB chunk, so the last chunk is a stub.
    a = weightlike(name, 1_048_577, seed=5)
    got = weightzip.decompress(weightzip.compress(a, level=level))
    assert got.shape == a.shape and got.dtype == a.dtype
    assert sha256_bytes(got.view(np.uint8)) == sha256_bytes(a.view(np.uint8))


@pytest.mark.parametrize("level", LEVELS)
def test_compress_bytes_like(level):
    data = bytes(range(256)) * 4099 + b"tail"
    for kind in (bytes, bytearray, memoryview):
        out = weightzip.decompress(weightzip.compress(kind(data), level=level))
        assert type(out) is bytes and out == data
    assert weightzip.decompress(weightzip.compress(b"", level=level)) == b""
    blob = weightzip.compress(edge_values("F32"), level=level)
    for view in (bytearray(blob), memoryview(blob), np.frombuffer(blob, np.uint8)):
        assert raw(weightzip.decompress(view)) == raw(edge_values("F32"))


def test_compress_noncontiguous_and_torch_inputs():
    import torch
    a = np.arange(240, dtype=np.float32).reshape(12, 20)
    for v in (a[:, ::3], a.T, np.asfortranarray(a)):
        got = weightzip.decompress(weightzip.compress(v))
        assert got.shape == v.shape and np.array_equal(got, v)
    t = torch.randn(5, 6).to(torch.bfloat16)
    got = weightzip.decompress(weightzip.compress(t))
    assert got.dtype == np.dtype(ml_dtypes.bfloat16) and got.shape == (5, 6)
    assert raw(got) == t.view(torch.int16).numpy().tobytes()


def test_clean_bf16_in_fp32_compresses_to_about_half():
    rng = np.random.default_rng(0)
    b16 = (rng.standard_normal(1 << 18) * 0.05).astype(ml_dtypes.bfloat16)
    f32 = b16.astype(np.float32)
    assert not (f32.view(np.uint32) & 0xFFFF).any()  # low 16 bits are zero
    for level in LEVELS:
        c32 = weightzip.compress(f32, level=level)
        c16 = weightzip.compress(b16, level=level)
        assert len(c32) <= 0.5 * f32.nbytes, (level, len(c32) / f32.nbytes)
        # the two zero planes cost (almost) nothing: same size as coding the bf16 itself
        assert abs(len(c32) - len(c16)) <= 0.01 * len(c16) + 1024, (level, len(c32), len(c16))
        assert raw(weightzip.decompress(c32)) == raw(f32)


def test_trained_like_weights_compress():
    """Float weights with a narrow exponent range must beat raw storage at every level."""
    w = (np.random.default_rng(1).standard_normal(1 << 18) * 0.02).astype(np.float32)
    sizes = {lv: len(weightzip.compress(w, level=lv)) for lv in LEVELS}
    assert all(s < 0.9 * w.nbytes for s in sizes.values()), sizes
    assert sizes["max"] <= sizes["default"] * 1.001 + 64, sizes


def all_dtype_tensors() -> dict[str, np.ndarray]:
    t = {}
    for name in DTYPES:
        for label, a in cases(name):
            t[f"{name}.{label}"] = a
    return t


@pytest.mark.parametrize("level", LEVELS)
def test_save_load_open_every_dtype(tmp_path, level):
    tensors = all_dtype_tensors()
    path = weightzip.save(tensors, tmp_path / "all.wz", level=level, metadata={"k": "v", "n": "1"})
    loaded = weightzip.load(path)
    assert list(loaded) == list(tensors)
    for k, a in tensors.items():
        assert_same_array(loaded[k], a)
    with weightzip.open(path) as f:
        assert f.keys() == list(tensors) and len(f) == len(tensors)
        assert "F32.edges" in f and "nope" not in f
        assert f.metadata() == {"k": "v", "n": "1"}
        for k in ("BF16.edges", "F64.scalar", "U8.empty2d", "F8_E4M3.weightlike_2d"):
            assert_same_array(f.get_tensor(k), tensors[k])
        with pytest.raises(KeyError):
            f.get_tensor("nope")
    assert weightzip.verify(path).startswith("OK")


def test_saved_file_unpacks_to_valid_safetensors(tmp_path):
    import torch
    from safetensors.torch import load_file
    tensors = all_dtype_tensors()
    p = weightzip.save(tensors, tmp_path / "all.wz", metadata={"who": "test"})
    st = weightzip.unpack(p, tmp_path / "all.safetensors")
    from safetensors import safe_open
    with safe_open(str(st), "pt") as f:
        assert f.metadata() == {"who": "test"}
    got = load_file(str(st))
    assert set(got) == set(tensors)
    for k, a in tensors.items():
        t = got[k]
        assert tuple(t.shape) == a.shape and str(t.dtype) == "torch." + weightzip.dtypes.from_numpy(a.dtype).torch
        assert t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() == raw(a), k


def test_load_torch_framework(tmp_path):
    import torch
    tensors = {"a": edge_values("BF16"), "b": edge_values("F8_E5M2"), "c": np.zeros((2, 0), np.uint8),
               "d": np.array(True), "e": edge_values("F64").reshape(4, 5)}
    p = weightzip.save(tensors, tmp_path / "t.wz")
    got = weightzip.load(p, framework="torch")
    assert got["a"].dtype == torch.bfloat16 and got["b"].dtype == torch.float8_e5m2
    assert got["c"].shape == (2, 0) and got["d"].shape == () and got["d"].dtype == torch.bool
    assert got["e"].dtype == torch.float64 and got["e"].shape == (4, 5)
    for k, a in tensors.items():
        assert got[k].reshape(-1).view(torch.uint8).numpy().tobytes() == raw(a)
    with weightzip.open(p, framework="torch") as f:
        assert f.get_tensor("a").dtype == torch.bfloat16


def test_load_torch_framework_empty_wide_tensor(tmp_path):
    import torch
    p = weightzip.save({"w": np.zeros((0, 4), np.float32)}, tmp_path / "e.wz")
    got = weightzip.load(p, framework="torch")
    assert got["w"].dtype == torch.float32 and got["w"].shape == (0, 4)


def test_random_access_decodes_only_the_requested_tensor(tmp_path):
    from wz_helpers import read_index
    rng = np.random.default_rng(3)
    tensors = {f"t{i}": rng.standard_normal((128, 257)).astype(np.float32) for i in range(4)}
    p = weightzip.save(tensors, tmp_path / "ra.wz")
    with weightzip.open(p) as f:
        assert_same_array(f.get_tensor("t2"), tensors["t2"])
    # Corrupt the payload of t1 only: t0/t2/t3 still decode, t1 raises.
    blob = bytearray(p.read_bytes())
    index, table = read_index(bytes(blob), entries_form=True)
    recs = np.frombuffer(table, [("csize", "<u4"), ("hash", "<u4")])
    offsets = 16 + np.concatenate([[0], np.cumsum(recs["csize"].astype(np.int64))])
    e1 = next(e for e in index["entries"] if e.get("name") == "t1")
    start = offsets[e1["chunks"][0]]
    blob[start + recs["csize"][e1["chunks"][0]] // 2] ^= 0x10
    p.write_bytes(bytes(blob))
    with weightzip.open(p) as f:
        for k in ("t0", "t2", "t3"):
            assert_same_array(f.get_tensor(k), tensors[k])
        with pytest.raises(weightzip.FormatError):
            f.get_tensor("t1")


def test_wzfile_closes(tmp_path):
    p = weightzip.save({"x": np.ones(3, np.float32)}, tmp_path / "x.wz")
    with weightzip.open(p) as f:
        pass
    with pytest.raises(ValueError):  # reading a closed file
        f.get_tensor("x")


def test_threads_do_not_change_output(tmp_path):
    a = weightlike("F32", 3 * (1 << 20) + 5, seed=9)  # 12 MiB: several chunks
    for level in ("fast", "default"):
        one = weightzip.compress(a, level=level, threads=1)
        two = weightzip.compress(a, level=level, threads=2)
        assert one == two, level
        assert raw(weightzip.decompress(one, threads=2)) == raw(a)
    b = weightlike("BF16", 1 << 20, seed=2)
    assert weightzip.compress(b, level="max", threads=1) == weightzip.compress(b, level="max", threads=2)


def test_decoding_in_another_process_gives_same_bytes(tmp_path):
    a = weightlike("BF16", (1 << 20) + 3, seed=11)
    blob = weightzip.compress(a, level="default")
    (tmp_path / "a.wz").write_bytes(blob)
    code = f"""
        import hashlib, sys, numpy as np, weightzip
        blob = open({str(tmp_path / 'a.wz')!r}, 'rb').read()
        out = weightzip.decompress(blob, threads=1)
        print(hashlib.sha256(out.view(np.uint8).tobytes()).hexdigest())
        a = out.astype(out.dtype)
        print(hashlib.sha256(weightzip.compress(a, level='default', threads=2)).hexdigest())
    """
    r = run_python(code, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    dec_hash, enc_hash = r.stdout.decode().split()
    assert dec_hash == hashlib.sha256(raw(a)).hexdigest()
    assert enc_hash == hashlib.sha256(blob).hexdigest()  # encoding is deterministic too


def test_bad_arguments():
    with pytest.raises(ValueError):
        weightzip.compress(np.zeros(3, np.float32), level="ultra")
    with pytest.raises(ValueError):
        weightzip.compress(np.zeros(3, np.complex64))
    with pytest.raises(ValueError):
        weightzip.compress(np.zeros(3, ">f4"))  # big-endian: not a supported dtype
    with pytest.raises(weightzip.FormatError):
        weightzip.decompress(b"")


def test_join_bytes_concatenates_any_contiguous_buffers_exactly():
    from weightzip import _C

    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (5 << 20) + 3, dtype=np.uint8)  # spans whole huge pages
    parts = [b"", b"abc", memoryview(b"xyz")[1:], big, bytearray(b"\x00\xff"), np.arange(7, dtype=np.uint16)]
    want = b"".join(bytes(memoryview(p).cast("B")) for p in parts)
    got = _C.join_bytes(parts)
    assert type(got) is bytes and got == want
    assert _C.join_bytes([]) == b""
    with pytest.raises((ValueError, BufferError, TypeError)):
        _C.join_bytes([np.arange(10, dtype=np.uint8)[::2]])  # not contiguous
    with pytest.raises(TypeError):
        _C.join_bytes([b"ok", 3])


def test_slabs_from_file_reads_ahead_exactly_and_fails_cleanly():
    import io

    from weightzip.errors import FormatError
    from weightzip.slabs import slabs_from_file

    data = np.random.default_rng(3).integers(0, 256, 256_003, dtype=np.uint8).tobytes()
    for size in (10_000, 256_003, 1 << 20):  # several slabs (read ahead), exactly one, one short
        f = io.BytesIO(data + b"tail")
        assert b"".join(bytes(v) for v in slabs_from_file(f, len(data), size=size)) == data
        assert f.read() == b"tail"  # stopped exactly at the end of the tensor
    assert list(slabs_from_file(io.BytesIO(b""), 0)) == []
    with pytest.raises(FormatError, match="shorter"):
        for _ in slabs_from_file(io.BytesIO(data[:55_555]), len(data), size=10_000):
            pass
    f = io.BytesIO(data)
    g = slabs_from_file(f, len(data), size=10_000)
    first = bytes(next(g))
    g.close()  # abandoned: the read in flight (if any) is finished or cancelled, no thread left
    assert first == data[:10_000] and f.tell() in (10_000, 20_000)


@pytest.mark.parametrize("level", ["fast", "default"])
def test_small_chunks_code_skewed_streams_and_store_random_ones(level):
    """A 4 KiB FP32 chunk: the exponent plane (skewed) is rANS-coded, the two low mantissa
    planes (random) stay raw; random bytes are stored whole. The encoder skips rANS's model
    search where the order-0 floor rules it out (chunk.cpp): this pins where that floor lies."""
    from weightzip import _C
    from weightzip.dtypes import BY_NAME
    from weightzip.levels import LEVELS as CODES

    f32 = BY_NAME["F32"]
    w = (np.random.default_rng(1).standard_normal(1024) * 0.02).astype(np.float32)
    payload, _ = _C.encode_chunks(w.view(np.uint8), 4, f32.transform, 1 << 20, CODES[level], 0, 1)
    methods = bytes(payload[:4])
    assert methods[0] == 2 and methods[2] == methods[3] == 0, methods  # rans; raw, raw
    noise = np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8)
    payload, _ = _C.encode_chunks(noise, 4, f32.transform, 1 << 20, CODES[level], 0, 1)
    assert payload[0] == 0xFF and len(payload) == 4097
    for data in (w.view(np.uint8), noise):
        out = weightzip.decompress(weightzip.compress(data.view(np.float32), level=level))
        assert raw(out) == raw(data.view(np.float32))
