"""Benchmark the coolchic kind (per-image fitting) on Kodak against Pillow anchors and the
published curves (BPG, Cool-chic v1/4.2/5.0, C3 in ../shared/anchors/kodak_rd.json).

    python bench/coolchic.py --preset fast                    # 6 images x 4 qualities, 2 jobs
    python bench/coolchic.py --preset fast,slow --jobs 2 --images kodim01,kodim05
    python bench/coolchic.py --report-only                    # tables from what is fitted

Fits are the expensive part (minutes each), so every fit runs in a worker process
(``--threads`` torch threads, ``--jobs`` at a time) and leaves its .nc file and statistics in ``--work`` (outside
the repository: files are never committed); a rerun reuses every fit whose configuration
(codec.json digest, preset, quality, image) is unchanged, so an interrupted run resumes.
Each finished fit is also measured at once and its row (bpp, PSNR, times, the .nc's sha256) kept in
``--ledger`` (committed), so fits survive the loss of the work folder: a fresh machine skips
them and reports their recorded rows (marked ``from ledger``), and re-measures any whose .nc is present.
Decoding is timed here on one thread (median of 3, numpy and the C++ core), checked against
a second decode, and PSNR/bpp come from the decoded files (whole .nc, headers included).
Writes ``<out>/coolchic.{md,json}`` and ``<out>/coolchic_rd.png``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # allow `python bench/coolchic.py`; explicit PYTHONPATH entries win
    _n = len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    sys.path.insert(1 + _n, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench._common import REPO_ROOT, RESULTS_DIR, display_args, display_path, fmt, md_table, provenance, write_reports
from neurocodec.tools.image.anchors import FORMATS, available, pillow_decode, pillow_encode
from neurocodec.tools.image.evaluate import find_anchors_json, json_safe, load_images, mean_curves, measure
from neurocodec.tools.rd import bd_rate, load_anchor_curves, plot_rd, safe_bd

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "images" / "kodak"
DEFAULT_IMAGES = "kodim01,kodim05,kodim09,kodim13,kodim17,kodim21"  # every fourth (the subset)
CODEC_JSON = REPO_ROOT / "codecs" / "coolchic" / "codec.json"
PUBLISHED = ("BPG 4:4:4 x265 (CompressAI)", "COOL-CHIC v1", "C3", "Cool-chic 4.2 (repo TSV)",
             "Cool-chic 5.0 (HOP, repo TSV)", "avif_444_s4 (measured here, Pillow 13.0.0)")
TARGETS = {"fast": "webp", "medium": "", "slow": "avif"}  # the targets per preset
ANCHOR_Q = {"jpeg": [10, 20, 30, 45, 60, 75, 85, 95], "webp": [10, 20, 35, 50, 65, 80, 90, 95],
            "avif": [10, 20, 30, 40, 50, 60, 70, 80, 90]}  # dense enough for 6-image curves


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--images", default=DEFAULT_IMAGES, help="comma-separated stems ('' = all)")
    ap.add_argument("--preset", default="fast", help="comma-separated presets")
    ap.add_argument("--qualities", default="1,2,3,4", help="comma-separated quality indices (>= 4 rates)")
    ap.add_argument("--jobs", type=int, default=2, help="fits at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "neurocodec-bench" / "coolchic")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--ledger", type=Path, default=RESULTS_DIR / "coolchic_fits.json",
                    help="measured rows of finished fits (committed: fits survive a lost --work folder)")
    ap.add_argument("--report-only", action="store_true", help="no fitting: report the fits in --work")
    ap.add_argument("--codec-dir", type=Path, help="also write results.json, per_image.csv and rd.png there "
                    "(codecs/coolchic: the shipped codec's results)")
    return ap.parse_args(argv)


def config_digest() -> str:
    """The fitting configuration (codec.json's model section): fits made under another are not reused."""
    model = json.loads(CODEC_JSON.read_text())["model"]
    return hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:12]


def fit_name(preset: str, image: str, quality: int) -> str:
    """The .nc of one fit in the work folder: the preset's iteration count is part of the name."""
    iters = json.loads(CODEC_JSON.read_text())["presets"][preset]["iterations"]
    return f"{preset}{iters}_{Path(image).stem}_q{quality}.nc"


