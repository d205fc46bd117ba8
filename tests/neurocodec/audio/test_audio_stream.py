"""neurocodec.runtime.audio.index_model (context-modelled RVQ index streams) and
neurocodec.runtime.audio.stream (chunked encoding/decoding with constant memory and no seams).

Small codebooks and a hop-4 stand-in codec on one thread, so the file runs in seconds."""
from __future__ import annotations

import math
import time
import weakref

import numpy as np
import pytest

from neurocodec.runtime.audio.index_model import IndexPriors, fixed_length_bits
from neurocodec.runtime.audio.stream import (
    decode_stream,
    encode_all,
    encode_stream,
    iter_chunks,
)
from weightzip.core import decode_indexed, encode_indexed
from weightzip.errors import FormatError

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def walk(rng, n_q: int, F: int, K: int, sigma: float = 6.0) -> np.ndarray:
    """Markov codes: each codebook a random walk mod K with rounded-normal steps."""
    d = np.rint(rng.normal(0, sigma, (n_q, F))).astype(np.int64)
    d[:, 0] = rng.integers(0, K, n_q)
    return np.cumsum(d, 1) % K


K, NQ, F = 256, 4, 1500


@pytest.fixture(scope="module")
def markov_priors():
    rng = np.random.default_rng(1)
    return IndexPriors.fit((walk(rng, NQ, F, K) for _ in range(8)), NQ, K, n_ctx=12)


@pytest.fixture(scope="module")
def random_priors():
    rng = np.random.default_rng(2)
    return IndexPriors.fit((rng.integers(0, K, (NQ, F)) for _ in range(4)), NQ, K, n_ctx=8)


# -------------------------------------------------------------------- index model

def test_markov_round_trip_and_saving(markov_priors):
    codes = walk(np.random.default_rng(3), NQ, F, K)
    data = markov_priors.encode(codes)
    assert np.array_equal(markov_priors.decode(data, NQ, F), codes)
    fixed = fixed_length_bits(NQ, F, K)
    assert fixed == NQ * F * 8
    ideal = markov_priors.ideal_bits(codes)
    # steps of sigma 6 carry ~4.6 bits; 11 classes of ~23 codes leave ~5.6 of the 8
    assert 8 * len(data) < 0.8 * fixed
    assert ideal <= 8 * len(data) < ideal * 1.05 + 64 * 8
    for L in (1, 3, F):  # every segment length decodes, including one stream per frame
        assert np.array_equal(markov_priors.decode(markov_priors.encode(codes, L), NQ, F), codes)
    # fewer codebooks than fitted, a single frame
    assert np.array_equal(markov_priors.decode(markov_priors.encode(codes[:2]), 2, F), codes[:2])
    assert np.array_equal(markov_priors.decode(markov_priors.encode(codes[:, :1]), NQ, 1), codes[:, :1])
    assert markov_priors.encode(codes[:, :0]) == b""
    assert markov_priors.decode(b"", NQ, 0).shape == (NQ, 0)


def test_random_round_trip_costs_about_fixed_length(random_priors, markov_priors):
    rng = np.random.default_rng(4)
    codes = rng.integers(0, K, (NQ, F))
    fixed = fixed_length_bits(NQ, F, K)
    for priors in (random_priors, markov_priors):  # matched and mismatched model
        data = priors.encode(codes)
        assert np.array_equal(priors.decode(data, NQ, F), codes)
        assert 8 * len(data) <= fixed * 1.01 + 128


def test_escapes_round_trip(markov_priors):
    codes = walk(np.random.default_rng(5), NQ, 300, K)
    codes[0, 7], codes[1, 0], codes[2, 299], codes[3, 100] = -1, K, 2**31 - 1, -(2**31)
    data = markov_priors.encode(codes)
    assert np.array_equal(markov_priors.decode(data, NQ, 300), codes)
    assert markov_priors.ideal_bits(codes) <= 8 * len(data)


def test_tables_are_valid_for_the_entropy_coder(markov_priors):
    cdfs, lengths, offsets = markov_priors.to_tables()
    assert cdfs.dtype == lengths.dtype == offsets.dtype == np.int32
    assert cdfs.shape == (NQ * 12, K + 2) and (lengths == K + 2).all() and (offsets == 0).all()
    assert (cdfs[:, 0] == 0).all() and (cdfs[:, -1] == 1 << 16).all() and (np.diff(cdfs, 1) >= 1).all()
    rng = np.random.default_rng(6)
    idx = rng.integers(0, len(cdfs), 5000).astype(np.int32)
    sym = rng.integers(-3, K + 3, 5000).astype(np.int32)  # in range and escapes, every table
    assert np.array_equal(decode_indexed(encode_indexed(sym, idx, cdfs, lengths, offsets), idx,
                                         cdfs, lengths, offsets), sym)


