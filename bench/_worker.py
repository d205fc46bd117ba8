"""Child process for one measurement: `python -m bench._worker SPEC.json`.

Running each (dataset, method, phase) in a fresh interpreter keeps peak-RSS numbers
separate; the parent reads this process's ru_maxrss with os.wait4.  The JSON result is
written to spec["result"].

Phases
  compress        for each thread count: best-of-N timing of codec.compress(src -> prefix.tT)
  decompress      for each thread count: best-of-N timing of codec.decompress(prefix.tT -> out),
                  then sha256 of the output
  incompressible  weightzip.compress / decompress of random bytes, reports size growth
"""

from __future__ import annotations

import functools
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from bench._common import sha256_file, vm_hwm_mb


def _timed_reps(fn: Callable[[], None], reps: int, budget_s: float, min_time_s: float,
                max_reps: int = 50) -> list[float]:
    """Run fn at least `reps` times (and more, up to max_reps, until min_time_s is spent, so
    millisecond-scale runs get a stable best-of); stop early once budget_s is spent (>= 1 run)."""
    times: list[float] = []
    spent = 0.0
    while len(times) < max_reps:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if spent >= budget_s or (len(times) >= reps and spent >= min_time_s):
            break
    return times


def _import_for(method: str) -> None:
    """Import the method's library before the RSS baseline is taken."""
    if method.startswith("zstd"):
        import zstandard  # noqa: F401
    elif method.startswith("zipnn"):
        import zipnn  # noqa: F401
    else:
        import weightzip  # noqa: F401


def _torch_equal(a: Any, b: Any) -> bool:
    """Bitwise equality of two torch.load results (nested dicts / lists / tensors)."""
    import torch
    if torch.is_tensor(a):
        return (torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))
    if isinstance(a, dict):
        return (isinstance(b, dict) and list(a) == list(b)
                and all(_torch_equal(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_torch_equal(x, y) for x, y in zip(a, b)))
    return bool(a == b)


def _same_tensors(orig: Path, out: Path) -> bool:
    import torch
    try:
        load = lambda p: torch.load(p, map_location="cpu", weights_only=True)  # noqa: E731
        return _torch_equal(load(orig), load(out))
    except Exception:
        return False


def run_codec(spec: dict[str, Any]) -> dict[str, Any]:
    from bench._codecs import get_codec
    method = spec["method"]
    _import_for(method)
    base = vm_hwm_mb()
    codec = get_codec(method, spec.get("dtype_hint"))
    src, prefix = Path(spec["src"]), Path(spec["prefix"])
    runs: dict[str, Any] = {}
    mismatched: list[tuple[str, Path]] = []
    for t in spec["threads"]:
        cmp_path = Path(f"{prefix}.t{t}")
        if spec["phase"] == "compress":
            times = _timed_reps(functools.partial(codec.compress, src, cmp_path, t), spec["reps"],
                                spec["budget_s"], spec["min_time_s"])
            runs[str(t)] = {"times_s": times, "best_s": min(times), "size": cmp_path.stat().st_size}
        else:
            out = Path(f"{cmp_path}.out")
            times = _timed_reps(functools.partial(codec.decompress, cmp_path, out, t), spec["reps"],
                                spec["budget_s"], spec["min_time_s"])
            sha = sha256_file(out)
            runs[str(t)] = {"times_s": times, "best_s": min(times), "sha256": sha}
            if sha != spec.get("orig_sha") and src.suffix != ".safetensors":
                mismatched.append((str(t), out))  # torch checkpoint: compare tensors below
            else:
                out.unlink()
    peak = vm_hwm_mb()  # before the (torch-importing) tensor comparison
    for t, out in mismatched:
        runs[t]["tensors_equal"] = _same_tensors(src, out)
        out.unlink()
    return {"baseline_rss_mb": base, "peak_rss_mb": peak, "runs": runs}


def run_incompressible(spec: dict[str, Any]) -> dict[str, Any]:
    import ml_dtypes
    import numpy as np

    import weightzip

    base = vm_hwm_mb()
    data = np.random.default_rng(spec["seed"]).bytes(spec["size"])
    inputs: dict[str, Any] = {
        "bytes": data,
        "uint8 array": np.frombuffer(data, dtype=np.uint8),
        "bfloat16 array (random bits)": np.frombuffer(data, dtype=ml_dtypes.bfloat16),
    }
    rows = []
    for level in spec["levels"]:
        for kind, buf in inputs.items():
            t0 = time.perf_counter()
            blob = weightzip.compress(buf, level=level, threads=spec["threads"])
            tc = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = weightzip.decompress(blob, threads=spec["threads"])
            td = time.perf_counter() - t0
            back = out.tobytes() if isinstance(out, np.ndarray) else bytes(out)
            same_dtype = (not isinstance(buf, np.ndarray)) or (
                isinstance(out, np.ndarray) and out.dtype == buf.dtype and out.shape == buf.shape)
            rows.append({"level": level, "input": kind, "size": len(data), "compressed": len(blob),
                         "growth_bytes": len(blob) - len(data), "roundtrip_ok": back == data,
                         "dtype_shape_ok": bool(same_dtype), "compress_s": tc, "decompress_s": td})
            print(f"  incompressible {level:>8} {kind:<28} growth {len(blob) - len(data):+d} B",
                  flush=True)
    return {"baseline_rss_mb": base, "rows": rows}


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        if spec["phase"] == "incompressible":
            res = run_incompressible(spec)
        else:
            res = run_codec(spec)
        res["error"] = None
        res.setdefault("peak_rss_mb", vm_hwm_mb())
        rc = 0
    except BaseException as e:  # report any failure (incl. import errors) to the parent
        res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        rc = 1
    Path(spec["result"]).write_text(json.dumps(res))
    return rc


if __name__ == "__main__":
    sys.exit(main())