def _fit_job(path: str, quality: int, preset: str, nc_path: str, threads: int,
             time_budget: float | None = None) -> dict[str, Any]:
    """Worker: fit one image and write its .nc atomically, with statistics (also the GPU
    kit's, bench/gpu/coolchic_fits.py; time_budget: its dry runs)."""
    import torch

    torch.set_num_threads(threads)
    from neurocodec import api

    codec = api.load_codec("coolchic")
    img = load_images(Path(path).parent, None)
    arr = next(a for n, a in img if n == Path(path).name)
    t0, c0 = time.perf_counter(), time.process_time()
    data = codec.encode(arr, quality=quality, preset=preset, time_budget=time_budget)
    # CPU seconds too: the wall time counts waits when other work shares (or pauses) the machine
    stats = {"encode_s": time.perf_counter() - t0, "encode_cpu_s": time.process_time() - c0, **codec.last_stats,
             "device": "cuda" if torch.cuda.is_available() else "cpu"}
    tmp = Path(nc_path + ".tmp")
    tmp.write_bytes(data)
    Path(nc_path + ".json").write_text(json.dumps(json_safe(stats)))
    os.replace(tmp, nc_path)
    return stats


def ledger_key(work: Path, preset: str, image: str, quality: int) -> str:
    """A fit's ledger entry: the config digest (work's name) and the fit's file name."""
    return f"{work.name}/{fit_name(preset, image, quality)}"


def load_ledger(path: Path) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else {}


