"""Audio loss ablation at equal training time (issue 15): what each phase-aware term adds.

    python bench/audio_ablation.py --minutes 15      # -> bench/results/audio_ablation.md / .json / .png
    python bench/audio_ablation.py --variants recon,complex --minutes 1 --eval-files 2 --out /tmp/a   # smoke

Every variant starts from the shipped codec's weights (neurocodec.tools.from_codec) and trains
for the same wall-clock minutes on the same data, seed and learning rate, --jobs at a time with
--threads torch threads each:

* recon: the shipped recipe (multi-scale mel + STFT magnitude + waveform L1, RVQ losses);
* complex: + multi-resolution complex-STFT L1 (real and imaginary parts: phase-aware);
* adv: + the adversarial stage (multi-period and multi-resolution complex-STFT discriminators,
  least squares, feature matching); the shipped weights are its reconstruction warm-up;
* complex+adv: both.

Then each model codes the speech test files with --stages RVQ stages (8 = 6 kbps nominal,
before entropy coding; the same stages for all) and is scored with SI-SDR, PESQ-WB, STOI and
mel distance (neurocodec.tools.audio.evaluate.score); the shipped weights are the row at 0
minutes. The learning curves are the training logs' validation points (SNR and mel of
held-out training-set clips at 8 stages, every --val-every steps) against training minutes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS_DIR, md_table, provenance, provenance_md, write_reports

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "audio"
VARIANTS: dict[str, dict[str, float]] = {
    "recon": {},
    "complex": {"complex_weight": 1.0},
    "adv": {"adv_weight": 1.0, "fm_weight": 2.0},
    "complex+adv": {"complex_weight": 1.0, "adv_weight": 1.0, "fm_weight": 2.0},
}
METRICS = ("si_sdr", "pesq_wb", "stoi", "mel")


def _train(opts: dict[str, Any], threads: int) -> str:
    """One variant's run (in a spawned process); returns its checkpoint."""
    import torch

    from neurocodec.tools.audio.train import make_config, train

    torch.set_num_threads(threads)
    cfg = make_config("audio-rvq", opts.pop("data"), **opts)
    return str(train(cfg, resume=False))


def curve(log: Path) -> list[dict[str, float]]:
    """(minutes since the config line, step, snr_db, mel at 8 stages) of each validation in a
    train.log (the final one included, once per step)."""
    stamp = re.compile(r"^(\S+ \S+) (.*)$")
    t0, points = None, []
    for line in log.read_text().splitlines():
        m = stamp.match(line)
        if not m:
            continue
        t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        msg = m.group(2)
        if msg.startswith("config ") and t0 is None:
            t0 = t
        v = re.match(r"(?:val step (\d+)|done: step (\d+), [\d.]+ min; val) (\{.*\})$", msg)
        if v and t0 is not None:
            res = json.loads(v.group(3)).get("8") or {}
            point = {"minutes": (t - t0) / 60, "step": int(v.group(1) or v.group(2)),
                     "snr_db": res.get("snr_db", float("nan")), "mel": res.get("mel", float("nan"))}
            if points and points[-1]["step"] == point["step"]:  # the final validation repeats the last
                points.pop()
            points.append(point)
    return points


def score_checkpoint(ckpt: Path, files: list[Path], stages: int) -> dict[str, float]:
    """Mean metrics of the model in ckpt over files, coded with `stages` RVQ stages."""
    import numpy as np
    import torch

    import neurocodec.runtime.audio.models  # noqa: F401  (registers audio-rvq)
    from neurocodec.runtime.audio.io import read_audio, resample
    from neurocodec.runtime.registry import build_model
    from neurocodec.tools.audio.evaluate import score
    from neurocodec.tools.checkpoints import load_checkpoint

    st = load_checkpoint(ckpt)
    cfg = dict(st["config"]["model"])
    model = build_model(cfg.pop("arch"), cfg)
    model.load_state_dict(st["model"])
    model.eval()
    sr_model, hop = model.cfg.sample_rate, model.cfg.hop_length
    rows = []
    for f in files:
        ref, sr = read_audio(f)  # [C, T] at the file's rate
        ref = ref.mean(0)  # [T]
        x = resample(ref[None], sr, sr_model)[0]  # [T']
        pad = (-len(x)) % hop
        with torch.no_grad():
            y = model(torch.from_numpy(np.pad(x, (0, pad)))[None, None], stages)["x_hat"][0, 0, :len(x)]  # [T']
        est = resample(y.numpy()[None].astype(np.float32), sr_model, sr)[0][:len(ref)]  # [T]
        est = np.pad(est, (0, len(ref) - len(est)))
        rows.append(score(ref, est, sr, pesq=True))
    return {k: float(np.nanmean([r[k] for r in rows])) for k in METRICS}


