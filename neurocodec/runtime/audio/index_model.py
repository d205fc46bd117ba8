"""Entropy models for RVQ code indices: a first-order context model per codebook, coded with
weightzip.core's indexed-CDF rANS instead of fixed-length packing (log2 K bits a code).

Model: codebook k's code at frame t is coded with P_k(code | ctx), ctx = class_map[k, code of
codebook k at frame t-1], one of n_ctx - 1 learned classes; ctx 0 (START, the marginal P_k) is
used where there is no previous frame. fit() clusters the previous codes on their successor
histograms (k-means under log loss, started from frequency-rank buckets) and smooths each
class towards the marginal (Dirichlet prior, strength chosen by leave-one-out likelihood).

Stream: the C++ decoder takes all table indexes up front and a rANS stream cannot be resumed,
so the F frames are cut into segments of L frames (frame t = s * L + j) and coded as L streams:
stream j holds frame j of every segment, [segment, codebook] in C order. Decoding is L calls,
each vectorised over segments and codebooks; frame 0 of a segment uses START. A stream costs
~8 bytes, a segment loses one frame of context: encode() tries L in SEG_LENS, keeps the smallest.

  varint        L (1 <= L <= F)
  L-1 varints   byte length / 4 of streams 0 .. L-2 (rANS payloads are whole u32 words)
  ...           the L streams back to back; the last one runs to the end

Frame-varying stage counts: encode/decode/ideal_bits take an optional mask [n_q, F] (True
where a code is sent; rate control sends n_q(t) stages at frame t, see stages_per_frame()).
Masked-out codes are not coded and read as absent (-1): the next frame's code of that
codebook then uses START. The decoder recomputes the mask, so it costs no bits.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from weightzip.core import PRECISION, FormatError, decode_indexed, encode_indexed, read_varint, write_varint

TOTAL = 1 << PRECISION
START = 0  # context of a segment's first frame
SEG_LENS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BETAS = 2.0 ** np.arange(-4, 13)  # candidate Dirichlet prior strengths


def fixed_length_bits(n_q: int, F: int, codebook_size: int) -> int:
    """Bits of plain fixed-length packing: ceil(log2 K) per code."""
    return n_q * F * max(1, (codebook_size - 1).bit_length())


def stages_per_frame(e: int, F: int) -> np.ndarray:
    """n_q(t) for t < F spreading e/1024 stages per frame evenly: floor or ceil of e/1024."""
    t = np.arange(F + 1, dtype=np.int64) * int(e)
    return np.diff(t // 1024)


def stage_mask(e: int, F: int, n_q: int) -> np.ndarray:
    """[n_q, F] bool: stage k is sent at frame t iff k < n_q(t)."""
    return np.arange(n_q)[:, None] < stages_per_frame(e, F)[None, :]


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A LEB128 value of the stream header; FormatError if truncated or corrupt."""
    try:
        return read_varint(buf, pos, 1 << 40)
    except FormatError:
        raise FormatError("truncated or corrupt index stream header") from None


def _quantize(pmf: np.ndarray) -> np.ndarray:
    """[R, n] pmfs (escape last) -> [R, n + 1] 16-bit CDFs, every frequency >= 1."""
    n = pmf.shape[1]
    freq = 1 + np.floor(pmf / pmf.sum(1, keepdims=True) * (TOTAL - n)).astype(np.int64)
    freq[np.arange(len(freq)), freq.argmax(1)] += TOTAL - freq.sum(1)
    return np.concatenate([np.zeros((len(freq), 1), np.int64), freq.cumsum(1)], 1).astype(np.int32)


def _as_codes(codes, n_codebooks: int) -> np.ndarray:
    c = np.asarray(codes)
    c = c[0] if c.ndim == 3 and len(c) == 1 else c  # [1, n_q, F] as a model returns it
    if c.ndim != 2 or len(c) > n_codebooks or c.dtype.kind not in "iu":
        raise ValueError(f"codes must be integers [n_q <= {n_codebooks}, F], got {c.shape}")
    return c.astype(np.int64)


def _class_sums(assign: np.ndarray, trans: np.ndarray, C: int) -> np.ndarray:
    return np.eye(C)[assign].T @ trans  # [C, K] successor counts of each class


def _smoothed(agg: np.ndarray, marg: np.ndarray, beta: float) -> np.ndarray:
    return (agg + beta * marg) / (agg.sum(1, keepdims=True) + beta)


def _loo_beta(agg: np.ndarray, marg: np.ndarray) -> float:
    """Prior strength maximising the leave-one-out log-likelihood of the class histograms."""
    n, tot = agg.ravel(), np.repeat(agg.sum(1), agg.shape[1])
    m, nz = np.tile(marg, len(agg)), agg.ravel() > 0
    ll = [(n[nz] * np.log((n[nz] - 1 + b * m[nz]) / (tot[nz] - 1 + b))).sum() for b in BETAS]
    return float(BETAS[int(np.argmax(ll))])


