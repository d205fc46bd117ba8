"""Release step for the image codecs: training checkpoints -> codecs/<name>/, winners only.

    python bench/ship_image_codecs.py --run hyperprior=../runs/hp --run shallow=../runs/sh \
        --val ../packs/images/val --command-of hyperprior="neurocodec train ..."
    python bench/ship_image_codecs.py --no-bench ...   # reuse bench/results/image/

1. validate each run's checkpoint.pt against the shipped codec's own weights on held-out
   images (--val: never Kodak): the rate-distortion loss per quality and the BD-rate of the
   model's curves; a run that does not improve both is not shipped;
2. export each winner (neurocodec export: fp16 weights packed by weightzip, frozen CDF
   tables, integer hyper-synthesis), its codec.json keeping every earlier training run
   (training.runs: data, steps, wall time, machine, command, validation);
3. run bench/image.py on Kodak for the shipped codecs (all images and qualities, Pillow
   anchors, decode timing, cross-process determinism);
4. copy each codec's results.json / rd.png / per_image.csv next to its weights and write
   its MODEL_CARD.md from the measured numbers and the training record.
"""
from __future__ import annotations

import os

# Shipped weights are packed without zstd, so a machine without libzstd reads them too.
os.environ.setdefault("WEIGHTZIP_NO_ZSTD", "1")

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name: (id, default?, one-line description). Ids are never reused: new weights, new id (a file
# names its codec by id; the first release's 1 and 2 are retired with their weights).
CODECS = {
    "hyperprior": (5, True, "mean-scale hyperprior (Minnen et al. 2018, no context model), GDN transforms"),
    "shallow": (6, False, ("shallow decoder (Yang & Mandt 2023): residual analysis, 2-layer synthesis, "
                           "optional encoder-side latent refinement")),
}


def fmt_bd(v) -> str:
    return "n/a (no overlap)" if v is None else f"{v:+.1f} %"


def runs_table(tr: dict) -> str:
    rows = []
    for i, r in enumerate(tr.get("runs") or [], 1):
        v = r.get("validation") or {}
        val = (f"{v['rd_mean_before']:.4f} → {v['rd_mean_after']:.4f} (BD-rate {v.get('bd_rate_pct')} %)"
               if v.get("rd_mean_before") is not None else "-")
        rows.append(f"| {i} | `{r.get('data')}` | {r.get('steps')} | {r.get('minutes')} | {r.get('machine')} | "
                    f"{r.get('precision')} | {val} | `{r.get('command')}` |")
    return "\n".join(rows)


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
    return f"""# {name} (codec id {meta['id']})

{CODECS[name][2]}. One variable-rate model: {len(codec.cfg.lmbdas)} qualities through per-quality
latent gains (Cui et al. 2021), trained jointly (one λ sampled per training image).
{"**The default image codec.**" if meta.get("default") else ""}

| | |
|---|---|
| parameters | {n_params / 1e6:.2f} M (N={codec.cfg.N}, M={codec.cfg.M}) |
| weights | `weights.wz`, {weights_bytes / 2**20:.2f} MiB: float16 tensors (float32 for small ones), packed losslessly by weightzip without zstd (readable where libzstd is absent) |
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

- data: random {tc['crop']}×{tc['crop']} crops with flips from the `data` folders below (never Kodak);
  batch {tc['batch']}, Adam lr {tc['lr']:g} (÷4 for the last {100 - 100 * tc['lr_drop_at']:.0f} % of a run), aux loss
  (bottleneck quantiles) with its own Adam, gradient clipping {tc['clip']}.
- loss: λ·255²·MSE + bpp, λ drawn per image from {codec.cfg.lmbdas}.
- {tr['step']} steps in {tr['minutes']:.0f} min of training in all, over these runs (each resumed from
  the previous one's weights; validation: mean RD loss over the qualities on held-out images, before → after):

| run | data | steps | min | machine | precision | validation | command |
|---:|---|---:|---:|---|---|---|---|
{runs_table(tr)}

## Limitations

- Trained for {tr['minutes']:.0f} minutes on CPU, where published models train for days on a GPU: it is far from
  converged, and its rate-distortion shows it (see the BD-rates). The recipe is the same with
  `--device cuda` and more steps.
- RGB only: an alpha channel is dropped; grayscale is coded as RGB and decoded to one channel.
- Decoding is bit-exact across processes and torch thread counts on one machine type (the
  probabilities come from integer arithmetic; the synthesis runs on one intra-op thread).
  Across CPU instruction sets the float32 synthesis may differ in the last bit of a pixel.
"""


def validate(checkpoint: Path, name: str, val: Path, crop: int = 256, max_crops: int = 64) -> dict:
    """The run's model against the shipped codec's, on held-out crops (bench/gpu/kit.py's
    measures: eval mode, fp32): per-quality bpp/PSNR/RD loss and the BD-rate of the curves."""
    import torch

    sys.path.insert(0, str(REPO / "bench" / "gpu"))
    from kit import compare_image, image_model_val, image_val_crops

    import neurocodec.runtime.image.models  # noqa: F401  (registers the architectures)
    from neurocodec.runtime.image.io import list_images
    from neurocodec.runtime.registry import build_model
    from neurocodec.tools.checkpoints import load_checkpoint
    from neurocodec.tools.from_codec import checkpoint_from_codec

    crops = image_val_crops(list_images(val), crop, max_crops)
    results = {}
    for label, state in (("before", checkpoint_from_codec(name)), ("after", load_checkpoint(checkpoint))):
        model = build_model(state["config"]["model"]["arch"], state["config"]["model"])
        model.load_state_dict(state["model"], strict=False)  # the shipped one has frozen CDF tables
        results[label] = {"model": image_model_val(model, crops, torch.device("cpu"))}
    return {"val": str(val), "crops": len(crops), "crop": crop, **results,
            **compare_image(results["before"], results["after"])}


def run_record(state: dict, command: str, validation: dict | None) -> dict:
    """One training run as model cards list it."""
    from neurocodec.tools.paths import display_path

    tc = state["config"]["train"]
    return {"data": display_path(tc["data"]) if tc.get("data") else None, "steps": state["step"],
            "minutes": round(state["elapsed"] / 60, 1), "machine": MACHINE, "command": command,
            "init": tc.get("init") and Path(tc["init"]).name, "precision": tc.get("precision", "fp32"),
            "validation": validation and {k: validation["model"].get(k) for k in
                                          ("rd_mean_before", "rd_mean_after", "bd_rate_pct")}}


def earlier_runs(meta: dict) -> list[dict]:
    """The training runs a shipped codec.json records (its one training block, before runs)."""
    tr = meta.get("training", {})
    if tr.get("runs"):
        return list(tr["runs"])
    tc = tr.get("config", {})
    return [{"data": tc.get("data"), "steps": tr.get("step"), "minutes": tr.get("minutes"),
             "machine": "1 thread of a 2-core AMD EPYC VM (CPU)", "precision": "fp32", "init": None,
             "command": (f"neurocodec train --codec {meta.get('arch')} --data {tc.get('data')} "
                         f"--time-budget {tc.get('time_budget_min', 0):g} --batch {tc.get('batch')} "
                         f"--crop {tc.get('crop')} --lr {tc.get('lr', 0):g} --threads {tc.get('threads')}")}]


MACHINE = "1 thread of a 2-core AMD EPYC VM (CPU, AVX512-BF16)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], metavar="NAME=RUN_FOLDER",
                    help="a codec and the run folder holding its checkpoint.pt")
    ap.add_argument("--val", type=Path, required=True, help="held-out images (e.g. ../packs/images/val)")
    ap.add_argument("--command-of", action="append", default=[], metavar="NAME=COMMAND",
                    help="the command that trained it, for the model card")
    ap.add_argument("--force", action="store_true", help="ship even if validation does not improve")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--limit", type=int)
    a = ap.parse_args()
    import torch

    from neurocodec.tools.image.export import export
    from neurocodec.tools.paths import display_paths

    commands = dict(c.split("=", 1) for c in a.command_of)
    shipped = []
    for spec in a.run:
        name, folder = spec.split("=", 1)
        cid, default, _ = CODECS[name]
        ckpt = Path(folder) / "checkpoint.pt"
        v = validate(ckpt, name, a.val)
        print(f"{name}: validation {json.dumps({k: v['model'][k] for k in ('rd_mean_before', 'rd_mean_after')})} "
              f"BD-rate {v['model'].get('bd_rate_pct')} % -> {'improved' if v['improved'] else 'NOT improved'}")
        if not (v["improved"] or a.force):
            continue
        dst = REPO / "codecs" / name
        old = json.loads((dst / "codec.json").read_text())
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        runs = earlier_runs(old) + [run_record(state, commands.get(name, ""), v)]
        total = {"step": sum(r["steps"] or 0 for r in runs), "minutes": round(sum(r["minutes"] or 0 for r in runs), 1)}
        training = {**total, "config": display_paths(state["config"]["train"]), "runs": runs}
        with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:  # export refuses to overwrite
            export(ckpt, Path(tmp) / name, name, cid, default=default, extra={"training": training})
            for f in ("weights.wz", "codec.json"):
                os.replace(Path(tmp) / name / f, dst / f)
        shipped.append(name)
    if not shipped:
        print("nothing to ship")
        return 0
    if not a.no_bench:
        cmd = [sys.executable, str(REPO / "bench" / "image.py"), "--codecs", ",".join(CODECS), "--determinism",
               "--probe-quality", "all" if a.limit else "mid"]
        if a.limit:
            cmd += ["--limit", str(a.limit)]
        subprocess.run(cmd, check=True)
    bench = json.loads((REPO / "bench" / "results" / "image.json").read_text())
    for name in shipped:
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