def test_state_dict_round_trip(markov_priors, tmp_path):
    import weightzip

    sd = markov_priors.state_dict()
    assert sd["class_map"].dtype == np.int16 and sd["cdfs"].dtype == np.int32
    path = weightzip.save({f"index.{k}": v for k, v in sd.items()}, tmp_path / "p.wz")
    loaded = IndexPriors.from_state_dict({k[6:]: v for k, v in weightzip.load(path).items()})
    codes = walk(np.random.default_rng(7), NQ, 400, K)
    assert loaded.encode(codes) == markov_priors.encode(codes)
    with pytest.raises(ValueError):
        IndexPriors.from_state_dict({**sd, "class_map": np.zeros_like(sd["class_map"])})


def test_corrupt_streams_raise(markov_priors):
    codes = walk(np.random.default_rng(8), NQ, 200, K)
    data = markov_priors.encode(codes, 4)
    for bad in (data[:-4], data[:3], b"\x05" + data[1:], data + b"\0\0\0\0", b"\xff" * 8):
        with pytest.raises(FormatError):
            markov_priors.decode(bad, NQ, 200)


def test_decode_speed():
    """Real-size tables (8 x 1024, 16 contexts) on one minute of 75 Hz frames."""
    rng = np.random.default_rng(9)
    nb, KK, C, FF = 8, 1024, 16, 4500
    pmf = rng.dirichlet(np.full(KK + 1, 0.3), nb * C) + 1e-4
    freq = 1 + np.floor(pmf / pmf.sum(1, keepdims=True) * ((1 << 16) - KK - 1)).astype(np.int64)
    freq[:, 0] += (1 << 16) - freq.sum(1)
    cdfs = np.concatenate([np.zeros((nb * C, 1), np.int64), freq.cumsum(1)], 1)
    priors = IndexPriors(rng.integers(1, C, (nb, KK)), cdfs)
    codes = rng.integers(0, KK, (nb, FF))
    data = priors.encode(codes, 64)
    t = time.perf_counter()
    out = priors.decode(data, nb, FF)
    fps = FF / (time.perf_counter() - t)
    assert np.array_equal(out, codes)
    print(f"decode: {fps:.0f} frames/s ({fps / 75:.0f}x real time)")
    assert fps > 75 * 50


# -------------------------------------------------------------------- streaming

HOP = 4