def _cluster(trans: np.ndarray, marg: np.ndarray, C: int, iters: int) -> tuple[np.ndarray, float]:
    """Assign each code (row of the [K, K] transition counts) one of C classes."""
    K = len(marg)
    assign = np.empty(K, np.int64)
    assign[np.argsort(-trans.sum(1), kind="stable")] = np.arange(K) * C // K
    used = trans.sum(1) > 0
    for _ in range(iters):
        agg = _class_sums(assign, trans, C)
        cost = -trans @ np.log(_smoothed(agg, marg, _loo_beta(agg, marg))).T  # [K, C] nats
        new = np.where(used, cost.argmin(1), assign)
        for j in np.setdiff1d(np.arange(C), new):  # re-seed an empty class with the worst code
            sizes = np.bincount(new, minlength=C)
            own = np.where(used & (sizes[new] > 1), cost[np.arange(K), new], -1)
            if own.max() > 0:
                new[own.argmax()] = j
        if np.array_equal(new, assign):
            break
        assign = new
    return assign, _loo_beta(_class_sums(assign, trans, C), marg)


class IndexPriors:
    """Per-codebook context tables: class_map int16 [n_codebooks, K] (classes 1..n_ctx-1) and
    cdfs int32 [n_codebooks * n_ctx, K + 2] (table k * n_ctx + ctx; symbols 0..K-1, escape)."""

    def __init__(self, class_map: np.ndarray, cdfs: np.ndarray):
        self.class_map = np.asarray(class_map, np.int16)
        self.cdfs = np.ascontiguousarray(cdfs, np.int32)
        self.n_codebooks, self.codebook_size = self.class_map.shape
        self.n_ctx = len(self.cdfs) // max(1, self.n_codebooks)
        K = self.codebook_size
        if self.cdfs.shape != (self.n_codebooks * self.n_ctx, K + 2) or self.n_ctx < 1:
            raise ValueError(f"cdfs {self.cdfs.shape} do not fit class_map {self.class_map.shape}")
        if self.class_map.size and not 0 < self.class_map.min() <= self.class_map.max() < self.n_ctx:
            raise ValueError("class_map values must be in [1, n_ctx)")
        freq = np.diff(self.cdfs, axis=1)
        if (self.cdfs[:, 0] != 0).any() or (self.cdfs[:, -1] != TOTAL).any() or (freq < 1).any():
            raise ValueError("cdfs are not strictly increasing 16-bit CDFs")
        self._cmap = self.class_map.astype(np.int64)
        self._bits = -np.log2(freq / TOTAL)  # [n_tables, K + 1]
        self._min_bits = self._bits.min(1).reshape(self.n_codebooks, self.n_ctx).min(1)  # per codebook
        # Decoding's context lookup: _lut[k * (K + 2) + 1 + v] = table of codebook k after
        # code v (v = -1 or K: START); _lut_rows[k] = k * (K + 2) + 1.
        rows = np.arange(self.n_codebooks, dtype=np.int64)[:, None]
        lut = np.full((self.n_codebooks, K + 2), START, np.int64)
        lut[:, 1:-1] = self.class_map
        self._lut = (rows * self.n_ctx + lut).astype(np.int32).reshape(-1)
        self._lut_rows = (rows[:, 0] * (K + 2) + 1).astype(np.int32)

    @classmethod
    def fit(cls, codes_iter: Iterable, n_codebooks: int, codebook_size: int, n_ctx: int = 16,
            alpha: float = 0.5, iters: int = 20) -> IndexPriors:
        """codes_iter: int arrays [n_q, F] (n_q <= n_codebooks; values outside [0, K) are not
        counted). alpha: additive smoothing of the marginals."""
        K, nb = codebook_size, n_codebooks
        if not 2 <= n_ctx <= 1 << 15 or not 2 <= K < TOTAL // 2:
            raise ValueError("need 2 <= n_ctx <= 32768 and 2 <= codebook_size < 32768")
        trans = [np.zeros(K * K, np.int64) for _ in range(nb)]
        marg = np.zeros((nb, K), np.int64)
        for codes in codes_iter:
            for k, row in enumerate(_as_codes(codes, nb)):
                ok = (row >= 0) & (row < K)
                marg[k] += np.bincount(row[ok], minlength=K)
                pair = ok[:-1] & ok[1:]
                trans[k] += np.bincount(row[:-1][pair] * K + row[1:][pair], minlength=K * K)
        class_map = np.zeros((nb, K), np.int16)
        pmfs = np.zeros((nb, n_ctx, K + 1))  # the escape symbol's mass stays 0 (freq 1)
        for k in range(nb):
            m = (marg[k] + alpha) / (marg[k].sum() + alpha * K)
            t = trans[k].reshape(K, K).astype(np.float64)
            assign, beta = _cluster(t, m, n_ctx - 1, iters)
            class_map[k] = 1 + assign
            pmfs[k, START, :K] = m
            pmfs[k, 1:, :K] = _smoothed(_class_sums(assign, t, n_ctx - 1), m, beta)
        return cls(class_map, _quantize(pmfs.reshape(nb * n_ctx, K + 1)))

    def to_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cdfs, lengths, offsets) for weightzip.core.encode_indexed."""
        n = len(self.cdfs)
        return self.cdfs, np.full(n, self.codebook_size + 2, np.int32), np.zeros(n, np.int32)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"class_map": self.class_map.copy(), "cdfs": self.cdfs.copy()}

    @classmethod
    def from_state_dict(cls, d: dict) -> IndexPriors:
        return cls(np.asarray(d["class_map"]), np.asarray(d["cdfs"]))

    # -- coding -----------------------------------------------------------------------
    def _classes(self, prev: np.ndarray) -> np.ndarray:
        """Context of the next frame from codes prev [n_q, S] (START for out-of-range codes)."""
        K, ok = self.codebook_size, (prev >= 0) & (prev < self.codebook_size)
        ctx = np.take_along_axis(self._cmap[: len(prev)], np.clip(prev, 0, K - 1), 1)
        return np.where(ok, ctx, START)

    def _indexes(self, c: np.ndarray, seg_len: int | None) -> np.ndarray:
        """Table index of every code [n_q, F]; frames 0, L, 2L, ... use START."""
        ctx = np.full(c.shape, START, np.int64)
        ctx[:, 1:] = self._classes(c[:, :-1])
        if seg_len:
            ctx[:, ::seg_len] = START
        return np.arange(len(c))[:, None] * self.n_ctx + ctx

    def _tables(self, n_q: int):
        cdfs, lengths, offsets = self.to_tables()
        n = n_q * self.n_ctx
        return cdfs[:n], lengths[:n], offsets[:n]

    @staticmethod
    def _masked(c: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray]:
        if mask is None:
            return c, np.ones(c.shape, bool)
        mask = np.asarray(mask, bool)
        if mask.shape != c.shape:
            raise ValueError(f"mask {mask.shape} does not match codes {c.shape}")
        return np.where(mask, c, -1), mask

    def ideal_bits(self, codes, seg_len: int | None = None, mask=None) -> float:
        """Information content of codes [n_q, F] (where mask) under the quantized model
        (escapes at their bypass cost), without the per-stream overhead."""
        c, mask = self._masked(_as_codes(codes, self.n_codebooks), mask)
        idx, K = self._indexes(c, seg_len)[mask], self.codebook_size
        c = c[mask]
        ok = (c >= 0) & (c < K)
        bits = self._bits[idx, np.where(ok, c, K)].sum()
        raw = np.where(c[~ok] < 0, -2 * c[~ok] - 1, 2 * (c[~ok] - K))
        ndig = np.ceil(np.log2(raw + 1) / 4)
        return float(bits + 4 * (1 + ndig).sum())

    def _encode_seg(self, c: np.ndarray, L: int, mask: np.ndarray) -> bytes:
        idx, tables = self._indexes(c, L), self._tables(len(c))
        streams = [encode_indexed(c[:, j::L].T[mask[:, j::L].T], idx[:, j::L].T[mask[:, j::L].T], *tables)
                   for j in range(L)]
        head = write_varint(L) + b"".join(write_varint(len(s) // 4) for s in streams[:-1])
        return head + b"".join(streams)

    def encode(self, codes, seg_len: int | None = None, mask=None) -> bytes:
        """codes [n_q, F] (those where mask) -> bytes. seg_len None: the best of SEG_LENS (L <= F)."""
        c, mask = self._masked(_as_codes(codes, self.n_codebooks), mask)
        if c.size == 0:
            return b""
        cands = [seg_len] if seg_len else [L for L in SEG_LENS if L <= c.shape[1]]
        if not all(1 <= L <= c.shape[1] for L in cands):
            raise ValueError(f"seg_len must be in [1, {c.shape[1]}]")
        return min((self._encode_seg(c, L, mask) for L in cands), key=len)

    @staticmethod
    def segment_length(data: bytes) -> int:
        """The segment length L an encoded stream was written with."""
        return _read_varint(bytes(data[:8]), 0)[0] if data else 1

    def min_stream_bytes(self, n_q: int, F: int, e: int) -> int:
        """A lower bound on the size of any stream the decoder accepts for F frames of n_q
        codebooks at e (stage_mask): each code carries at least the information of its
        codebook's most probable symbol, and rANS loses under 1e-4 bit a symbol (its 64-bit
        states start at 2^31 and are flushed whole). Checked before decoding, so a short
        stream cannot make the decoder allocate codes for a long claim."""
        m0, r = divmod(int(e), 1024)
        counts = np.zeros(n_q)
        counts[: min(m0, n_q)] = F
        if m0 < n_q and r:
            counts[m0] = F * e // 1024 - m0 * F
        return int(counts @ np.maximum(self._min_bits[:n_q] - 1e-4, 0) // 8)

    def decode(self, data, n_q: int, F: int, mask=None, **kw) -> np.ndarray:
        """bytes -> codes [n_q, F] (-1 where not sent): decode_frames(...).T, a view."""
        return self.decode_frames(data, n_q, F, mask, **kw).T

    def decode_frames(self, data, n_q: int, F: int, mask=None, *, e: int | None = None,
                      dtype=np.int64) -> np.ndarray:
        """bytes -> codes [F, n_q] of dtype, -1 where not sent (mask [n_q, F], or
        stage_mask(e, F, n_q) without building it). Corrupt data, or a code dtype cannot
        hold, raises FormatError.

        Memory: the codes, plus int32 table indexes and symbols for one stream at a time
        (L = 1: the whole channel); no int64 temporaries of the codes' size."""
        if not 0 <= n_q <= self.n_codebooks or F < 0:
            raise ValueError(f"n_q must be in [0, {self.n_codebooks}] and F >= 0")
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.shape != (n_q, F):
                raise ValueError(f"mask {mask.shape} does not match ({n_q}, {F})")
        buf = memoryview(bytes(data))
        if n_q * F == 0:
            if len(buf):
                raise FormatError("index stream has trailing data")
            return np.full((F, n_q), -1, dtype)
        L, pos = _read_varint(buf, 0)
        if not 1 <= L <= F:
            raise FormatError(f"corrupt index stream (segment length {L} for {F} frames)")
        bounds = [0]
        for _ in range(L - 1):
            n, pos = _read_varint(buf, pos)
            bounds.append(bounds[-1] + 4 * n)
        bounds = [pos + b for b in bounds] + [len(buf)]
        if bounds[-2] > len(buf):
            raise FormatError("truncated index stream")
        tables, lim, out = self._tables(n_q), np.iinfo(dtype), None
        for j in range(L):
            S = -(-(F - j) // L)  # segments that have a frame j
            sent = _sent(mask, e, j, L, S, n_q)
            k = sent if isinstance(sent, int) else n_q  # codebooks to look at
            if j:
                idx = self._next_indexes(out[j - 1::L][:S, :k])
            else:
                idx = np.broadcast_to(self._lut[self._lut_rows[:k] - 1], (S, k))  # START
            idx = np.ascontiguousarray(idx) if isinstance(sent, int) else idx[sent]
            sym = decode_indexed(buf[bounds[j]:bounds[j + 1]], idx, *tables)
            del idx
            if sym.size and (sym.min() < lim.min or sym.max() > lim.max):
                raise FormatError(f"index stream holds codes outside {np.dtype(dtype).name}")
            if out is None:  # only now: with L = 1, stream 0's indexes are the channel's size
                out = np.full((F, n_q), -1, dtype)
            rows = out[j::L]  # [S, n_q], a view
            if isinstance(sent, int):
                rows[:, :k] = sym.reshape(S, k)
            else:
                rows[sent] = sym
        return out

    def _next_indexes(self, prev: np.ndarray) -> np.ndarray:
        """int32 table index of each code after the codes prev [S, k] (one frame of each
        segment; START for absent or out-of-range codes), as _indexes() computes it."""
        pos = prev.astype(np.int32)  # decoded symbols are int32
        np.clip(pos, -1, self.codebook_size, out=pos)
        pos += self._lut_rows[: prev.shape[1]]
        return self._lut.take(pos)


def _sent(mask, e: int | None, j: int, L: int, S: int, n_q: int) -> np.ndarray | int:
    """Which codes of stream j (frames j, j + L, ...: S of them) are sent: bool [S, n_q], or
    an int k when every frame sends stages 0..k-1."""
    if mask is not None:
        return mask[:, j::L].T
    if e is None:
        return n_q
    m0, r = divmod(int(e), 1024)  # n(t) = m0 + (1 if (t r mod 1024) + r >= 1024)
    if m0 >= n_q or not r:
        return min(m0, n_q)
    t_r = np.arange(S, dtype=np.uint32)  # (t r) mod 1024 for t = j + L s, in wrapping uint32
    t_r *= np.uint32(L * r % 1024)
    t_r += np.uint32(j * r % 1024)
    t_r &= np.uint32(1023)
    sent = np.zeros((S, n_q), bool)
    sent[:, :m0] = True
    sent[:, m0] = t_r >= 1024 - r
    return sent
