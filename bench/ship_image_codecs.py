"""Release step for the image codecs: training checkpoints -> codecs/<name>/.

    python bench/ship_image_codecs.py --runs ../runs            # export + Kodak bench + cards
    python bench/ship_image_codecs.py --runs ../runs --no-bench  # reuse bench/results/image/

1. export each run's checkpoint.pt (neurocodec export: fp16 weights packed by weightzip,
   frozen CDF tables, integer hyper-synthesis);
2. run bench/image.py on Kodak (all images and qualities, Pillow anchors, decode timing,
   cross-process determinism);
3. copy each codec's results.json / rd.png / per_image.csv next to its weights and write
   its MODEL_CARD.md from the measured numbers and the training record.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CODECS = {  # name: (id, default?, one-line description)
    "hyperprior": (1, True, "mean-scale hyperprior (Minnen et al. 2018, no context model), GDN transforms"),
    "shallow": (2, False, ("shallow decoder (Yang & Mandt 2023): residual analysis, 2-layer synthesis, "
                           "optional encoder-side latent refinement")),
}


def fmt_bd(v) -> str:
    return "n/a (no overlap)" if v is None else f"{v:+.1f} %"


def model_card(name: str, meta: dict, res: dict, bench: dict, weights_bytes: int) -> str:
    from neurocodec import load_codec

    codec = load_codec(name)
    n_params = sum(p.numel() for p in codec.model.parameters())
    macs = codec.macs_per_pixel()
    tr = meta["training"]
    tc = tr["config"]
    curve = res["curves"][name]
    rows = "\n".join(
        f"| {q} | {lm:g} | {b:.4f} | {p:.2f} | {m:.4f} |"
        for q, lm, b, p, m in zip(curve["quality"], codec.cfg.lmbdas, curve["bpp"], curve["psnr"], curve["ms_ssim"]))
    same = res["bd_rate_pct"]["same_run"]
    pub = res["bd_rate_pct"]["published"]
    pub_rows = "\n".join(f"| {k} | {fmt_bd(v)} |" for k, v in pub.items())
    b = bench.get("codecs", {}).get(name, {})
    timing = ", ".join(f"{t['median_ms']:.0f} ms at {t['threads']} thread{'s' if t['threads'] > 1 else ''}"
                       for t in b.get("decode_timing") or []) or "not measured"
    det = b.get("determinism") or {}
    det_s = (f"{det['n_bit_exact']}/{det['n']} Kodak files (qualities {det['qualities']}) decoded to identical "
             f"pixels in fresh processes at torch threads {det['threads']}") if det else "not measured"
    cmd = (f"neurocodec train --codec {meta['arch']} --data ../shared/data/images/train --out runs/{name} "
           f"--steps {tc['steps']} --time-budget {tc['time_budget_min']:g} --batch {tc['batch']} "
           f"--crop {tc['crop']} --lr {tc['lr']:g} --threads {tc['threads']}")
    return f"""# {name} (codec id {meta['id']})

{CODECS[name][2]}. One variable-rate model: {len(codec.cfg.lmbdas)} qualities through per-quality
latent gains (Cui et al. 2021), trained jointly (one λ sampled per training image).
{"**The default image codec.**" if meta.get("default") else ""}

| | |
|---|---|
| parameters | {n_params / 1e6:.2f} M (N={codec.cfg.N}, M={codec.cfg.M}) |
| weights | `weights.wz`, {weights_bytes / 2**20:.2f} MiB: float16 tensors (float32 for small ones), packed losslessly by weightzip |
| decoder MACs / pixel | h_s {macs['h_s']:,.0f} + g_s {macs['g_s']:,.0f} = {macs['total']:,.0f} |
| entropy models | CompressAI EntropyBottleneck (z) and GaussianConditional (y), CDF tables frozen in the weights; integer hyper-synthesis |
| bitstream | `.nc` v1, 2 streams (z, y), {res.get('overhead_bytes', '≤ 32')} bytes of container |

