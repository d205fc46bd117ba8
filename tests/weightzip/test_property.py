"""Property tests: decompress(compress(x)) is bit-identical for any dtype, shape and bit
pattern (raw bytes viewed as the dtype, so every NaN payload and denormal can appear)."""
from __future__ import annotations

import io
import os

import numpy as np
from common import raw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wz_helpers import DTYPES, LEVELS

import weightzip
from weightzip.container import Reader, Writer, slabs_of
from weightzip.dtypes import by_name

SETTINGS = settings(max_examples=int(os.environ.get("WZ_PROPERTY_EXAMPLES", 60)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

shapes = st.lists(st.integers(0, 40), min_size=0, max_size=3).map(tuple)


def as_array(name: str, shape: tuple, data: bytes) -> np.ndarray:
    dt = DTYPES[name]
    b = np.frombuffer(data, np.uint8).copy()
    if name == "BOOL":
        b &= 1  # numpy bools are 0/1
    return b.view(dt).reshape(shape)


@st.composite
def arrays(draw, max_elems: int = 4000):
    """Random dtype and shape; contents either raw random bytes (incompressible) or a few
    random bit patterns repeated (compressible, so rANS/zstd/CM paths decode them)."""
    name = draw(st.sampled_from(list(DTYPES)))
    shape = draw(shapes)
    n = int(np.prod(shape, dtype=np.int64))
    if n > max_elems:
        shape, n = (n % max_elems,), n % max_elems
    k = DTYPES[name].itemsize
    if draw(st.booleans()):
        data = draw(st.binary(min_size=n * k, max_size=n * k))
    else:
        palette = draw(st.lists(st.binary(min_size=k, max_size=k), min_size=1, max_size=4))
        seed = draw(st.integers(0, 2**32 - 1))
        p = np.random.default_rng(seed).choice(len(palette), size=n, p=_skewed(len(palette)))
        data = b"".join(palette[i] for i in p)
    return name, as_array(name, shape, data)


def _skewed(m: int) -> np.ndarray:
    w = np.array([8.0, 4.0, 2.0, 1.0][:m])
    return w / w.sum()


@SETTINGS
@given(arrays(), st.sampled_from(LEVELS))
def test_compress_roundtrip_bit_exact(case, level):
    name, a = case
    blob = weightzip.compress(a, level=level)
    got = weightzip.decompress(blob)
    assert got.dtype == a.dtype and got.shape == a.shape
    assert raw(got) == raw(a)


@SETTINGS
@given(st.binary(max_size=5000), st.sampled_from(LEVELS))
def test_compress_bytes_roundtrip(data, level):
    assert weightzip.decompress(weightzip.compress(data, level=level)) == data


@SETTINGS
@given(st.lists(arrays(max_elems=600), min_size=1, max_size=5), st.sampled_from(LEVELS))
def test_save_load_many_tensors(tmp_path_factory, cases, level):
    tensors = {f"t{i}.{name}": a for i, (name, a) in enumerate(cases)}
    path = tmp_path_factory.mktemp("prop") / "x.wz"
    weightzip.save(tensors, path, level=level)
    got = weightzip.load(path)
    assert list(got) == list(tensors)
    for k, a in tensors.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape and raw(got[k]) == raw(a)


@SETTINGS
@given(arrays(max_elems=3000), st.sampled_from(LEVELS), st.integers(1, 64))
def test_tiny_chunks_roundtrip(case, level, chunk_items):
    """Many chunks per tensor (chunk size down to one element): every chunk boundary and
    every short final chunk must decode exactly, whole and slab by slab."""
    name, a = case
    dt = by_name(weightzip.dtypes.from_numpy(a.dtype).name)
    buf = io.BytesIO()
    w = Writer(buf, level, threads=2, chunk_bytes=chunk_items * dt.itemsize, pack_small=False)
    w.add_tensor("a", dt, a.shape, slabs_of(memoryview(raw(a))))
    w.finish([], {"kind": "array"})
    r = Reader(io.BytesIO(buf.getvalue()))
    assert r.read_entry(0).tobytes() == raw(a)
    assert b"".join(bytes(s) for s in r.iter_entry(0, slab=3 * dt.itemsize * chunk_items)) == raw(a)
