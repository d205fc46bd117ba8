"""weightzip.core: the indexed-CDF rANS coder (CompressAI conventions).

Round trips over many table shapes, the escape path up to the int32 limits, compression
within ~1% of the information content, corrupt / truncated payloads (FormatError or other
symbols, never a crash), table and argument validation, and, when compressai is installed,
byte-exact agreement with compressai.ans on real GaussianConditional / EntropyBottleneck tables.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from weightzip.core import PRECISION, decode_indexed, encode_indexed
from weightzip.errors import FormatError

TOTAL = 1 << PRECISION
INTERLEAVE_MIN = 1 << 16  # streams this long use 4 rANS states (see csrc/rans_indexed.hpp)
I32 = np.iinfo(np.int32)


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """A strictly increasing 16-bit CDF (len(pmf) + 1 entries) from a pmf; every freq >= 1."""
    pmf = np.asarray(pmf, np.float64)
    freq = 1 + np.floor(pmf / pmf.sum() * (TOTAL - len(pmf))).astype(np.int64)
    freq[np.argmax(freq)] += TOTAL - freq.sum()
    assert freq.min() >= 1
    return np.concatenate([[0], np.cumsum(freq)]).astype(np.int32)


def make_tables(pmfs: list[np.ndarray], offsets, pad: int = 0):
    """Pack CDFs built from pmfs (the escape symbol's mass last) CompressAI-style."""
    cdf_rows = [quantize_pmf(p) for p in pmfs]
    max_len = max(len(r) for r in cdf_rows) + pad
    cdfs = np.zeros((len(cdf_rows), max_len), np.int32)
    for k, r in enumerate(cdf_rows):
        cdfs[k, : len(r)] = r
    lengths = np.array([len(r) for r in cdf_rows], np.int32)
    return cdfs, lengths, np.asarray(offsets, np.int32)


def random_tables(rng: np.random.Generator, n_cdfs: int, max_symbols: int):
    pmfs = []
    for _ in range(n_cdfs):
        m = int(rng.integers(2, max_symbols + 1))  # symbols including the escape symbol
        alpha = float(rng.choice([0.05, 0.5, 5.0]))
        pmfs.append(rng.dirichlet(np.full(m, alpha)))
    offsets = rng.integers(-50, 50, n_cdfs)
    return make_tables(pmfs, offsets, pad=int(rng.integers(0, 4)))


def sample(rng, cdfs, lengths, offsets, n, escape_rate=0.0, indexes=None):
    """Symbols drawn from the tables' own distributions (escape symbol excluded)."""
    if indexes is None:
        indexes = rng.integers(0, len(lengths), n).astype(np.int32)
    u = rng.integers(0, TOTAL, n)
    sym = np.empty(n, np.int64)
    for k in range(len(lengths)):
        at = indexes == k
        v = np.searchsorted(cdfs[k, : lengths[k]], u[at], side="right") - 1
        sym[at] = np.minimum(v, lengths[k] - 3) + np.int64(offsets[k])
    if escape_rate:
        esc = rng.random(n) < escape_rate
        big = rng.integers(-(2**20), 2**20, n)
        sym[esc] = big[esc]
    return sym.astype(np.int32), indexes


def gaussian_tables(scales, tail=1e-9):
    """GaussianConditional-like tables (centred discretized Gaussians plus a tail symbol)."""
    pmfs, offsets = [], []
    for s in scales:
        m = math.ceil(s * 6.1)
        x = np.arange(-m, m + 1)
        cdf = 0.5 * (1 + np.vectorize(math.erf)((x + 0.5) / (s * math.sqrt(2))))
        pmf = np.diff(np.concatenate([[0.0], cdf]))
        pmfs.append(np.append(pmf, max(tail, 1 - pmf.sum())))
        offsets.append(-m)
    return make_tables(pmfs, offsets)


def ideal_bytes(symbols, indexes, cdfs, lengths, offsets) -> float:
    v = symbols.astype(np.int64) - offsets[indexes]
    freq = cdfs[indexes, v + 1] - cdfs[indexes, v]
    return float(-np.log2(freq / TOTAL).sum() / 8)


# ---------------------------------------------------------------------------- round trips

def test_roundtrip_random_tables():
    rng = np.random.default_rng(1)
    for trial in range(60):
        n_cdfs = int(rng.integers(1, 20))
        tables = random_tables(rng, n_cdfs, int(rng.choice([2, 3, 10, 300])))
        n = int(rng.choice([0, 1, 2, 7, 100, 1000]))
        sym, idx = sample(rng, *tables, n, escape_rate=float(rng.choice([0, 0.01, 0.5])))
        shape = (n,) if trial % 2 else (1, n, 1)
        data = encode_indexed(sym.reshape(shape), idx.reshape(shape), *tables)
        assert isinstance(data, bytes)
        out = decode_indexed(data, idx.reshape(shape), *tables)
        assert out.dtype == np.int32 and out.shape == shape
        np.testing.assert_array_equal(out.reshape(-1), sym)


@pytest.mark.parametrize("n", [INTERLEAVE_MIN - 1, INTERLEAVE_MIN, 200_003])
def test_roundtrip_long_streams(n):
    rng = np.random.default_rng(n)
    tables = gaussian_tables(np.exp(np.linspace(math.log(0.11), math.log(256), 16)))
    idx = rng.integers(0, 16, n).astype(np.int32)
    scales = np.exp(np.linspace(math.log(0.11), math.log(256), 16))
    sym = np.round(rng.standard_normal(n) * scales[idx] * 1.5).astype(np.int32)  # some escapes
    data = encode_indexed(sym, idx, *tables)
    assert len(data) % 4 == 0
    np.testing.assert_array_equal(decode_indexed(data, idx, *tables), sym)


def test_escape_extremes():
    rng = np.random.default_rng(2)
    cdfs, lengths, _ = make_tables([np.array([0.3, 0.3, 0.3, 0.1]), np.array([0.9, 0.1])],
                                   [0, 0])
    values = [I32.min, I32.min + 1, -(2**30), -(2**30) - 1, -1, 0, 1, 2, 3, 4, 2**30, 2**30 + 7,
              I32.max - 1, I32.max]
    for off in [0, 5, -7, I32.min, I32.max, 2**30, -(2**30)]:
        offsets = np.array([off, -off if off != I32.min else I32.max], np.int32)
        sym = np.array(values * 2, np.int32)
        idx = np.repeat(np.arange(2, dtype=np.int32), len(values))
        perm = rng.permutation(len(sym))
        sym, idx = sym[perm], idx[perm]
        data = encode_indexed(sym, idx, cdfs, lengths, offsets)
        np.testing.assert_array_equal(decode_indexed(data, idx, cdfs, lengths, offsets), sym)
    # random full-range values
    sym = rng.integers(I32.min, I32.max, 5000, endpoint=True).astype(np.int32)
    idx = rng.integers(0, 2, 5000).astype(np.int32)
    offsets = rng.integers(I32.min, I32.max, 2, endpoint=True).astype(np.int32)
    data = encode_indexed(sym, idx, cdfs, lengths, offsets)
    assert len(data) < 5000 * 6.5  # escape symbol + 1 + at most 9 digits of 4 bits
    np.testing.assert_array_equal(decode_indexed(data, idx, cdfs, lengths, offsets), sym)


def test_empty_and_single():
    tables = make_tables([np.array([0.5, 0.4, 0.1])], [0])
    data = encode_indexed([], [], *tables)
    assert data == (1 << 31).to_bytes(8, "little")  # the initial state, as CompressAI writes it
    out = decode_indexed(data, np.zeros((0, 3), np.int32), *tables)
    assert out.shape == (0, 3) and out.dtype == np.int32
    with pytest.raises(FormatError):
        decode_indexed(b"", [], *tables)
    for s in [-3, 0, 1, 2, 100]:
        data = encode_indexed([s], [0], *tables)
        assert decode_indexed(data, [0], *tables).tolist() == [s]
    # 2-D symbols keep their shape
    sym = np.array([[0, 1], [1, 0]], np.int32)
    idx = np.zeros((2, 2), np.int32)
    np.testing.assert_array_equal(decode_indexed(encode_indexed(sym, idx, *tables), idx, *tables),
                                  sym)


@pytest.mark.parametrize("n", [5000, 300_000])
def test_size_close_to_information_content(n):
    rng = np.random.default_rng(3)
    scales = np.exp(np.linspace(math.log(0.11), math.log(64), 24))
    tables = gaussian_tables(scales)
    sym, idx = sample(rng, *tables, n)
    data = encode_indexed(sym, idx, *tables)
    ideal = ideal_bytes(sym, idx, *tables)
    assert len(data) <= ideal * 1.01 + 40, (len(data), ideal)
    assert len(data) >= ideal - 1


def test_deterministic_and_dtype_independent():
    rng = np.random.default_rng(4)
    tables = random_tables(rng, 5, 40)
    sym, idx = sample(rng, *tables, 3000, escape_rate=0.05)
    a = encode_indexed(sym, idx, *tables)
    assert encode_indexed(sym.copy(), idx.copy(), *tables) == a
    assert encode_indexed(sym.astype(np.int64), idx.astype(np.uint16),
                          *(t.astype(np.int64) for t in tables)) == a
    assert encode_indexed(sym.tolist(), idx.tolist(), *(t.tolist() for t in tables)) == a
    # bytes-likes and uint8 arrays decode alike
    for blob in (a, bytearray(a), memoryview(a), np.frombuffer(a, np.uint8)):
        np.testing.assert_array_equal(decode_indexed(blob, idx, *tables), sym)


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    tables = random_tables(rng, 4, 20)
    sym, idx = sample(rng, *tables, 500, escape_rate=0.1)
    ref = encode_indexed(sym, idx, *tables)
    tt = [torch.from_numpy(t) for t in tables]
    data = encode_indexed(torch.from_numpy(sym).view(20, 25), torch.from_numpy(idx).view(20, 25),
                          *tt)
    assert data == ref
    out = decode_indexed(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                         torch.from_numpy(idx).view(20, 25), *tt)
    assert isinstance(out, np.ndarray) and out.shape == (20, 25)
    np.testing.assert_array_equal(out.reshape(-1), sym)


def test_module_does_not_import_torch():
    code = "import sys, weightzip.core; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- corruption

def _check_corrupt(blob: bytes, idx, tables) -> bool:
    """Decode a corrupt payload: FormatError or an int32 array of the right shape."""
    try:
        out = decode_indexed(blob, idx, *tables)
    except FormatError:
        return True
    assert out.shape == idx.shape and out.dtype == np.int32
    return False


@pytest.mark.parametrize("n", [2000, INTERLEAVE_MIN + 10])
def test_corrupt_payloads(n):
    rng = np.random.default_rng(6)
    tables = random_tables(rng, 8, 60)
    sym, idx = sample(rng, *tables, n, escape_rate=0.05)
    data = encode_indexed(sym, idx, *tables)
    rounds = 300 if n < INTERLEAVE_MIN else 40
    # truncations (always rejected: the stream is not consumed to the initial state)
    cuts = set(rng.integers(0, len(data), rounds // 3).tolist()) | {0, 1, 7, 8, 9, len(data) - 1}
    for cut in sorted(cuts):
        with pytest.raises(FormatError):
            decode_indexed(data[:cut], idx, *tables)
    # appended bytes / words
    for extra in (b"\0", b"\0" * 4, data[-4:]):
        with pytest.raises(FormatError):
            decode_indexed(data + extra, idx, *tables)
    # byte flips and random bytes over a region
    rejected = 0
    for _ in range(rounds):
        b = bytearray(data)
        for pos in rng.integers(0, len(b), int(rng.integers(1, 4))):
            b[pos] ^= int(rng.integers(1, 256))
        rejected += _check_corrupt(bytes(b), idx, tables)
    for _ in range(rounds // 3):
        b = bytearray(data)
        start = int(rng.integers(0, len(b)))
        stop = min(len(b), start + int(rng.integers(1, 64)))
        b[start:stop] = rng.integers(0, 256, stop - start, dtype=np.uint8).tobytes()
        rejected += _check_corrupt(bytes(b), idx, tables)
    assert rejected > 0.9 * (rounds + rounds // 3)  # the end-state check catches nearly all
    # wholly random payloads, any length
    for size in list(range(40)) + [100, 1001, len(data)]:
        junk = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        _check_corrupt(junk, idx, tables)


def test_corrupt_escape_digits_are_bounded():
    # A stream whose state makes every symbol the escape symbol with the longest digit counts.
    tables = make_tables([np.array([0.001, 0.999])], [0])  # escape symbol is almost certain
    idx = np.zeros(1000, np.int32)
    rng = np.random.default_rng(7)
    for _ in range(200):
        junk = rng.integers(0, 256, int(rng.integers(8, 400)), dtype=np.uint8).tobytes()
        _check_corrupt(junk, idx, tables)


# ---------------------------------------------------------------------------- validation

def _good():
    return make_tables([np.array([0.2, 0.5, 0.2, 0.1]), np.array([0.6, 0.3, 0.1])], [-1, 0],
                       pad=2)


@pytest.mark.parametrize("breakage", [
    "first_nonzero", "last_not_total", "zero_freq", "decreasing", "len_too_short",
    "len_too_long", "len_negative", "over_total"])
def test_bad_tables_raise_value_error(breakage):
    cdfs, lengths, offsets = _good()
    L = int(lengths[0])
    if breakage == "first_nonzero":
        cdfs[0, 0] = 1
    elif breakage == "last_not_total":
        cdfs[1, lengths[1] - 1] = TOTAL - 1
    elif breakage == "zero_freq":
        cdfs[0, 2] = cdfs[0, 1]
    elif breakage == "decreasing":
        cdfs[0, 2] = cdfs[0, 1] - 1
    elif breakage == "len_too_short":
        lengths[1] = 2
    elif breakage == "len_too_long":
        lengths[0] = cdfs.shape[1] + 1
    elif breakage == "len_negative":
        lengths[0] = -5
    elif breakage == "over_total":
        cdfs[0, L - 2] = TOTAL + 5
    sym, idx = np.array([0, 1, 5], np.int32), np.array([0, 1, 1], np.int32)
    with pytest.raises(ValueError) as e:
        encode_indexed(sym, idx, cdfs, lengths, offsets)
    assert not isinstance(e.value, FormatError)
    with pytest.raises(ValueError):
        decode_indexed(b"\0" * 8, idx, cdfs, lengths, offsets)


def test_bad_arguments():
    cdfs, lengths, offsets = _good()
    good = encode_indexed([0, 1], [0, 1], cdfs, lengths, offsets)
    for bad_idx in ([0, 2], [-1, 0], [0, I32.max]):
        with pytest.raises(ValueError, match="out of range"):
            encode_indexed([0, 1], bad_idx, cdfs, lengths, offsets)
        with pytest.raises(ValueError, match="out of range"):
            decode_indexed(good, bad_idx, cdfs, lengths, offsets)
    with pytest.raises(ValueError, match="same shape"):
        encode_indexed([0, 1, 2], [0, 1], cdfs, lengths, offsets)
    with pytest.raises(ValueError, match="int32"):
        encode_indexed(np.array([2**40, 0]), [0, 1], cdfs, lengths, offsets)
    with pytest.raises(TypeError):
        encode_indexed(np.array([0.0, 1.0]), [0, 1], cdfs, lengths, offsets)
    with pytest.raises(TypeError):
        encode_indexed([0, 1], [0, 1], cdfs.astype(np.float32), lengths, offsets)
    with pytest.raises(ValueError, match="2-D"):
        encode_indexed([0, 1], [0, 1], cdfs[0], lengths, offsets)
    with pytest.raises(ValueError, match="one entry"):
        encode_indexed([0, 1], [0, 1], cdfs, lengths[:1], offsets)
    with pytest.raises(ValueError, match="one entry"):
        decode_indexed(good, [0, 1], cdfs, lengths, offsets[:1])
    with pytest.raises(TypeError):
        decode_indexed(good.decode("latin-1"), [0, 1], cdfs, lengths, offsets)
    with pytest.raises(TypeError):
        decode_indexed(np.zeros(8, np.int16), [0, 1], cdfs, lengths, offsets)
    # no tables at all: fine for no symbols, out of range for any symbol
    empty = (np.zeros((0, 3), np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32))
    assert decode_indexed(encode_indexed([], [], *empty), [], *empty).size == 0
    with pytest.raises(ValueError, match="out of range"):
        encode_indexed([0], [0], *empty)


# ---------------------------------------------------------------------------- CompressAI

def _compressai_tables(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (model._quantized_cdf.numpy(), model._cdf_length.numpy().reshape(-1),
            model._offset.numpy().reshape(-1))


def test_compressai_gaussian_conditional():
    pytest.importorskip("compressai")
    torch = pytest.importorskip("torch")
    from compressai.ans import RansDecoder, RansEncoder
    from compressai.entropy_models import GaussianConditional

    scale_table = torch.exp(torch.linspace(math.log(0.11), math.log(256), 64))
    gc = GaussianConditional(scale_table.tolist())
    gc.update_scale_table(scale_table)
    gc.update()
    cdfs, lengths, offsets = _compressai_tables(gc)
    torch.manual_seed(0)
    for n in (3000, INTERLEAVE_MIN + 5000):
        scales = torch.exp(torch.empty(n).uniform_(math.log(0.05), math.log(300)))
        idx = gc.build_indexes(scales).to(torch.int32)
        sym = gc.quantize(torch.randn(n) * scales, "symbols").to(torch.int32)
        # escapes (CompressAI's own coder loops forever on values near 2**30: keep them small)
        sym[:4] = torch.tensor([2**20, -(2**20), 5000, -5000], dtype=torch.int32)
        data = encode_indexed(sym, idx, gc._quantized_cdf, gc._cdf_length, gc._offset)
        np.testing.assert_array_equal(decode_indexed(data, idx, cdfs, lengths, offsets),
                                      sym.numpy())
        args = (idx.tolist(), cdfs.tolist(), lengths.tolist(), offsets.tolist())
        theirs = RansEncoder().encode_with_indexes(sym.tolist(), *args)
        assert len(data) <= len(theirs) * 1.01 + 32
        if n < INTERLEAVE_MIN:  # one state: the same bytes, and each decoder reads the other's
            assert data == theirs
            assert RansDecoder().decode_with_indexes(data, *args) == sym.tolist()
            np.testing.assert_array_equal(decode_indexed(theirs, idx, cdfs, lengths, offsets),
                                          sym.numpy())


def test_compressai_entropy_bottleneck():
    pytest.importorskip("compressai")
    torch = pytest.importorskip("torch")
    from compressai.entropy_models import EntropyBottleneck

    torch.manual_seed(1)
    eb = EntropyBottleneck(16)
    eb.update(force=True)
    x = torch.randn(2, 16, 12, 10) * 3
    x[0, 0, 0, :2] = torch.tensor([1e6, -1e6])  # escapes
    theirs = eb.compress(x)  # one string per batch element
    medians = eb._extend_ndims(eb._get_medians().detach(), 2).expand(2, -1, -1, -1)
    sym = eb.quantize(x, "symbols", medians).to(torch.int32)
    idx = eb._build_indexes(x.size()).to(torch.int32)
    cdfs, lengths, offsets = _compressai_tables(eb)
    for b in range(2):
        data = encode_indexed(sym[b], idx[b], cdfs, lengths, offsets)
        assert data == theirs[b]
        np.testing.assert_array_equal(decode_indexed(theirs[b], idx[b], cdfs, lengths, offsets),
                                      sym[b].numpy())
