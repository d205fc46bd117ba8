"""Peak memory of weightzip.pack / weightzip.unpack on a multi-GB safetensors file.

    python bench/memory.py                  # 3 GB file (BF16 + some FP32)
    python bench/memory.py --size-gb 2 --workdir /big/disk --threads 2

The file is generated deterministically (largest tensor 512 MiB) and cached in the workdir.
Each operation runs in its own child process (bench/_worker.py); we report its peak RSS
(VmHWM, plus ru_maxrss from os.wait4 -- the per-child form of getrusage(RUSAGE_CHILDREN)),
the sampled peak of anonymous memory, and compare them with the largest tensor.  The
roundtrip is checked with sha256.  Results: <out>/memory.md and <out>/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # allow `python bench/memory.py`; explicit PYTHONPATH entries win
    _n = len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    sys.path.insert(1 + _n, str(Path(__file__).resolve().parent.parent))

from bench._codecs import DEFAULT_LEVEL, WZ_PREFIX, dominant_float_dtype  # noqa: E402
from bench._common import (  # noqa: E402
    CACHE_DIR,
    MB,
    RESULTS_DIR,
    MiB,
    TensorSpec,
    display_args,
    display_path,
    fmt,
    md_table,
    provenance,
    provenance_md,
    read_st_header,
    run_child,
    sha256_file,
    write_reports,
    write_synthetic_safetensors,
)
from bench.weights import weightzip_status  # noqa: E402

SEED = 7
GEN_VERSION = 1


def memory_specs(target_bytes: int, hidden: int = 4096, ffn: int = 11008) -> list[TensorSpec]:
    """512 MiB BF16 embedding, a 128 MiB FP32 head, FP32 norms, BF16 layers up to the target."""
    vocab = 512 * MiB // (2 * hidden)
    specs = [TensorSpec("model.embed_tokens.weight", (vocab, hidden)),
             TensorSpec("score.weight", (8192, hidden), dtype="F32", scale=0.01)]
    total = sum(int(s.shape[0]) * hidden * (2 if s.dtype == "BF16" else 4) for s in specs)
    layer = 0
    while True:
        p = f"model.layers.{layer}."
        layer_specs = [
            TensorSpec(p + "input_layernorm.weight", (hidden,), dtype="F32", kind="norm"),
            TensorSpec(p + "self_attn.q_proj.weight", (hidden, hidden)),
            TensorSpec(p + "self_attn.k_proj.weight", (hidden // 4, hidden)),
            TensorSpec(p + "self_attn.v_proj.weight", (hidden // 4, hidden)),
            TensorSpec(p + "self_attn.o_proj.weight", (hidden, hidden), scale=0.01),
            TensorSpec(p + "post_attention_layernorm.weight", (hidden,), dtype="F32", kind="norm"),
            TensorSpec(p + "mlp.gate_proj.weight", (ffn, hidden)),
            TensorSpec(p + "mlp.up_proj.weight", (ffn, hidden)),
            TensorSpec(p + "mlp.down_proj.weight", (hidden, ffn), scale=0.01),
        ]
        for s in layer_specs:
            n = int(s.shape[0]) * (s.shape[1] if len(s.shape) > 1 else 1) * (2 if s.dtype == "BF16" else 4)
            if total + n > target_bytes:
                return specs + [TensorSpec("model.norm.weight", (hidden,), dtype="F32", kind="norm")]
            specs.append(s)
            total += n
        layer += 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=3.0, help="generated file size in GB (2-4 sensible)")
    ap.add_argument("--workdir", type=Path, default=CACHE_DIR / "memory",
                    help="where the generated file and outputs go (needs ~3x size of disk)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="multi-thread count")
    ap.add_argument("--levels", default=DEFAULT_LEVEL, help="weightzip levels (comma separated)")
    ap.add_argument("--baselines", default="zstd-3,zipnn-tensor",
                    help="reference methods run the same way (comma separated; '' for none)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    return ap.parse_args(argv)


def run_op(method: str, src: Path, prefix: Path, t: int, phase: str, work: Path) -> dict[str, Any]:
    spec = {"method": method, "phase": phase, "src": str(src), "prefix": str(prefix), "threads": [t],
            "reps": 1, "budget_s": 0.0, "min_time_s": 0.0, "dtype_hint": dominant_float_dtype(src),
            "result": str(work / "result.json")}
    (work / "spec.json").write_text(json.dumps(spec))
    ch = run_child(["-m", "bench._worker", str(work / "spec.json")], work / "result.json")
    res = ch.result
    row: dict[str, Any] = {"method": method, "op": phase, "threads": t, "peak_rss_mb": ch.peak_rss_mb,
                           "ru_maxrss_mb": ch.ru_maxrss_mb, "peak_anon_mb": ch.peak_anon_mb,
                           "baseline_mb": res.get("baseline_rss_mb"), "wall_s": ch.wall_s,
                           "error": res.get("error") if res else f"child exited with {ch.returncode}"}
    if not row["error"]:
        r = res["runs"][str(t)]
        row["seconds"] = r["best_s"]
        row.update({k: r[k] for k in ("size", "sha256") if k in r})
    return row


def render(p: dict[str, Any]) -> list[str]:
    big = p["largest_tensor_bytes"] / MB
    L = ["# weightzip benchmark: peak memory", "", *provenance_md(p),
         f"- input: `{p['file']}`: {p['file_bytes'] / MB:.0f} MB, {p['n_tensors']} tensors "
         f"({p['dtypes']}), largest tensor {big:.0f} MB (`{p['largest_tensor']}`)", ""]
    if p["weightzip_skipped"]:
        L += [f"> **weightzip not measured**: {p['weightzip_skipped']}", ""]
    rows = []
    for r in p["rows"]:
        if r["error"]:
            rows.append([r["method"], r["op"], r["threads"], "ERROR: " + str(r["error"])[:100], *[""] * 7])
            continue
        base = r["baseline_mb"] or 0.0
        size = fmt(100 * r["size"] / p["file_bytes"], 2) if "size" in r else ""
        ok = "" if "sha256" not in r else ("ok" if r["sha256"] == p["sha256"] else "**MISMATCH**")
        rows.append([r["method"], r["op"], r["threads"], fmt(r["peak_rss_mb"], 0), fmt(r["ru_maxrss_mb"], 0),
                     fmt(r["peak_anon_mb"], 0), fmt(base, 0), fmt(r["peak_rss_mb"] / big, 2),
                     fmt((r["peak_rss_mb"] - base) / big, 2),
                     fmt(p["file_bytes"] / MB / r["seconds"], 0), size or ok])
    L += md_table(["method", "op", "threads", "peak RSS MB", "ru_maxrss MB", "peak anon MB",
                   "after-import MB", "peak / largest", "(peak - import) / largest", "MB/s",
                   "size % / roundtrip"], rows)
    L += ["", "- peak RSS = VmHWM of the child (includes mmapped file pages it touched); "
          "ru_maxrss = os.wait4 rusage of the same child, which on Linux also absorbs the "
          "parent's high-water mark at fork/exec, so it is an upper bound;",
          "- peak anon = RssAnon sampled every 5 ms (heap only); after-import = VmHWM after "
          "imports, before any work; MB/s of original bytes, file to file, single run.", ""]
    return L


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = sorted({1, max(1, args.threads)})
    levels = [x for x in args.levels.split(",") if x]
    wz_skip = weightzip_status(False)
    if wz_skip:
        print(f"weightzip skipped: {wz_skip}")
    methods = [m for m in args.baselines.split(",") if m] + ([] if wz_skip else [WZ_PREFIX + lv for lv in levels])
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    target = int(args.size_gb * 1e9)
    src = work / f"memory-{args.size_gb:g}GB-s{SEED}-v{GEN_VERSION}.safetensors"
    if not src.exists():
        print(f"generating {src} ({target / MB:.0f} MB) ...", flush=True)
        write_synthetic_safetensors(src, memory_specs(target), SEED, block_bytes=16 * MiB)
    hdr = read_st_header(src)
    largest = max(hdr.tensors, key=lambda t: t.end - t.begin)
    dtypes = sorted({t.dtype for t in hdr.tensors})
    print(f"input {src}: {src.stat().st_size / MB:.0f} MB, largest tensor {largest.name} "
          f"{(largest.end - largest.begin) / MB:.0f} MB; hashing ...", flush=True)
    sha = sha256_file(src)
    t_start = time.time()
    rows: list[dict[str, Any]] = []
    for m in methods:
        for t in threads:
            prefix = work / f"out.{m}"
            for phase in ("compress", "decompress"):
                r = run_op(m, src, prefix, t, phase, work)
                rows.append(r)
                msg = r["error"] or (f"peak RSS {r['peak_rss_mb']:.0f} MB (ru_maxrss {r['ru_maxrss_mb']:.0f}, "
                                     f"anon {r['peak_anon_mb']:.0f}), {r['seconds']:.1f} s")
                if "sha256" in r:
                    msg += ", roundtrip " + ("ok" if r["sha256"] == sha else "MISMATCH")
                print(f"  {m:<20} {phase:<10} {t}T  {msg}", flush=True)
                if r["error"]:
                    break
            Path(f"{prefix}.t{t}").unlink(missing_ok=True)
    payload = {**provenance(), "args": display_args(args),
               "weightzip_skipped": wz_skip, "elapsed_s": time.time() - t_start, "file": display_path(src),
               "file_bytes": src.stat().st_size, "sha256": sha, "n_tensors": len(hdr.tensors),
               "dtypes": ", ".join(dtypes), "largest_tensor": largest.name,
               "largest_tensor_bytes": largest.end - largest.begin, "rows": rows}
    write_reports(args.out, "memory", payload, render(payload))
    bad = [r for r in rows if r["error"] or ("sha256" in r and r["sha256"] != sha)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