def save_ledger(path: Path, ledger: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_safe(ledger), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def fit_row(nc: Path, name: str, img: np.ndarray, preset: str, quality: int) -> dict[str, Any]:
    """Decode one fit (3 timed decodes, one thread) and measure it from the file."""
    from neurocodec import api

    data = nc.read_bytes()
    stats = json.loads(Path(str(nc) + ".json").read_text())
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        rec = api.decode(data)
        times.append(time.perf_counter() - t0)
    row, _ = measure(img, lambda x, d=data: d, lambda d, r=rec: r)
    info = api.info(data)
    prov = provenance()
    return {"codec": f"coolchic-{preset}", "quality": quality, "image": name, **row,
            # CPU time of a CPU fit (wall time counts waits on a shared machine), wall time of a GPU one
            "enc_ms": 1e3 * (stats["encode_s"] if stats.get("device") == "cuda" else
                             stats.get("encode_cpu_s", stats["encode_s"])), "fit_device": stats.get("device", "cpu"),
            "enc_wall_ms": 1e3 * stats["encode_s"], "dec_ms": 1e3 * statistics.median(times),
            "iterations": stats["iterations"], "compiled": bool(stats.get("compiled", False)),
            "mac_per_pixel": info["mac_per_pixel"],
            "decoder_params": info["decoder_params"], "nc_bytes": len(data),
            "nc_sha256": hashlib.sha256(data).hexdigest(),
            "measured": {k: prov[k] for k in ("git_sha", "date", "machine") if k in prov}}


def run_fits(args: argparse.Namespace, images: list[tuple[str, np.ndarray]], presets: list[str],
             qualities: list[int]) -> Path:
    work = args.work / config_digest()
    work.mkdir(parents=True, exist_ok=True)
    ledger = load_ledger(args.ledger)
    arrays = dict(images)
    # image-major: after a partial run whole curves exist for some images (per-image BD-rates)
    todo = [(n, q, p) for p in presets for n in arrays for q in qualities
            if not (work / fit_name(p, n, q)).exists() and ledger_key(work, p, n, q) not in ledger]
    if args.report_only or not todo:
        return work
    from tqdm import tqdm

    print(f"{len(todo)} fits to run in {work} ({args.jobs} at a time)", flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool, tqdm(total=len(todo), desc="coolchic fits") as bar:
        futs = {pool.submit(_fit_job, str(args.data / n), q, p, str(work / fit_name(p, n, q)), args.threads): (n, q, p)
                for n, q, p in todo}
        for f in as_completed(futs):
            n, q, p = futs[f]
            st = f.result()
            ledger[ledger_key(work, p, n, q)] = fit_row(work / fit_name(p, n, q), n, arrays[n], p, q)
            save_ledger(args.ledger, ledger)
            bar.write(f"{p} {n} q{q}: {st['encode_s']:.0f} s wall, {st['encode_cpu_s']:.0f} s CPU, "
                      f"{st['iterations']} iterations")
            bar.update()
    return work


def decode_rows(args: argparse.Namespace, work: Path, images: list[tuple[str, np.ndarray]], presets: list[str],
                qualities: list[int]) -> list[dict[str, Any]]:
    """Rows of every fit: measured now from its .nc when present (and recorded in the ledger), else the
    ledger's row from the session that fitted it."""
    ledger = load_ledger(args.ledger)
    rows = []
    for p in presets:
        for q in qualities:
            for name, img in images:
                key, nc = ledger_key(work, p, name, q), work / fit_name(p, name, q)
                if nc.exists():
                    ledger[key] = fit_row(nc, name, img, p, q)
                    rows.append({**ledger[key], "source": "decoded here"})
                elif key in ledger:  # JSON keeps NaN (e.g. MS-SSIM of a small image) as null
                    rows.append({**{k: float("nan") if v is None else v for k, v in ledger[key].items()},
                                 "source": "from ledger"})
    if rows:
        save_ledger(args.ledger, ledger)
    return rows


def anchor_rows(images: list[tuple[str, np.ndarray]]) -> list[dict[str, Any]]:
    rows = []
    for f in FORMATS:
        if not available(f):
            continue
        for q in ANCHOR_Q[f]:
            for name, img in images:
                row, _ = measure(img, lambda x, f=f, q=q: pillow_encode(x, f, q), pillow_decode)
                rows.append({"codec": f, "quality": q, "image": name, **row})
    return rows


def render_markdown(p: dict[str, Any]) -> list[str]:
    out = ["# coolchic (per-image fitting) on Kodak", "",
           f"- git `{p['git_sha']}`, {p['date']}; `{p['command']}`",
           f"- machine: {p['machine']['cpu_model']}, {p['machine']['cores']} cores; "
           f"{p['args']['threads']} torch thread(s) per fit, {p['args']['jobs']} fit(s) at a time",
           f"- images: {', '.join(p['images'])}; codec.json digest {p['config_digest']}",
           f"- fits: {p['sources'].get('decoded here', 0)} decoded in this run, "
           f"{p['sources'].get('from ledger', 0)} from the ledger `{p['ledger']}` (measured when fitted, in an "
           "earlier session whose work folder is gone; each row names its git sha, date and .nc sha256); "
           f"fitted on {p['fit_devices']} (encode time: CPU seconds of a CPU fit, wall seconds of a GPU one)", "",
           "PSNR-RGB is the mean of per-image PSNR; bpp the mean of whole-file bpp (the .nc header included). "
           "BD-rate: % rate change at equal PSNR against the reference curve (negative = fewer bits).", ""]
    for codec, c in p["curves"].items():
        if not codec.startswith("coolchic"):
            continue
        out += [f"## {codec}", ""]
        rows = [[q, n, fmt(b, 4), fmt(s, 2), fmt(e / 1e3, 0), fmt(d, 0), fmt(m, 0), fmt(it, 0)]
                for q, n, b, s, e, d, m, it in zip(c["quality"], c["n_images"], c["bpp"], c["psnr"], c["enc_ms"],
                                                   c["dec_ms"], c["mac"], c["iterations"])]
        out += md_table(["quality", "images", "bpp", "PSNR dB", "encode s/image (CPU of 1 thread)",
                         "decode ms (1 thread)", "MAC/px", "iterations (warm-up included)"], rows)
        target = TARGETS.get(codec.split("-", 1)[1])
        if target:
            got = p["bd_rate_pct"][codec]["same_run"].get(target)
            verdict = "not measured" if got is None else ("met" if got <= 0 else "**missed**")
            subset = {Path(n).stem for n in p["images"]}
            if subset != set(DEFAULT_IMAGES.split(",")):  # the target is over the six images
                verdict = f"not decided: {len(subset)} image(s) here, not the target's six; on these " + \
                    ("<= 0 %" if got is not None and got <= 0 else "> 0 %")
            out += ["", f"Target: BD-rate <= 0 % vs {target.upper()} (same run): {verdict} ({fmt(got, 1)} %)."]
        out += ["", "| BD-rate vs | % |", "| :--- | ---: |"]
        out += [f"| {k} (same run) | {fmt(v, 1)} |" for k, v in p["bd_rate_pct"][codec]["same_run"].items()]
        out += [f"| {k} (published) | {fmt(v, 1)} |" for k, v in p["bd_rate_pct"][codec]["published"].items()]
        out.append("")
    out += ["## Anchors (same run, same images)", ""]
    for f in ("jpeg", "webp", "avif"):
        if f in p["curves"]:
            c = p["curves"][f]
            out.append(f"- {f}: " + ", ".join(f"{b:.3f} bpp / {s:.2f} dB" for b, s in zip(c["bpp"], c["psnr"])))
    out += ["", "Published curves are over all 24 Kodak images; the same-run anchors are over the images above.", "",
            f"RD plot: `{p['rd_png']}`"]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    presets = [s for s in args.preset.split(",") if s]
    qualities = [int(q) for q in args.qualities.split(",") if q]
    wanted = {s for s in args.images.split(",") if s}
    images = [(n, a) for n, a in load_images(args.data) if not wanted or Path(n).stem in wanted]
    work = run_fits(args, images, presets, qualities)
    rows = decode_rows(args, work, images, presets, qualities)
    if not rows:
        print("no fits to report", file=sys.stderr)
        return 1
    rows += anchor_rows(images)
    curves = mean_curves(rows)
    for codec, c in curves.items():
        if codec.startswith("coolchic"):
            c["mac"] = [float(np.mean([r["mac_per_pixel"] for r in rows if r["codec"] == codec and r["quality"] == q]))
                        for q in c["quality"]]
            c["iterations"] = [float(np.mean([r["iterations"] for r in rows if r["codec"] == codec
                                              and r["quality"] == q])) for q in c["quality"]]
    json_path = find_anchors_json()
    published = {k: v for k, v in (load_anchor_curves(json_path) if json_path else {}).items() if k in PUBLISHED}
    bd = {}
    for codec, c in curves.items():
        if codec.startswith("coolchic"):
            mine = (c["bpp"], c["psnr"])
            bd[codec] = {"same_run": {f: safe_bd(bd_rate, (curves[f]["bpp"], curves[f]["psnr"]), mine)
                                      for f in FORMATS if f in curves},
                         "published": {n: safe_bd(bd_rate, cv, mine) for n, cv in published.items()}}
    rd_png = plot_rd({k: (c["bpp"], c["psnr"]) for k, c in curves.items() if k.startswith("coolchic")},
                     args.out / "coolchic_rd.png", f"coolchic on {len(images)} Kodak images (1 thread per fit)",
                     published=published,
                     anchors={f"{f.upper()} (same run)": (curves[f]["bpp"], curves[f]["psnr"])
                              for f in FORMATS if f in curves})
    payload = json_safe({**provenance(), "args": display_args(args), "images": [n for n, _ in images],
                         "config_digest": work.name, "curves": curves, "ledger": display_path(args.ledger),
                         "sources": dict(Counter(r["source"] for r in rows if "source" in r)), "bd_rate_pct": bd,
                         "fit_devices": dict(Counter(r.get("fit_device", "cpu") for r in rows if "source" in r)),
                         "rd_png": display_path(rd_png), "per_image": rows,
                         "anchors_json": display_path(json_path) if json_path else None})
    write_reports(args.out, "coolchic", payload, render_markdown(payload))
    if args.codec_dir:
        write_codec_results(args.codec_dir, payload, rows, rd_png)
    return 0


def write_codec_results(folder: Path, payload: dict[str, Any], rows: list[dict[str, Any]], rd_png: Path) -> None:
    """The codec folder's copy: curves, BD-rates and provenance (results.json), the per-image rows
    (per_image.csv) and the RD plot (rd.png)."""
    import csv
    import shutil

    keep = ("git_sha", "command", "date", "machine", "args", "images", "config_digest", "curves", "bd_rate_pct")
    (folder / "results.json").write_text(json.dumps({k: payload[k] for k in keep}, indent=1) + "\n")
    cols = ["codec", "quality", "image", "bpp", "psnr", "ms_ssim", "enc_ms", "dec_ms", "iterations"]
    with open(folder / "per_image.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    shutil.copyfile(rd_png, folder / "rd.png")


if __name__ == "__main__":
    sys.exit(main())
