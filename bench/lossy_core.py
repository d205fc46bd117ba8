"""Lossy core (weightzip.lossy, csrc/quant + cabac): bits/weight, ratio vs raw and MB/s per thread.

For a series of checkpoints (safetensors, read with numpy) at max-error E:
  * one tensor (default classifier.dense.weight): independent and closed-loop (against the
    previous checkpoint's reconstruction) bits/weight, encode/decode MB/s with 1 thread (best
    of --repeat, in thread CPU time; encode includes the RMS pass of weightzip.lossy), and the
    order-0 entropy of the quantisation indices for comparison;
  * every float tensor of every checkpoint: total ratio vs raw, independent and closed-loop;
  * the sqrt domain on a synthetic Adam exp_avg_sq at E_m ∈ {0.02, 0.05, 0.1};
  * the dead-zone sweep θ ∈ {0.5, 0.4, 0.33} on the tensor.

    python bench/lossy_core.py [--series DIR] [--tensor NAME] [--max-error 0.01]
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import time

import numpy as np
from safetensors.numpy import load_file

from weightzip import lossy

DEFAULT_SERIES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "weights",
                              "lora_roberta-base_agnews_series")


def checkpoints(series: str) -> list[str]:
    files = glob.glob(os.path.join(series, "checkpoint-*", "*.safetensors"))
    return sorted(files, key=lambda p: int(re.search(r"checkpoint-(\d+)", p).group(1)))


def order0_bits(q: np.ndarray) -> float:
    _, counts = np.unique(q, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def timed(f, repeat: int):
    """(result, best seconds): the calling thread's CPU time (threads=1 codes on it), which a
    busy machine disturbs much less than the wall clock."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.thread_time()
        out = f()
        best = min(best, time.thread_time() - t)
    return out, best


def one_tensor(x: np.ndarray, ref: np.ndarray | None, e: float, repeat: int, deadzone: float = 0.5) -> dict:
    (payload, recon), t_enc = timed(lambda: lossy.quantise(x, e, ref, deadzone=deadzone), repeat)
    dec, t_dec = timed(lambda: lossy.dequantise(payload, x.dtype, x.shape, ref), repeat)
    assert np.array_equal(dec.view(np.uint8), recon.view(np.uint8))
    bound = e * float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    assert float(np.max(np.abs(recon.astype(np.float64) - x))) <= bound
    step = lossy.info(payload)["step"]
    base = 0.0 if ref is None else ref.astype(np.float64)
    q = np.round((x.astype(np.float64) - base) / step).astype(np.int64)
    return {"bpw": lossy.bits_per_weight(payload), "ratio": x.nbytes / len(payload), "h0": order0_bits(q),
            "enc": x.nbytes / t_enc / 1e6, "dec": x.nbytes / t_dec / 1e6, "recon": recon,
            "exc": lossy.info(payload)["exceptions"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default=DEFAULT_SERIES)
    ap.add_argument("--tensor", default="classifier.dense.weight")
    ap.add_argument("--max-error", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    files = checkpoints(a.series)
    if not files:
        raise SystemExit(f"no checkpoints under {a.series}")
    e = a.max_error
    print(f"E = {e}, {len(files)} checkpoints, tensor *{a.tensor}")
    print(f"{'checkpoint':<18}{'mode':<8}{'bits/w':>8}{'H0(q)':>8}{'ratio':>8}"
          f"{'enc MB/s':>10}{'dec MB/s':>10}{'exc':>6}")
    prev = None
    ckpts = [load_file(f) for f in files]
    for f, d in zip(files, ckpts):
        name = next(k for k in d if k.endswith(a.tensor))
        x = np.ascontiguousarray(d[name])
        label = os.path.basename(os.path.dirname(f))
        ind = one_tensor(x, None, e, a.repeat)
        rows = [("indep", ind)]
        if prev is not None:
            rows.append(("closed", one_tensor(x, prev, e, a.repeat)))
        for mode, r in rows:
            print(f"{label:<18}{mode:<8}{r['bpw']:8.3f}{r['h0']:8.3f}{r['ratio']:8.2f}{r['enc']:10.1f}"
                  f"{r['dec']:10.1f}{r['exc']:6d}")
        prev = rows[-1][1]["recon"]

    print("\nwhole checkpoints (every float tensor):")
    raw = ind_total = closed_total = 0
    recon_prev: dict[str, np.ndarray] = {}
    for f, d in zip(files, ckpts):
        r_ind = r_cl = 0
        nbytes = 0
        for k, v in d.items():
            if v.dtype.kind != "f":
                continue
            v = np.ascontiguousarray(v)
            nbytes += v.nbytes
            p_ind, rec = lossy.quantise(v, e)
            r_ind += len(p_ind)
            if k in recon_prev:
                p_cl, rec = lossy.quantise(v, e, recon_prev[k])
                r_cl += len(p_cl)
            else:
                r_cl += len(p_ind)
            recon_prev[k] = rec
        raw += nbytes
        ind_total += r_ind
        closed_total += r_cl
        print(f"  {os.path.basename(os.path.dirname(f)):<18} raw {nbytes / 1e6:7.2f} MB  indep {nbytes / r_ind:6.2f}x"
              f"  closed-loop {nbytes / r_cl:6.2f}x")
    print(f"  series total: indep {raw / ind_total:.2f}x, closed-loop {raw / closed_total:.2f}x")

    print("\nsynthetic Adam exp_avg_sq (768 x 768, EMA of squared heavy-tailed gradients), sqrt domain:")
    rng = np.random.default_rng(0)
    v = np.zeros((768, 768), np.float64)
    scale = np.exp(rng.standard_normal((768, 1)))  # per-row gradient scales
    for _ in range(50):
        v = 0.999 * v + 0.001 * (rng.standard_t(3, v.shape) * scale * 1e-3) ** 2
    v = v.astype(np.float32)
    for e_m in (0.02, 0.05, 0.1):
        payload, vr = lossy.quantise(v, e_m, domain="sqrt")
        assert (vr >= 0).all() and not ((v > 0) & (vr == 0)).any()
        print(f"  E_m {e_m:<5} {lossy.bits_per_weight(payload):.3f} bits/w, {v.nbytes / len(payload):.2f}x")

    print("\ndead zone (first checkpoint's tensor, independent):")
    d = ckpts[0]
    x = np.ascontiguousarray(d[next(k for k in d if k.endswith(a.tensor))])
    for theta in (0.5, 0.4, 0.33):
        r = one_tensor(x, None, e, 1, deadzone=theta)
        print(f"  theta {theta:<5} {r['bpw']:.3f} bits/w")


if __name__ == "__main__":
    main()
