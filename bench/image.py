"""Benchmark the learned image codecs on Kodak against Pillow anchors and published curves.

    python bench/image.py                                # hyperprior,shallow
    python bench/image.py --codecs hyperprior --limit 4  # quick look
    ... --data ../shared/data/images/kodak --out bench/results --determinism

Codec names are passed unchanged to the backend (``neurocodec.api`` unless ``--backend``
names another module with the same ``encode/decode/load_codec`` functions).  Per codec:
``<out>/image/<codec>/{per_image.csv,results.json,rd.png}`` (neurocodec.tools.image.evaluate);
summary: ``<out>/image.md``, ``<out>/image.json`` and ``<out>/image_rd.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # allow `python bench/image.py`; explicit PYTHONPATH entries win
    _n = len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    sys.path.insert(1 + _n, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench._common import (
    REPO_ROOT,
    RESULTS_DIR,
    display_args,
    display_path,
    fmt,
    md_table,
    provenance,
    write_reports,
)
from neurocodec.tools.image.evaluate import AUTO, evaluate, find_anchors_json, json_safe
from neurocodec.tools.rd import bd_psnr, bd_rate, load_anchor_curves, plot_rd, safe_bd

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "images" / "kodak"

# Decodes one bitstream file per argument at a given torch thread count and prints
# {path: sha256 of the decoded array (shape + dtype + bytes)} as the last stdout line.
_DECODE_CHILD = """\
import hashlib, importlib, json, sys
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
backend = importlib.import_module(sys.argv[2])
out = {}
for p in sys.argv[3:]:
    with open(p, "rb") as f:
        a = np.ascontiguousarray(backend.decode(f.read()))
    out[p] = hashlib.sha256(str(a.shape).encode() + a.dtype.str.encode() + a.tobytes()).hexdigest()
