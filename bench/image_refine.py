"""What encoder-side refinement buys the shallow decoder, and where that leaves it against
the hyperprior, on the same Kodak images (refinement is slow on a 2-core CPU, so a subset).

    python bench/image_refine.py --limit 4 --steps 30     # -> bench/results/image_refine.{md,json}
"""
from __future__ import annotations

import argparse
import os
import sys
import types
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import math

from bench._common import (
    RESULTS_DIR,
    md_table,
    provenance,
    provenance_md,
    write_reports,
)
from neurocodec import api
from neurocodec.tools.image.evaluate import evaluate
from neurocodec.tools.rd import bd_rate, safe_bd

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "kodak"


def refining_backend(steps: int) -> types.SimpleNamespace:
    def encode(img, codec=None, quality=None):
        return api.encode(img, codec=codec, quality=quality, refine_steps=steps)
    return types.SimpleNamespace(encode=encode, decode=api.decode, load_codec=api.load_codec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    a = ap.parse_args()
    work = a.out / "image_refine"
    curves = {}
    for label, codec, backend in (("hyperprior", "hyperprior", None), ("shallow", "shallow", None),
                                  (f"shallow + refine {a.steps}", "shallow", refining_backend(a.steps))):
        res = evaluate(codec, a.data, work / label.replace(" ", "_"), anchors=False, anchors_json=None,
                       limit=a.limit, backend=backend)
        c = res["curves"][codec]
        curves[label] = c
    hp = curves["hyperprior"]
    rows, payload = [], {"provenance": provenance(), "steps": a.steps, "images": a.limit, "curves": curves, "bd": {}}
    for label, c in curves.items():
        bd = safe_bd(bd_rate, (hp["bpp"], hp["psnr"]), (c["bpp"], c["psnr"])) if label != "hyperprior" else 0.0
        bd = None if bd is None or math.isnan(bd) else bd
        payload["bd"][label] = bd
        enc = sum(c["enc_ms"]) / len(c["enc_ms"])
        dec = sum(c["dec_ms"]) / len(c["dec_ms"])
        rows.append([label, "n/a" if bd is None else f"{bd:+.1f} %", f"{enc:.0f}", f"{dec:.0f}"])
    p = payload["provenance"]
    md = ["# Shallow decoder: encoder-side refinement", "", *provenance_md(p),
          f"- first {a.limit} Kodak images, all qualities, {a.steps} Adam steps per image (STE rounding)",
          f"- torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}", "",
          *md_table(["codec", "BD-rate vs hyperprior (same images)", "mean enc ms", "mean dec ms"], rows)]
    write_reports(a.out, "image_refine", payload, md)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
