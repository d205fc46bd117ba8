"""weightzip vs ZipNN speed, one thread, ratios from the same run (issue 14's targets).

    python bench/speed.py                      # in-memory MiniLM, small files, thread scaling
    python bench/speed.py --only memory,files  # parts: memory, files, threads
    python bench/speed.py --reps 7

* memory: MiniLM BF16 / FP32 tensor bytes as one buffer, `weightzip.compress/decompress`
  against `ZipNN(...).compress/decompress` (both in memory, threads=1).
* files: small real checkpoints file to file: `weightzip.pack/unpack` against ZipNN reading,
  compressing and writing (bench/_codecs.py's whole-file zipnn codec).
* threads: `weightzip.pack` of the synthetic BF16 file at 1 and 2 threads (wall time).

One-thread figures are process CPU seconds (min and median over --reps runs, each in this
process after one warm-up), so a busy machine changes them less than wall time; MB/s are of
the uncompressed size. Results: bench/results/speed.md and speed.json.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS_DIR, fmt, md_table, provenance, provenance_md, read_st_header, write_reports

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "weights"
SMALL_FILES = ["lora_roberta-base_agnews_series/checkpoint-500/adapter_model.safetensors",
               "lora_roberta-base_agnews_series/checkpoint-2400/adapter_model.safetensors",
               "rwkv_tiny/tiny-rwkv-4v0-660K-FP16.safetensors", "rwkv_tiny/tiny-rwkv-7v0-834K-FP32.safetensors",
               "stories260K/stories260K.safetensors", "silero_vad_16k.safetensors"]


def timed(fn: Callable[[], Any], reps: int, wall: bool = False,
          setup: Callable[[], Any] | None = None) -> tuple[list[float], Any]:
    """fn() once to warm up, then `reps` timed runs (process CPU seconds unless wall); setup()
    runs before each, untimed."""
    clock = time.perf_counter if wall else time.process_time
    out = fn()
    times = []
    for _ in range(reps):
        if setup is not None:
            setup()
        gc.collect()
        t0 = clock()
        out = fn()
        times.append(clock() - t0)
    return times, out


def stats(times: list[float], nbytes: int) -> dict[str, float]:
    return {"min_s": min(times), "median_s": statistics.median(times),
            "mbps_best": nbytes / min(times) / 1e6, "mbps_median": nbytes / statistics.median(times) / 1e6}


def tensor_bytes(path: Path) -> tuple[bytes, str]:
    """All tensor bytes of a safetensors file as one buffer, and the zipnn name of the float
    dtype holding most of them (not the first tensor's: MiniLM's is an int64 index, which
    had every buffer measured as float32 before)."""
    from bench._codecs import dominant_float_dtype

    hdr = read_st_header(path)
    raw = path.read_bytes()
    begin = min(t.begin for t in hdr.tensors)
    return raw[begin:max(t.end for t in hdr.tensors)], dominant_float_dtype(path)


def bench_memory(reps: int) -> list[dict[str, Any]]:
    import ml_dtypes
    import numpy as np
    from zipnn import ZipNN

    import weightzip
    from bench._datasets import all_datasets

    rows = []
    for ds in all_datasets(True, {"minilm-bf16", "minilm-fp32"}):
        buf, zdt = tensor_bytes(ds.path)
        npdt = {"bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float16": np.float16}[zdt]
        arr = np.frombuffer(buf, npdt)
        z = ZipNN(input_format="byte", bytearray_dtype=zdt, threads=1, method="HUFFMAN")
        copies = [bytearray(buf) for _ in range(reps + 1)]  # zipnn rewrites its input in place
        tz, zblob = timed(lambda z=z, c=copies: z.compress(c.pop()), reps)
        zd = ZipNN(threads=1)
        tzd, zback = timed(lambda zd=zd, b=zblob: zd.decompress(b), reps)
        assert bytes(zback) == buf
        n = len(buf)
        for level in ("default", "fast"):  # the target is at default; fast for reference
            tw, blob = timed(lambda a=arr, lv=level: weightzip.compress(a, level=lv, threads=1), reps)
            td, back = timed(lambda b=blob: weightzip.decompress(b, threads=1), reps)
            assert back.tobytes() == buf
            name = ds.name + ("" if level == "default" else f" ({level} level)")
            row = {"dataset": name, "mb": n / 1e6, "wz_pct": 100 * len(blob) / n, "zipnn_pct": 100 * len(zblob) / n,
                   "wz_c": stats(tw, n), "wz_d": stats(td, n), "zipnn_c": stats(tz, n), "zipnn_d": stats(tzd, n)}
            rows.append(row)
            print(f"memory {name}: C {row['wz_c']['mbps_best']:.0f} vs {row['zipnn_c']['mbps_best']:.0f}, "
                  f"D {row['wz_d']['mbps_best']:.0f} vs {row['zipnn_d']['mbps_best']:.0f} MB/s", flush=True)
    return rows


def bench_files(reps: int, work: Path) -> list[dict[str, Any]]:
    from bench._codecs import dominant_float_dtype, get_codec

    rows = []
    for rel in SMALL_FILES:
        src = SHARED / rel
        if not src.exists():
            print(f"skip {rel}: not in {SHARED}")
            continue
        n = src.stat().st_size
        row: dict[str, Any] = {"file": rel, "mb": n / 1e6}
        for name, method in (("wz", "weightzip-default"), ("zipnn", "zipnn")):
            codec = get_codec(method, dominant_float_dtype(src))
            c, d = work / f"{name}.c", work / f"{name}.d"

            def pack(codec=codec, src=src, c=c) -> None:
                c.unlink(missing_ok=True)
                codec.compress(src, c, 1)

            def unpack(codec=codec, c=c, d=d) -> None:
                d.unlink(missing_ok=True)
                codec.decompress(c, d, 1)

            tc, _ = timed(pack, reps)
            td, _ = timed(unpack, reps)
            assert d.read_bytes() == src.read_bytes(), f"{method} {rel}: round trip differs"
            row[f"{name}_pct"] = 100 * c.stat().st_size / n
            row[f"{name}_c"], row[f"{name}_d"] = stats(tc, n), stats(td, n)
        rows.append(row)
        print(f"file {rel}: pack {row['wz_c']['mbps_best']:.0f} vs {row['zipnn_c']['mbps_best']:.0f}, "
              f"unpack {row['wz_d']['mbps_best']:.0f} vs {row['zipnn_d']['mbps_best']:.0f} MB/s", flush=True)
    return rows


def bench_threads(reps: int, work: Path, quick: bool) -> list[dict[str, Any]]:
    import weightzip
    from bench._datasets import synthetic_dataset

    ds = synthetic_dataset(quick)
    n = ds.path.stat().st_size
    rows = []
    for t in (1, 2):
        dst = work / f"syn{t}.wz"

        def pack(dst=dst, t=t) -> None:
            weightzip.pack(ds.path, dst, threads=t, progress=False)

        # the previous output is removed untimed: freeing its pages is not the pack's work
        times, _ = timed(pack, reps, wall=True, setup=lambda dst=dst: dst.unlink(missing_ok=True))
        rows.append({"threads": t, **stats(times, n)})
        dst.unlink()
        print(f"threads {t}: pack {rows[-1]['mbps_best']:.0f} MB/s (wall)", flush=True)
    rows[1]["scaling"] = rows[0]["min_s"] / rows[1]["min_s"]
    return rows


def ratio(a: dict[str, float], b: dict[str, float]) -> str:
    return f"{a['mbps_best'] / b['mbps_best']:.2f} / {a['mbps_median'] / b['mbps_median']:.2f}"


def speeds(r: dict[str, Any]) -> list[str]:
    """compress MB/s (wz / zipnn), its ratio, decompress MB/s, its ratio."""
    return [f"{r['wz_c']['mbps_best']:.0f} / {r['zipnn_c']['mbps_best']:.0f}", ratio(r["wz_c"], r["zipnn_c"]),
            f"{r['wz_d']['mbps_best']:.0f} / {r['zipnn_d']['mbps_best']:.0f}", ratio(r["wz_d"], r["zipnn_d"])]


def render(p: dict[str, Any]) -> list[str]:
    out = ["# weightzip vs ZipNN: speed (one thread, default level)", "", *provenance_md(p),
           f"- {p['reps']} timed runs each after a warm-up; process CPU time; MB/s of uncompressed bytes;"
           " ratio = weightzip / ZipNN at the best and at the median run",
           f"- files are written to {p.get('work_dir', 'the temporary directory')}", ""]
    if p.get("memory"):
        out += ["## In memory, one buffer (target: compress and decompress >= 2x ZipNN)", ""]
        out += md_table(["dataset", "MB", "size % wz / zipnn", "compress MB/s wz / zipnn (best)",
                         "ratio best / median", "decompress MB/s wz / zipnn (best)", "ratio best / median"],
                        [[r["dataset"], fmt(r["mb"], 1), f"{r['wz_pct']:.2f} / {r['zipnn_pct']:.2f}", *speeds(r)]
                         for r in p["memory"]]) + [""]
    if p.get("files"):
        out += ["## Small files, file to file (target: pack and unpack >= 1.5x ZipNN)", ""]
        out += md_table(["file", "MB", "size % wz / zipnn", "pack MB/s wz / zipnn (best)", "ratio best / median",
                         "unpack MB/s wz / zipnn (best)", "ratio best / median"],
                        [[r["file"], fmt(r["mb"], 2), f"{r['wz_pct']:.2f} / {r['zipnn_pct']:.2f}", *speeds(r)]
                         for r in p["files"]]) + [""]
    if p.get("threads"):
        out += ["## Thread scaling, `weightzip.pack` of the synthetic BF16 file (wall time; target >= 1.8x)", ""]
        out += md_table(["threads", "best MB/s", "median MB/s", "speed-up"],
                        [[r["threads"], f"{r['mbps_best']:.0f}", f"{r['mbps_median']:.0f}",
                          fmt(r.get("scaling"), 2) if r.get("scaling") else "1"] for r in p["threads"]]) + [""]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="memory,files,threads")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="64 MiB synthetic file instead of 1 GiB")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    payload: dict[str, Any] = {**provenance(), "reps": args.reps}
    # Outputs go to tmpfs where there is one: on these VMs the disk's writeback otherwise sets
    # the pace of a 1 GiB pack (two-thread runs varied 2x), not the coder.
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    payload["work_dir"] = "tmpfs" if base else "the temporary directory"
    with tempfile.TemporaryDirectory(prefix="wzspeed", dir=base) as tmp:
        work = Path(tmp)
        if "memory" in parts:
            payload["memory"] = bench_memory(args.reps)
        if "files" in parts:
            payload["files"] = bench_files(args.reps, work)
        if "threads" in parts:
            payload["threads"] = bench_threads(args.reps, work, args.quick)
    write_reports(args.out, "speed", payload, render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