def plot(runs: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, pts in runs.items():
        for ax, key in zip(axes, ("snr_db", "mel")):
            ax.plot([p["minutes"] for p in pts], [p[key] for p in pts], marker="o", label=name)
    for ax, label in zip(axes, ("validation SNR at 8 stages (dB)", "validation mel loss at 8 stages")):
        ax.set_xlabel("training minutes (wall; variants trained side by side)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("audio-rvq fine-tuned from the shipped weights, equal time per loss variant")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(p: dict[str, Any]) -> list[str]:
    lines = ["# Audio loss ablation at equal training time (issue 15)", "", *provenance_md(p),
             f"- each variant: {p['minutes']} min from the shipped `audio-rvq` weights, lr {p['lr']}, "
             f"batch {p['batch']}, {p['threads']} torch thread(s) each, {p['jobs']} at a time on "
             f"{p['machine']['cores']} cores",
             f"- scored on {p['eval_files']} files of `speech/test` at {p['stages']} RVQ stages "
             "(6 kbps nominal, before entropy coding)", ""]
    lines += md_table(["variant", "loss terms added", "steps", "SI-SDR dB", "PESQ-WB", "STOI", "mel dist"],
                      [[r["variant"], r["added"], r["steps"], f"{r['si_sdr']:.2f}", f"{r['pesq_wb']:.3f}",
                        f"{r['stoi']:.3f}", f"{r['mel']:.3f}"] for r in p["rows"]]) + [""]
    lines += ["Learning curves (validation clips from the training folders, 8 stages): "
              "`audio_ablation.png`; the points are in `audio_ablation.json`.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--minutes", type=float, default=15.0, help="training minutes per variant")
    ap.add_argument("--jobs", type=int, default=4, help="variants trained side by side (all at once: equal shares)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-4, help="fine-tuning learning rate (cosine to 0.1x)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--val-every", type=int, default=50)
    ap.add_argument("--stages", type=int, default=8)
    ap.add_argument("--eval-files", type=int, default=20, help="speech test files scored (0 = all)")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "neurocodec-bench" / "audio_ablation")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    a = ap.parse_args(argv)
    names = [v for v in a.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    test = sorted((a.data / "speech" / "test").glob("*.flac"))
    if not test:
        print(f"no speech test files under {a.data}: nothing to do")
        return 1
    test = test[:a.eval_files] if a.eval_files else test

    from neurocodec.tools.from_codec import save_checkpoint_from_codec

    a.work.mkdir(parents=True, exist_ok=True)
    init = save_checkpoint_from_codec("audio-rvq", a.work / "init.pt", overwrite=True)
    common = {"data": [str(a.data / "speech" / "train"), str(a.data / "music" / "train")], "weights": [0.8, 0.2],
              "init": str(init), "steps": 10**9, "time_budget_min": a.minutes, "lr": a.lr, "batch": a.batch,
              "val_every": a.val_every, "ckpt_every_min": max(a.minutes / 3, 1.0), "threads": a.threads,
              "device": "cpu"}
    t0 = time.time()
    with ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("spawn")) as ex:
        futures = {n: ex.submit(_train, {**common, **VARIANTS[n], "out": str(a.work / n)}, a.threads)
                   for n in names}
        ckpts = {n: Path(f.result()) for n, f in futures.items()}
    print(f"trained {len(names)} variants in {(time.time() - t0) / 60:.1f} min; scoring {len(test)} files")
    rows = [{"variant": "shipped (start)", "added": "-", "steps": 0, **score_checkpoint(init, test, a.stages)}]
    curves = {}
    for n in names:
        curves[n] = curve(a.work / n / "train.log")
        steps = curves[n][-1]["step"] if curves[n] else 0
        added = ", ".join(f"{k} {v:g}" for k, v in VARIANTS[n].items()) or "- (the shipped recipe)"
        rows.append({"variant": n, "added": added, "steps": steps, **score_checkpoint(ckpts[n], test, a.stages)})
        print(rows[-1], flush=True)
    payload = {**provenance(), "minutes": a.minutes, "lr": a.lr, "batch": a.batch, "threads": a.threads,
               "jobs": a.jobs, "stages": a.stages, "eval_files": len(test), "rows": rows, "curves": curves}
    a.out.mkdir(parents=True, exist_ok=True)
    plot(curves, a.out / "audio_ablation.png")
    write_reports(a.out, "audio_ablation", payload, render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
