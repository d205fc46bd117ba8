"""Rate control: how many RVQ stages per frame a channel's index stream can afford.

e = 1024 x the average stages per frame (index_model.stage_mask spreads the fraction); the
encoder picks per channel the largest e whose entropy-coded indices fit the budget.
"""
from __future__ import annotations

import numpy as np

from neurocodec.runtime.audio.index_model import SEG_LENS, IndexPriors, stage_mask

STREAM_BYTES = 5  # size model: a rANS stream's flush and its length varint


def fit_stages(priors: IndexPriors, codes: np.ndarray, budget: int, n_max: int) -> tuple[int, bytes]:
    """Largest e whose coded indices fit budget bytes (1024 if none does).

    Exact coding is costly (one rANS call per stream), so the search runs on a size model:
    the ideal bits with the segment length L, plus STREAM_BYTES per stream; L is chosen
    once by the same model. One to a few exact codings then correct the model's error."""
    F = codes.shape[-1]

    def mask(e: int) -> np.ndarray:
        return stage_mask(e, F, n_max)

    def model(e: int, L: int) -> float:
        return priors.ideal_bits(codes, L, mask(e)) / 8 + STREAM_BYTES * L

    def search(lo: int, hi: int, fits) -> int:  # largest e in [lo, hi] that fits (lo if none)
        if fits(hi):
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    e_max, lens = 1024 * n_max, [L for L in SEG_LENS if L <= F]
    e = search(1024, e_max, lambda e: priors.ideal_bits(codes, None, mask(e)) / 8 <= budget)
    L = min(lens, key=lambda L: model(e, L))
    e = search(1024, e_max, lambda e: model(e, L) <= budget)
    data = priors.encode(codes, L, mask(e))
    for _ in range(4):  # correct the model by the measured error, never above the budget
        err = len(data) - model(e, L)
        e2 = search(1024, e_max, lambda x, err=err: model(x, L) + err <= budget)
        if e2 == e:
            break
        d2 = priors.encode(codes, L, mask(e2))
        if len(d2) > budget and len(data) <= budget:
            break
        e, data = e2, d2
    while len(data) > budget and e > 1024:
        e = max(1024, e - 16)
        data = priors.encode(codes, L, mask(e))
    return e, data
