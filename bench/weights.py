"""Benchmark weightzip against zstd and zipnn on real and synthetic weight files.

    python bench/weights.py            # full run (1 GiB synthetic file)
    python bench/weights.py --quick    # smoke run (64 MiB synthetic file)
    ... --only minilm,synthetic --levels default --threads 2 --out bench/results

Every (dataset, method, phase) runs in a fresh child process (bench/_worker.py) so peak
RSS is per measurement.  Results: <out>/weights.md and <out>/weights.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # allow `python bench/weights.py`; explicit PYTHONPATH entries win
    _n = len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    sys.path.insert(1 + _n, str(Path(__file__).resolve().parent.parent))

from bench._codecs import LEVEL_NAMES, WZ_PREFIX, dominant_float_dtype  # noqa: E402
from bench._common import (  # noqa: E402
    CACHE_DIR,
    MB,
    RESULTS_DIR,
    MiB,
    display_args,
    display_path,
    provenance,
    run_child,
    sha256_file,
    write_reports,
)
from bench._datasets import Dataset, all_datasets  # noqa: E402
from bench._entropy import entropy_bound  # noqa: E402
from bench._report import render_markdown  # noqa: E402

BASELINES = ["zstd-3", "zstd-19", "zipnn", "zipnn-tensor"]
INCOMPRESSIBLE_LIMIT = 1024  # bytes of growth allowed on 64 MiB of random data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64 MiB synthetic file instead of 1 GiB")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="thread count for the multi-threaded measurement (default: all cores)")
    ap.add_argument("--only", action="append", default=None,
                    help="dataset name substring(s), comma separated; repeatable")
    ap.add_argument("--levels", default=",".join(LEVEL_NAMES), help="weightzip levels (comma separated)")
    ap.add_argument("--methods", default=",".join(BASELINES),
                    help="baseline methods (comma separated; empty for none)")
    ap.add_argument("--reps", type=int, default=3, help="best-of-N repetitions for small files")
    ap.add_argument("--budget", type=float, default=30.0,
                    help="stop repeating a measurement after this many seconds")
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="keep repeating fast measurements (up to 50x) until this many seconds")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="scratch dir for compressed outputs (default: /dev/shm if roomy)")
    ap.add_argument("--no-weightzip", action="store_true", help="skip weightzip even if importable")
    return ap.parse_args(argv)


def weightzip_status(disabled: bool) -> str | None:
    """None if weightzip is usable, else the reason it is skipped."""
    if disabled:
        return "disabled with --no-weightzip"
    try:
        import weightzip
        missing = [f for f in ("pack", "unpack", "compress", "decompress") if not hasattr(weightzip, f)]
        return f"weightzip lacks {missing}" if missing else None
    except Exception as e:  # ImportError, or a broken native extension
        return f"import weightzip failed: {type(e).__name__}: {e}"


def pick_workdir(requested: Path | None, largest: int) -> Path:
    if requested is not None:
        requested.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="wzbench-", dir=requested))
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 4 * largest + 512 * MiB:
        return Path(tempfile.mkdtemp(prefix="wzbench-", dir=shm))
    (CACHE_DIR / "tmp").mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="wzbench-", dir=CACHE_DIR / "tmp"))


def measure(ds: Dataset, method: str, orig_sha: str, threads: list[int], args: argparse.Namespace,
            work: Path) -> dict[str, Any]:
    size = ds.path.stat().st_size
    prefix = work / f"{ds.name}.{method}"
    spec: dict[str, Any] = {
        "method": method, "src": str(ds.path), "prefix": str(prefix), "threads": threads,
        "reps": 1 if ds.large else args.reps, "budget_s": args.budget,
        "min_time_s": 0.0 if ds.large else args.min_time,
        "dtype_hint": dominant_float_dtype(ds.path), "orig_sha": orig_sha,
        "result": str(work / "result.json"),
    }
    row: dict[str, Any] = {"dataset": ds.name, "method": method, "orig_size": size, "error": None}
    for phase in ("compress", "decompress"):
        spec["phase"] = phase
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        child = run_child(["-m", "bench._worker", str(spec_path)], Path(spec["result"]))
        res = child.result
        err = res.get("error") if res else f"child exited with code {child.returncode} (crash?)"
        row[f"{phase}_rss"] = {"peak_mb": child.peak_rss_mb, "peak_anon_mb": child.peak_anon_mb,
                               "baseline_mb": res.get("baseline_rss_mb"),
                               "ru_maxrss_mb": child.ru_maxrss_mb, "wall_s": child.wall_s}
        if err:
            row["error"] = f"{phase}: {err}"
            if res.get("traceback"):
                print(res["traceback"], file=sys.stderr)
            break
        runs = res["runs"]
        row[phase] = {t: {"best_s": r["best_s"], "times_s": r["times_s"],
                          "mb_s": size / MB / r["best_s"]} for t, r in runs.items()}
        if phase == "compress":
            row["size_by_threads"] = {t: r["size"] for t, r in runs.items()}
            row["size"] = runs[str(threads[0])]["size"]
            row["size_pct"] = 100.0 * row["size"] / size
        else:
            row["bytes_identical"] = all(r["sha256"] == orig_sha for r in runs.values())
            # torch checkpoints may legitimately come back re-serialised: accept equal tensors
            row["roundtrip_ok"] = all(r["sha256"] == orig_sha or r.get("tensors_equal")
                                      for r in runs.values())
    for t in threads:
        Path(f"{prefix}.t{t}").unlink(missing_ok=True)
    return row


def incompressible(levels: list[str], threads: int, work: Path) -> dict[str, Any]:
    spec = {"phase": "incompressible", "levels": levels, "threads": threads, "seed": 1234,
            "size": 64 * MiB, "result": str(work / "result.json")}
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    child = run_child(["-m", "bench._worker", str(spec_path)], Path(spec["result"]))
    res = child.result or {"error": f"child exited with code {child.returncode}"}
    res["peak_rss_mb"] = child.peak_rss_mb
    res["limit_bytes"] = INCOMPRESSIBLE_LIMIT
    for r in res.get("rows", []):
        r["pass"] = bool(r["roundtrip_ok"] and r["growth_bytes"] <= INCOMPRESSIBLE_LIMIT)
    return res


def _progress(row: dict[str, Any], t1: str, tn: str) -> str:
    if row["error"]:
        return f"ERROR {row['error']}"
    c, d = row["compress"], row["decompress"]
    s = f"{row['size_pct']:6.2f}%  C {c[t1]['mb_s']:8.1f} MB/s  D {d[t1]['mb_s']:8.1f} MB/s"
    if tn != t1:
        s += f"  | {tn}T C {c[tn]['mb_s']:8.1f}  D {d[tn]['mb_s']:8.1f}"
    ok = ("ok" if row.get("bytes_identical") else "tensors equal, bytes differ"
          if row.get("roundtrip_ok") else "ROUNDTRIP MISMATCH")
    return s + f"  RSS {row['compress_rss']['peak_mb']:.0f}/{row['decompress_rss']['peak_mb']:.0f} MB  {ok}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [x for x in args.levels.split(",") if x]
    baselines = [x for x in args.methods.split(",") if x]
    only = {o for arg in args.only for o in arg.split(",") if o} if args.only else None
    threads = sorted({1, max(1, args.threads)})
    t1, tn = str(threads[0]), str(threads[-1])

    wz_skip = weightzip_status(args.no_weightzip)
    if wz_skip:
        print(f"weightzip skipped: {wz_skip}")
    methods = baselines + ([] if wz_skip else [WZ_PREFIX + lv for lv in levels])

    t_start = time.time()
    datasets = all_datasets(args.quick, only)
    if not datasets:
        print("no datasets selected")
        return 1
    work = pick_workdir(args.workdir, max(d.path.stat().st_size for d in datasets))
    print(f"scratch dir: {work}; threads {threads}; methods {methods}")
    results: list[dict[str, Any]] = []
    ds_info: list[dict[str, Any]] = []
    try:
        for ds in datasets:
            size = ds.path.stat().st_size
            print(f"\n== {ds.name}: {ds.path} ({size / MB:.2f} MB, {ds.dtype})", flush=True)
            orig_sha = sha256_file(ds.path)
            ent = entropy_bound(ds.path)
            print(f"   order-0 byte-plane entropy bound: {ent['per_tensor_pct']:.2f}% per tensor, "
                  f"{ent['per_chunk_pct']:.2f}% per 256 KiB chunk, {ent['global_pct']:.2f}% global",
                  flush=True)
            ds_info.append({"name": ds.name, "path": display_path(ds.path), "size": size, "dtype": ds.dtype,
                            "source": ds.source, "sha256": orig_sha, "entropy": ent,
                            "reps": 1 if ds.large else args.reps})
            for m in methods:
                if m == "zipnn-tensor" and ds.path.suffix != ".safetensors":
                    continue
                row = measure(ds, m, orig_sha, threads, args, work)
                results.append(row)
                print(f"   {m:<20} {_progress(row, t1, tn)}", flush=True)
        inc = None
        if not wz_skip:
            print("\n== incompressible input (64 MiB random bytes through weightzip.compress)")
            inc = incompressible(levels, threads[-1], work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    payload = {**provenance(), "args": display_args(args),
               "threads": threads, "methods": methods, "weightzip_skipped": wz_skip,
               "elapsed_s": time.time() - t_start, "datasets": ds_info, "results": results,
               "incompressible": inc}
    write_reports(args.out, "weights", payload, render_markdown(payload))
    bad = [r for r in results if r["error"] or not r.get("roundtrip_ok")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
