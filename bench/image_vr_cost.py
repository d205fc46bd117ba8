"""The cost of one variable-rate model: fine-tune the shipped run for S more steps two ways,
(a) as it was trained (λ drawn from all qualities) and (b) on one quality only, then code
Kodak at that quality with both. (b) - (a) is what specialising to one λ would buy at equal
training, i.e. the rate-distortion cost of sharing the model across qualities.

    python bench/image_vr_cost.py --run ../runs/hyperprior --quality 3 --steps 300
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    RESULTS_DIR,
    display_path,
    md_table,
    provenance,
    provenance_md,
    write_reports,
)

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "train"
KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "kodak"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="training run folder (checkpoint.pt)")
    ap.add_argument("--quality", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=7.5e-5)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    a = ap.parse_args()
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="vrcost"))
    ckpt = a.run / "checkpoint.pt"
    arch = json.loads(json.dumps(__import__("torch").load(ckpt, weights_only=True)["config"]["model"]))["arch"]
    jobs = {}
    for label, extra in (("all qualities", []), (f"quality {a.quality} only", ["--fixed-quality", str(a.quality)])):
        out = tmp / label.replace(" ", "_")
        cmd = [py, "-m", "neurocodec", "train", "--codec", arch, "--data", str(TRAIN), "--out", str(out),
               "--init", str(ckpt), "--steps", str(a.steps), "--crop", "128", "--batch", "8",
               "--lr", str(a.lr), "--threads", "1", *extra]
        jobs[label] = (out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    from neurocodec.tools.image.evaluate import evaluate
    from neurocodec.tools.image.export import export

    rows, results = [], {}
    for i, (label, (out, proc)) in enumerate(jobs.items()):
        if proc.wait() != 0:
            raise SystemExit(f"training for {label!r} failed")
        codec_dir = export(out / "checkpoint.pt", out / "codec", f"vrcost-{i}", 990 + i)
        res = evaluate(str(codec_dir), KODAK, out / "eval", qualities=[a.quality], anchors=False,
                       anchors_json=None, limit=a.limit, progress=False)
        c = next(iter(res["curves"].values()))
        results[label] = {"bpp": c["bpp"][0], "psnr": c["psnr"][0]}
    import math

    from neurocodec.runtime.image.models import ImageModelConfig

    codec_json = json.loads((tmp / "all_qualities" / "codec" / "codec.json").read_text())
    lmbda = ImageModelConfig.from_dict(codec_json["model"]).lmbdas[a.quality]
    for label, r in results.items():
        mse = 255**2 * 10 ** (-r["psnr"] / 10)
        r["J"] = lmbda * mse + r["bpp"]
        rows.append([label, f"{r['bpp']:.4f}", f"{r['psnr']:.2f}", f"{r['J']:.4f}"])
    va, fx = results["all qualities"], results[f"quality {a.quality} only"]
    payload = {"provenance": provenance(), "run": display_path(a.run), "quality": a.quality, "lmbda": lmbda,
               "steps": a.steps, "results": results,
               "delta": {"bpp_pct": 100 * (fx["bpp"] / va["bpp"] - 1), "psnr_db": fx["psnr"] - va["psnr"],
                         "J_pct": 100 * (fx["J"] / va["J"] - 1)}}
    d = payload["delta"]
    md = ["# Cost of the variable-rate model", "", *provenance_md(payload["provenance"]),
          (f"- run `{display_path(a.run)}`, both fine-tuned {a.steps} steps (lr {a.lr:g}) from its checkpoint; Kodak"
          f"{'' if a.limit is None else f' (first {a.limit})'}, quality {a.quality} (λ = {lmbda:g})"), "",
          *md_table(["training", "bpp", "PSNR-RGB dB", "J = λ·MSE + bpp"], rows), "",
          (f"Specialising to one λ changes bpp by {d['bpp_pct']:+.1f} %, PSNR by {d['psnr_db']:+.2f} dB "
          f"and the RD cost J by {d['J_pct']:+.1f} % (negative J = the single-λ model is better).")]
    assert not math.isnan(d["J_pct"])
    write_reports(a.out, "image_vr_cost", payload, md)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