## Kodak (24 images, mean PSNR-RGB vs mean bpp of whole files)

| quality | λ | bpp | PSNR-RGB dB | MS-SSIM |
|---:|---:|---:|---:|---:|
{rows}

BD-rate against anchors measured in the same run (Pillow; negative = fewer bits):
JPEG {fmt_bd(same.get('jpeg'))}, WebP {fmt_bd(same.get('webp'))}, AVIF {fmt_bd(same.get('avif'))}.

Against published curves (`kodak_rd.json`):

| curve | BD-rate |
|---|---:|
{pub_rows}

RD plot: `rd.png`. Per-image numbers: `per_image.csv`. Full numbers: `results.json`.
Decode time per Kodak image (median, whole decode incl. entropy decoding): {timing}.
Determinism: {det_s}. Details: `bench/results/image.md`.

## Training

- data: `../shared/data/images/train/` (Wikimedia 2× downscaled, CBSD68, Urban100 2× downscaled):
  169 training images, 8 held out for validation (every 22nd file). Never Kodak.
- random {tc['crop']}×{tc['crop']} crops, horizontal and vertical flips, batch {tc['batch']}, Adam lr {tc['lr']:g}
  (÷4 for the last {100 - 100 * tc['lr_drop_at']:.0f} %), aux loss (bottleneck quantiles) with its own Adam
  lr {tc['aux_lr']:g}, gradient clipping {tc['clip']}.
- loss: λ·255²·MSE + bpp, λ drawn per image from {codec.cfg.lmbdas}.
- {tr['step']} steps in {tr['minutes']:.0f} min wall time on CPU: 1 thread of a 2-core AMD EPYC VM
  (the other core trained the sibling codec), torch 2.15 CPU execution.
- command: `{cmd}`
  then `neurocodec export runs/{name}/checkpoint.pt --out codecs/{name} --name {name} --id {meta['id']}{' --default' if meta.get('default') else ''}`

## Limitations

- Trained for {tr['minutes']:.0f} CPU minutes, where published models train for days on a GPU: it is far from
  converged, and its rate-distortion shows it (see the BD-rates). The recipe is the same with
  `--device cuda` and more steps.
- RGB only: an alpha channel is dropped; grayscale is coded as RGB and decoded to one channel.
- Decoding is bit-exact across processes and torch thread counts on one machine type (the
  probabilities come from integer arithmetic; the synthesis runs on one intra-op thread).
  Across CPU instruction sets the float32 synthesis may differ in the last bit of a pixel.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO.parent / "runs")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--limit", type=int)
    a = ap.parse_args()
    py = sys.executable
    for name, (cid, default, _) in CODECS.items():
        cmd = [py, "-m", "neurocodec", "export", str(a.runs / name / "checkpoint.pt"), "--out",
               str(REPO / "codecs" / name), "--name", name, "--id", str(cid)] + (["--default"] if default else [])
        subprocess.run(cmd, check=True)
    if not a.no_bench:
        cmd = [py, str(REPO / "bench" / "image.py"), "--codecs", ",".join(CODECS), "--determinism",
               "--probe-quality", "all" if a.limit else "mid"]
        if a.limit:
            cmd += ["--limit", str(a.limit)]
        subprocess.run(cmd, check=True)
    bench = json.loads((REPO / "bench" / "results" / "image.json").read_text())
    for name in CODECS:
        src = REPO / "bench" / "results" / "image" / name
        dst = REPO / "codecs" / name
        for f in ("results.json", "rd.png", "per_image.csv"):
            shutil.copy2(src / f, dst / f)
        meta = json.loads((dst / "codec.json").read_text())
        res = json.loads((dst / "results.json").read_text())
        card = model_card(name, meta, res, bench, (dst / "weights.wz").stat().st_size)
        (dst / "MODEL_CARD.md").write_text(card)
        print(f"{dst}: {sum(p.stat().st_size for p in dst.iterdir()) / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