print(json.dumps(out))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codecs", default="hyperprior,shallow", help="codec names (comma separated)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="image folder (default: Kodak)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--qualities", default=None, help="quality list (comma separated; default: the codec's)")
    ap.add_argument("--backend", default="neurocodec.api",
                    help="module with encode/decode/load_codec (default: neurocodec.api)")
    ap.add_argument("--threads", default="1,2", help="torch thread counts for the decode timing")
    ap.add_argument("--probe-quality", default="mid",
                    help="quality for decode timing and --determinism: 'mid' (median of the "
                         "codec's qualities), 'all', or a number")
    ap.add_argument("--determinism", action="store_true",
                    help="decode every bitstream in child processes at each --threads count and "
                         "compare sha256 of the outputs")
    ap.add_argument("--no-anchors", action="store_true", help="skip the same-run Pillow anchors")
    ap.add_argument("--anchors-json", default=AUTO,
                    help="published curves JSON (default: ../shared/anchors/kodak_rd.json; '' = none)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return ap.parse_args(argv)


def _slug(name: str) -> str:
    return re.sub(r"[^\w.+-]", "_", name)


def probe_qualities(spec: str, qualities: list[int]) -> list[int]:
    if spec == "all":
        return list(qualities)
    if spec == "mid":
        return [sorted(qualities)[(len(qualities) - 1) // 2]]
    q = int(spec)
    if q not in qualities:
        raise ValueError(f"--probe-quality {q} is not among the evaluated qualities {qualities}")
    return [q]


def decode_timing(backend: Any, streams: dict[tuple[int, str], bytes], qualities: list[int],
                  threads: list[int]) -> list[dict[str, Any]]:
    """Median decode time over images, per (quality, torch thread count)."""
    import torch

    old = torch.get_num_threads()
    rows = []
    try:
        for t in threads:
            torch.set_num_threads(t)
            for q in qualities:
                items = [(n, d) for (qq, n), d in sorted(streams.items()) if qq == q]
                backend.decode(items[0][1])  # warm-up: lazy model load, allocator, caches
                ms = []
                for _, data in items:
                    t0 = time.perf_counter()
                    backend.decode(data)
                    ms.append(1e3 * (time.perf_counter() - t0))
                rows.append({"quality": q, "threads": t, "median_ms": statistics.median(ms),
                             "min_ms": min(ms), "max_ms": max(ms), "n": len(ms)})
                print(f"   decode q={q} threads={t}: median {rows[-1]['median_ms']:.1f} ms", flush=True)
    finally:
        torch.set_num_threads(old)
    return rows


def _sha(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.shape).encode() + a.dtype.str.encode() + a.tobytes()).hexdigest()


def determinism(backend_name: str, backend: Any, streams: dict[tuple[int, str], bytes],
                qualities: list[int], threads: list[int]) -> dict[str, Any]:
    """Decode this process's bitstreams in fresh interpreters at each thread count."""
    items = [(q, n, d) for (q, n), d in sorted(streams.items()) if q in qualities]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory(prefix="ncdet-") as tmp:
        paths = []
        for i, (q, n, d) in enumerate(items):
            paths.append(os.path.join(tmp, f"{i:04d}_q{q}_{_slug(n)}.nc"))
            Path(paths[-1]).write_bytes(d)
        child: dict[int, dict[str, str]] = {}
        errors: dict[int, str] = {}
        for t in threads:
            p = subprocess.run([sys.executable, "-c", _DECODE_CHILD, str(t), backend_name, *paths],
                               capture_output=True, text=True, env=env, check=False)
            lines = p.stdout.strip().splitlines()
            if p.returncode != 0 or not lines:
                errors[t] = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
                child[t] = {}
            else:
                child[t] = json.loads(lines[-1])
    per_image = []
    for (q, n, d), path in zip(items, paths):
        here = _sha(backend.decode(d))
        shas = {t: child[t].get(path) for t in threads}
        per_image.append({"quality": q, "image": n, "in_process": here, **{f"threads_{t}": s for t, s in shas.items()},
                          "cross_thread_equal": len(set(shas.values())) == 1 and None not in shas.values(),
                          "equal_to_in_process": all(s == here for s in shas.values())})
    res = {"threads": threads, "qualities": qualities, "n": len(per_image),
           "n_bit_exact": sum(r["cross_thread_equal"] for r in per_image),
           "n_equal_in_process": sum(r["equal_to_in_process"] for r in per_image),
           "errors": {str(t): e for t, e in errors.items()}, "per_image": per_image}
    print(f"   determinism: {res['n_bit_exact']}/{res['n']} bit-exact across threads {threads} "
          f"({res['n_equal_in_process']}/{res['n']} equal to the in-process decode)", flush=True)
    return res


def _macs(backend: Any, codec: str) -> Any:
    try:
        obj = backend.load_codec(codec)
        fn = getattr(obj, "macs_per_pixel", None)
        return fn() if callable(fn) else None
    except Exception as e:  # noqa: BLE001 - report it, do not fail the benchmark
        return f"error: {type(e).__name__}: {e}"


def run_codec(codec: str, args: argparse.Namespace, backend: Any, threads: list[int]) -> dict[str, Any]:
    streams: dict[tuple[int, str], bytes] = {}
    quals = [int(q) for q in args.qualities.split(",")] if args.qualities else None
    anchors_json = args.anchors_json if args.anchors_json else None
    res = evaluate(codec, args.data, args.out / "image" / _slug(codec), qualities=quals,
                   anchors=not args.no_anchors, anchors_json=anchors_json, limit=args.limit,
                   progress=not args.no_progress, backend=backend, keep_bitstreams=streams)
    res["files"] = {k: display_path(v) for k, v in res["files"].items()}  # as recorded in image.json
    qualities = res["curves"][codec]["quality"]
    probe = probe_qualities(args.probe_quality, qualities)
    out = {"result": res, "macs_per_pixel": _macs(backend, codec),
           "decode_timing": decode_timing(backend, streams, probe, threads)}
    if args.determinism:
        out["determinism"] = determinism(args.backend, backend, streams, probe, threads)
    return out


NOTES = """\
## Method

- `neurocodec.tools.image.evaluate`: every image is encoded to a complete `.nc` file with the public
  API (`encode(img, codec=, quality=)`) and decoded with `decode(bytes)`; bpp = 8 * file bytes /
  (H * W), so container and header bytes count.  PSNR-RGB = 10 log10(255^2 / MSE over all RGB
  values), averaged over images per quality (the convention of the published Kodak curves);
  MS-SSIM as `pytorch_msssim.ms_ssim(data_range=255)`.  enc/dec ms: mean wall time per image in
  the evaluating process (torch default threads, see above).
- Same-run anchors: Pillow JPEG (4:2:0), WebP (method 4) and AVIF (libavif defaults) at fixed
  quality lists, on the same images in the same process.
- BD-rate: Bjøntegaard, cubic fit of log(bpp) against PSNR over the overlapping PSNR range;
  % rate change of the codec vs the reference curve (negative = fewer bits).  `-` = no
  overlap.  Published curves were measured elsewhere (other hardware, library versions).
- Decode time: `torch.set_num_threads(T)` in this process, one warm-up decode, then the median
  over images.  Determinism: the bitstreams encoded here are decoded in fresh interpreters at
  each thread count; bit-exact = identical sha256 of the decoded arrays.
- Timings are wall clock on a shared machine; treat differences under ~10% as noise.
"""


def _codec_md(codec: str, r: dict[str, Any]) -> list[str]:
    L = [f"## {codec}", ""]
    if "error" in r:
        return L + [f"**failed**: `{r['error']}`", ""]
    res = r["result"]
    c = res["curves"][codec]
    macs = r.get("macs_per_pixel")
    if isinstance(macs, dict):
        macs = ", ".join(f"{k} {v:,.0f}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in macs.items())
    L += [f"- decoder MACs/pixel: {macs if macs is not None else 'not exposed'}",
          f"- results: `{res['files']['results_json']}`, plot `{res['files']['rd_png']}`", ""]
    rows = [[q, fmt(b, 4), fmt(p, 2), fmt(m, 4), fmt(e, 1), fmt(d, 1)]
            for q, b, p, m, e, d in zip(c["quality"], c["bpp"], c["psnr"], c["ms_ssim"], c["enc_ms"], c["dec_ms"])]
    L += md_table(["quality", "bpp", "PSNR-RGB dB", "MS-SSIM", "enc ms", "dec ms"], rows) + [""]
    rows = [[t["quality"], t["threads"], fmt(t["median_ms"], 1), f"{fmt(t['min_ms'], 1)} - {fmt(t['max_ms'], 1)}",
             t["n"]] for t in r["decode_timing"]]
    L += ["Decode time per image (median over images):", ""]
    L += md_table(["quality", "torch threads", "median ms", "min - max ms", "images"], rows) + [""]
    same = res["bd_rate_pct"]["same_run"]
    if same:
        rows = [[f.upper(), fmt(v, 2, "%"), fmt(res["bd_psnr_db"]["same_run"][f], 3)] for f, v in same.items()]
        L += ["BD vs same-run Pillow anchors:", ""]
        L += md_table(["anchor", "BD-rate", "BD-PSNR dB"], rows) + [""]
    det = r.get("determinism")
    if det:
        L += [f"Determinism (quality {det['qualities']}, child processes at torch threads {det['threads']}): "
              f"**{det['n_bit_exact']}/{det['n']} bit-exact** across thread counts, "
              f"{det['n_equal_in_process']}/{det['n']} equal to the in-process decode."
              + (f" Child errors: {det['errors']}" if det["errors"] else ""), ""]
    return L


def _median_ms(r: dict[str, Any], threads: int) -> float | None:
    t = [x["median_ms"] for x in r.get("decode_timing") or [] if x["threads"] == threads]
    return t[0] if t else None


def _targets_md(p: dict[str, Any], ok: dict[str, Any]) -> list[str]:
    """The issue's targets, each with its measured value and a plain verdict."""
    def verdict(v: float | None, limit: float) -> str:
        return "**missed** (no PSNR overlap)" if v is None else ("met" if v <= limit else "**missed**")

    def bd_cell(rate: float | None, psnr: float | None) -> str:
        return f"{fmt(rate, 1, ' %')} (BD-PSNR {fmt(psnr, 2, ' dB')})"

    L, rows = ["## Targets", ""], []
    default = next((c for c in ("hyperprior",) if c in ok), next(iter(ok), None))
    if default:
        same, pub = ok[default]["bd_rate_pct"]["same_run"], ok[default]["bd_rate_pct"]["published"]
        same_p, pub_p = ok[default]["bd_psnr_db"]["same_run"], ok[default]["bd_psnr_db"]["published"]
        bpg = next((k for k in pub if k.startswith("BPG")), None)
        rows += [[f"{default}: BD-rate vs WebP (same run)", "≤ -25 %", bd_cell(same.get("webp"), same_p.get("webp")),
                  verdict(same.get("webp"), -25)],
                 [f"{default}: BD-rate vs AVIF (same run)", "≤ 0 %", bd_cell(same.get("avif"), same_p.get("avif")),
                  verdict(same.get("avif"), 0)],
                 [f"{default}: BD-rate vs BPG (published, stretch)", "≤ 0 %",
                  bd_cell(pub.get(bpg), pub_p.get(bpg)), verdict(pub.get(bpg), 0)]]
    if "hyperprior" in ok and "shallow" in ok:
        hp, sh = ok["hyperprior"]["curves"]["hyperprior"], ok["shallow"]["curves"]["shallow"]
        bd = safe_bd(bd_rate, (hp["bpp"], hp["psnr"]), (sh["bpp"], sh["psnr"]))
        bd = None if bd is None or math.isnan(bd) else bd
        bdp = safe_bd(bd_psnr, (hp["bpp"], hp["psnr"]), (sh["bpp"], sh["psnr"]))
        rows.append(["shallow: BD-rate vs hyperprior", "≤ +10 %", bd_cell(bd, bdp), verdict(bd, 10)])
        for t in (1, 2):
            a, b = _median_ms(p["codecs"]["hyperprior"], t), _median_ms(p["codecs"]["shallow"], t)
            if a and b:
                rows.append([f"shallow: decode time / hyperprior's, {t} thread(s)", "≤ 0.333",
                             f"{b / a:.3f} ({b:.0f} / {a:.0f} ms)", "met" if b / a <= 1 / 3 else "**missed**"])
        ma = (p["codecs"]["hyperprior"].get("macs_per_pixel") or {}).get("total")
        mb = (p["codecs"]["shallow"].get("macs_per_pixel") or {}).get("total")
        if ma and mb:
            rows.append(["shallow: decoder MAC/px / hyperprior's", "-", f"{mb / ma:.3f} ({mb:,.0f} / {ma:,.0f})", "-"])
    for c, r in p["codecs"].items():
        d = r.get("determinism")
        if d:
            rows.append([f"{c}: bit-exact decodes across processes, threads {d['threads']}", "all",
                         f"{d['n_bit_exact']}/{d['n']}", "met" if d["n_bit_exact"] == d["n"] else "**missed**"])
    return L + md_table(["target", "goal", "measured", "verdict"], rows) + [""] if rows else []


def render_markdown(p: dict[str, Any]) -> list[str]:
    m, rm = p["machine"], p.get("run_meta") or {}
    ok = {c: r["result"] for c, r in p["codecs"].items() if "result" in r}
    n_img = len(next(iter(ok.values()))["images"]) if ok else 0
    L = ["# neurocodec benchmark: images", "",
         f"- git: `{p['git_sha']}`", f"- command: `{p['command']}`", f"- date: {p['date']}",
         f"- machine: {m['cpu_model']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['platform']}",
         (f"- versions: python {m['python']}, numpy {m['numpy']}, torch {m['torch']}, "
          f"Pillow {rm.get('versions', {}).get('pillow', '?')}; torch threads during evaluation: "
          f"{rm.get('machine', {}).get('torch_threads', '?')}"),
         f"- data: `{p['data']}` ({n_img} images); published curves: `{p['anchors_json']}`",
         f"- RD plot (all codecs + anchors): `{p['rd_png']}`; elapsed {p['elapsed_s'] / 60:.1f} min", ""]
    L += _targets_md(p, ok)
    for codec, r in p["codecs"].items():
        L += _codec_md(codec, r)
    pub = sorted({n for r in ok.values() for n in r["bd_rate_pct"]["published"]})
    if pub:
        L += ["## BD-rate vs published curves (BD-PSNR dB in brackets; `-` = no overlap)", ""]
        rows = [[n, *(f"{fmt(r['bd_rate_pct']['published'].get(n), 2, '%')} "
                      f"({fmt(r['bd_psnr_db']['published'].get(n), 2)})" for r in ok.values())] for n in pub]
        L += md_table(["published curve", *ok], rows) + [""]
    if p["anchors"]:
        L += ["## Same-run anchors (mean over images)", ""]
        for f, c in p["anchors"].items():
            rows = [[q, fmt(b, 4), fmt(s, 2), fmt(ms, 4), fmt(e, 1), fmt(d, 1)] for q, b, s, ms, e, d in
                    zip(c["quality"], c["bpp"], c["psnr"], c["ms_ssim"], c["enc_ms"], c["dec_ms"])]
            L += [f"### {f.upper()}", ""]
            L += md_table(["quality", "bpp", "PSNR-RGB dB", "MS-SSIM", "enc ms", "dec ms"], rows) + [""]
    return L + [NOTES]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    codecs = [c for c in args.codecs.split(",") if c]
    threads = sorted({int(t) for t in args.threads.split(",") if t})
    backend = importlib.import_module(args.backend)
    t_start = time.time()
    per_codec: dict[str, dict[str, Any]] = {}
    for codec in codecs:
        print(f"\n== {codec}", flush=True)
        try:
            per_codec[codec] = run_codec(codec, args, backend, threads)
        except Exception as e:  # noqa: BLE001 - one broken codec must not lose the others' numbers
            traceback.print_exc()
            per_codec[codec] = {"error": f"{type(e).__name__}: {e}"}

    ok = {c: r["result"] for c, r in per_codec.items() if "result" in r}
    json_path = (find_anchors_json() if args.anchors_json == AUTO else args.anchors_json) or None
    published = load_anchor_curves(json_path) if json_path else {}
    anchor_curves: dict[str, Any] = {}
    for res in ok.values():  # same images and process for every codec: take the first
        anchor_curves = {f: res["curves"][f] for f in res["anchor_qualities"]}
        break
    rd_png = None
    if ok:
        rd_png = plot_rd({c: (r["curves"][c]["bpp"], r["curves"][c]["psnr"]) for c, r in ok.items()},
                         args.out / "image_rd.png", f"Kodak RD: {', '.join(ok)} vs anchors",
                         published=published,
                         anchors={f"{f.upper()} (same run)": (c["bpp"], c["psnr"]) for f, c in anchor_curves.items()})
    payload = {**provenance(), "args": display_args(args),
               "data": display_path(args.data), "anchors_json": display_path(json_path) if json_path else None,
               "elapsed_s": time.time() - t_start, "rd_png": display_path(rd_png) if rd_png else None,
               "anchors": anchor_curves, "codecs": per_codec}
    if ok:
        payload["run_meta"] = next(iter(ok.values()))["meta"]  # torch threads, Pillow version
    payload = json_safe(payload)
    write_reports(args.out, "image", payload, render_markdown(payload))
    return 0 if ok and len(ok) == len(codecs) else 1


if __name__ == "__main__":
    sys.exit(main())