def standin_encode(x: np.ndarray) -> np.ndarray:
    """[B, 1, F*HOP] -> codes [B, 2, F]: code 0 of frame f depends on frames f-1..f+1 (zero
    padded, like a 'same' conv), code 1 on frame f alone."""
    B, _, T = x.shape
    fr = x.astype(np.float64).reshape(B, T // HOP, HOP).mean(-1)
    p = np.pad(fr, ((0, 0), (1, 1)))
    c0 = np.rint((p[:, :-2] + p[:, 1:-1] + p[:, 2:]) * 1000)
    c1 = np.rint(x[:, 0, ::HOP].astype(np.float64) * 100)
    return np.stack([c0, c1], 1).astype(np.int64)


def standin_decode(codes: np.ndarray, taps=(0.25, 0.5, 0.25)) -> np.ndarray:
    """codes [B, 2, F] -> [B, 1, F*HOP]; frame f depends on codes f-r..f+r (r = len(taps)//2)."""
    r = len(taps) // 2
    p = np.pad(codes[:, 0].astype(np.float64) / 3000, ((0, 0), (r, r)))
    F = codes.shape[-1]
    sm = sum(t * p[:, i: i + F] for i, t in enumerate(taps))
    y = np.repeat(sm + codes[:, 1] / 1000, HOP, -1)
    return y[:, None].astype(np.float32)


def signal(C: int, T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 24000
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal((C, T))).astype(np.float32)


def blocks_of(x: np.ndarray, size: int):
    for i in range(0, x.shape[-1], size):
        yield x[:, i: i + size]


@pytest.mark.parametrize("T", [0, 1, 3, 4, 5, 63, 64, 65, 257, 1001, 2400])
@pytest.mark.parametrize("block", [7, 1000])
def test_standin_chunked_equals_whole(T, block):
    x = signal(2, T, seed=T)
    kw = {"chunk_frames": 16, "overlap_frames": 2}
    codes, n = encode_all(blocks_of(x, block), standin_encode, HOP, **kw)
    assert n == T
    F = -(-T // HOP)
    whole = standin_encode(np.pad(x, ((0, 0), (0, F * HOP - T)))[:, None]) if T else None
    if T:
        assert np.array_equal(codes, whole)
    out = list(decode_stream(blocks_of(codes, 5) if T else iter(()), standin_decode, HOP, T, **kw))
    y = np.concatenate(out, 1) if out else np.zeros((2, 0), np.float32)
    assert y.shape == (2, T)
    if T:  # exact: the cross-fade of identical halves is bit-exact
        assert np.array_equal(y, standin_decode(whole)[:, 0, :T])


def test_seams_with_too_little_decoder_context():
    """A decoder reaching 2 frames with 1 frame of overlap: exact away from the seams, small
    and smooth at them."""
    T, N = 3001, 32
    x = signal(1, T, seed=1)
    codes, _ = encode_all(blocks_of(x, 500), standin_encode, HOP, chunk_frames=N, overlap_frames=2)
    dec = lambda c: standin_decode(c, taps=(0.1, 0.2, 0.4, 0.2, 0.1))
    y = np.concatenate(list(decode_stream([codes], dec, HOP, T, chunk_frames=N, overlap_frames=1)), 1)
    ref = dec(codes)[:, 0, :T]
    err = np.abs(y - ref)[0]
    near = np.zeros(T, bool)
    for b in range(N * HOP, T, N * HOP):
        near[max(0, b - 2 * HOP): b + 2 * HOP] = True
    assert (err[~near] == 0).all()
    assert 0 < err.max() < 0.2 * np.abs(ref).max()  # the missing outer tap (0.1), blended


def test_real_tiny_model_chunked_matches_whole():
    from neurocodec.runtime.audio.models import AudioCodecModel, AudioModelConfig
    from neurocodec.runtime.audio.stream import model_fns

    cfg = AudioModelConfig(channels=4, strides=(2, 2), latent_dim=8, n_codebooks=4, codebook_size=16,
                           codebook_dim=4)
    model = AudioCodecModel(cfg)
    T = 2400  # 0.1 s at 24 kHz, 600 frames of hop 4; receptive field ~33 frames each side
    x = signal(1, T, seed=2)
    with torch.no_grad():  # spread the random codebooks over the latents: every code in use
        model.train()
        for _ in range(cfg.n_codebooks):
            model(torch.from_numpy(x[:, None]), cfg.n_codebooks)
            model.quantizer.restart_dead_codes(threshold=1e9)
    enc, dec = model_fns(model.eval())
    kw = {"chunk_frames": 128, "overlap_frames": 40}
    codes, n = encode_all(blocks_of(x, 333), enc, cfg.hop_length, **kw)
    whole = enc(x[:, None])
    assert n == T and codes.shape == whole.shape == (1, 4, 600)
    assert all(len(np.unique(r)) >= 8 for r in whole[0])
    assert (codes == whole).mean() > 0.995  # float noise may flip a near-tie
    no_context, _ = encode_all(blocks_of(x, 333), enc, cfg.hop_length, chunk_frames=128, overlap_frames=0)
    assert (no_context == whole).mean() < 0.95  # the overlap is what makes chunks seamless
    y = np.concatenate(list(decode_stream([whole], dec, cfg.hop_length, T - 3, **kw)), 1)
    ref = dec(whole)[:, 0, : T - 3]
    assert y.shape == (1, T - 3)
    assert np.abs(y - ref).max() < 1e-4


class Held:
    """Counts the blocks a generator made that are still alive (weak references)."""

    def __init__(self):
        self.alive = self.max_alive = self.made = 0

    def track(self, a: np.ndarray) -> np.ndarray:
        self.alive += 1
        self.made += 1
        self.max_alive = max(self.max_alive, self.alive)
        weakref.finalize(a, self._gone)
        return a

    def _gone(self):
        self.alive -= 1


def test_constant_memory_generators():
    enc_held, dec_held = Held(), Held()
    n_blocks, size, N, O = 1000, 50, 32, 4
    rng = np.random.default_rng(0)
    gen = (enc_held.track(rng.standard_normal(size).astype(np.float32)) for _ in range(n_blocks))
    codes = []
    for c in encode_stream(gen, standin_encode, HOP, chunk_frames=N, overlap_frames=O):
        codes.append(c)
        assert c.shape[-1] <= N
    window = (N + 2 * O) * HOP
    assert enc_held.made == n_blocks
    assert enc_held.max_alive <= math.ceil(window / size) + 2
    codes = np.concatenate(codes, -1)
    T = n_blocks * size
    code_blocks = (dec_held.track(codes[..., i: i + 10].copy()) for i in range(0, codes.shape[-1], 10))
    total = 0
    for y in decode_stream(code_blocks, standin_decode, HOP, T, chunk_frames=N, overlap_frames=O):
        assert y.shape[-1] <= N * HOP + HOP
        total += y.shape[-1]
    assert total == T and dec_held.made == math.ceil(codes.shape[-1] / 10)
    assert dec_held.max_alive <= math.ceil((N + 2 * O) / 10) + 2


def test_reader_objects_and_windows():
    x = signal(1, 1000)

    class Reader:
        pos = 0

        def read(self, n):
            out = x[:, self.pos: self.pos + n]
            self.pos += n
            return out

    wins = list(iter_chunks(Reader(), chunk_frames=100, overlap_frames=10, hop=HOP))
    assert [(w.start, w.own.start, w.own.stop, w.x.shape[-1]) for w in wins] == \
        [(0, 0, 100, 440), (90, 10, 110, 480), (190, 10, 60, 240)]
    assert wins[-1].n_samples == 1000
    with pytest.raises(ValueError):
        list(iter_chunks([np.zeros((1, 5)), np.zeros((2, 5))], 4, 1, HOP))
    with pytest.raises(ValueError):  # codes shorter than the signal
        list(decode_stream([np.zeros((1, 2, 3), np.int64)], standin_decode, HOP, 100, 16, 2))
