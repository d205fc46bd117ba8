"""Shared helpers for the weightzip benchmarks: paths, provenance, safetensors I/O,
child-process measurement (peak RSS) and report writing.

Paths in reports go through display_path (neurocodec.tools.paths): relative to the repository
root, ``../shared/...`` for the sibling data folder, never the build machine's absolute path."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from neurocodec.tools.paths import display_command, display_path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
MB = 1_000_000  # throughput and sizes are reported in decimal MB
MiB = 1 << 20

# safetensors dtype -> (itemsize, is_float, zipnn bytearray_dtype or None)
ST_DTYPES: dict[str, tuple[int, bool, str | None]] = {
    "F64": (8, True, None), "F32": (4, True, "float32"), "F16": (2, True, "float16"),
    "BF16": (2, True, "bfloat16"), "F8_E4M3": (1, True, "float8_e4m3fn"),
    "F8_E5M2": (1, True, "float8_e5m2"), "I64": (8, False, None), "I32": (4, False, None),
    "I16": (2, False, None), "I8": (1, False, None), "U64": (8, False, None),
    "U32": (4, False, None), "U16": (2, False, None), "U8": (1, False, None),
    "BOOL": (1, False, None),
}


# --------------------------------------------------------------------------- provenance

def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "uncommitted"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _weightzip_version() -> str:
    try:
        import weightzip
        return str(getattr(weightzip, "__version__", None) or _version("neurocodec"))
    except Exception as e:  # not importable: say so instead of failing the report
        return f"unavailable ({type(e).__name__})"


def machine_info() -> dict[str, Any]:
    cpu, simd = "unknown", "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):  # the SIMD level decides which coder paths run
                flags = set(line.split(":", 1)[1].split())
                simd = "AVX-512" + (" BF16" if "avx512_bf16" in flags else "") if "avx512bw" in flags else \
                    "AVX2" if "avx2" in flags else "SSE"
                break
    except OSError:
        pass
    ram_gb = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu_model": cpu, "simd": simd, "cores": os.cpu_count(), "ram_gb": round(ram_gb, 1),
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "zipnn": _version("zipnn"), "zstandard": _version("zstandard"),
        "torch": _version("torch"), "weightzip": _weightzip_version(),
    }
    try:
        import zstandard
        info["libzstd"] = ".".join(map(str, zstandard.ZSTD_VERSION))
    except ImportError:
        pass
    return info


def provenance() -> dict[str, Any]:
    return {
        "git_sha": git_sha(),
        "command": display_command([sys.executable, *sys.argv]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def provenance_md(prov: dict[str, Any]) -> list[str]:
    m = prov["machine"]
    return [
        f"- git: `{prov['git_sha']}`",
        f"- command: `{prov['command']}`",
        f"- date: {prov['date']}",
        f"- machine: {m['cpu_model']} ({m.get('simd', '?')}), {m['cores']} cores, {m['ram_gb']} GB RAM, "
        f"{m['platform']}",
        f"- versions: python {m['python']}, numpy {m['numpy']}, zipnn {m['zipnn']}, "
        f"zstandard {m['zstandard']} (libzstd {m.get('libzstd', '?')}), torch {m['torch']}, "
        f"weightzip {m['weightzip']}",
    ]


def display_args(args: Any) -> dict[str, str]:
    """argparse namespace -> {name: str(value)} as recorded, paths via display_path."""
    return {k: display_path(v) if isinstance(v, Path) else str(v) for k, v in vars(args).items()}


# --------------------------------------------------------------------------- files

def sha256_file(path: Path, bufsize: int = 8 * MiB) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_bytearray(path: Path) -> bytearray:
    """Read a file into a fresh, mutable buffer (zipnn mutates its input in place)."""
    buf = bytearray(os.path.getsize(path))
    with open(path, "rb") as f:
        f.readinto(buf)
    return buf


def write_bytes(path: Path, data: Any) -> None:
    with open(path, "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------- safetensors

@dataclass
class TensorInfo:
    name: str
    dtype: str
    shape: list[int]
    begin: int  # absolute file offset
    end: int


@dataclass
class StHeader:
    data_start: int
    tensors: list[TensorInfo]  # sorted by offset
    metadata: dict[str, str] = field(default_factory=dict)


def read_st_header(path_or_buf: Path | bytes | bytearray | memoryview) -> StHeader:
    if isinstance(path_or_buf, Path):
        with open(path_or_buf, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            raw = f.read(n)
    else:
        n = int.from_bytes(bytes(path_or_buf[:8]), "little")
        raw = bytes(path_or_buf[8:8 + n])
    hdr = json.loads(raw)
    start = 8 + n
    meta = hdr.pop("__metadata__", None) or {}
    ts = [TensorInfo(k, v["dtype"], list(v["shape"]), start + v["data_offsets"][0],
                     start + v["data_offsets"][1]) for k, v in hdr.items()]
    ts.sort(key=lambda t: (t.begin, t.end))
    return StHeader(start, ts, meta)


@dataclass
class TensorSpec:
    """A synthetic tensor: `kind` is 'weight' (N(0, scale) with per-row lognormal scales),
    'norm' (~1 +- 0.05) or 'bias' (~N(0, scale/4))."""
    name: str
    shape: tuple[int, ...]
    dtype: str = "BF16"  # BF16 | F16 | F32
    kind: str = "weight"
    scale: float = 0.02


def _to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit pattern, round-to-nearest-even (inputs are finite)."""
    u = x.view(np.uint32)
    return ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)


def write_synthetic_safetensors(path: Path, specs: Sequence[TensorSpec], seed: int,
                                block_bytes: int = 64 * MiB) -> None:
    """Stream a deterministic synthetic safetensors file to `path` (bounded memory)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "generator": "weightzip-bench",
                                               "seed": str(seed)}}
    off = 0
    for s in specs:
        nbytes = int(np.prod(s.shape)) * ST_DTYPES[s.dtype][0]
        header[s.name] = {"dtype": s.dtype, "shape": list(s.shape), "data_offsets": [off, off + nbytes]}
        off += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    tmp = path.with_suffix(path.suffix + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for idx, s in enumerate(specs):
            rng = np.random.default_rng([seed, idx])
            rows = s.shape[0] if len(s.shape) > 1 else 1
            cols = int(np.prod(s.shape)) // rows
            row_scale = (s.scale * np.exp(rng.normal(0.0, 0.3, rows))).astype(np.float32)
            step = max(1, block_bytes // (4 * cols))
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                z = rng.standard_normal((r1 - r0, cols), dtype=np.float32)
                if s.kind == "norm":
                    x = 1.0 + 0.05 * z
                elif s.kind == "bias":
                    x = z * (s.scale / 4)
                else:
                    x = z * row_scale[r0:r1, None]
                x = np.ascontiguousarray(x, dtype=np.float32)
                if s.dtype == "BF16":
                    f.write(_to_bf16_bits(x).tobytes())
                elif s.dtype == "F16":
                    f.write(x.astype(np.float16).tobytes())
                else:
                    f.write(x.tobytes())
    tmp.replace(path)


# --------------------------------------------------------------------------- child processes

@dataclass
class ChildResult:
    returncode: int
    peak_rss_mb: float      # VmHWM reported by the child, else its ru_maxrss
    ru_maxrss_mb: float     # ru_maxrss of exactly this child (os.wait4); >= parent's peak, see vm_hwm_mb
    peak_anon_mb: float     # sampled max of RssAnon (heap/anonymous memory only)
    wall_s: float
    result: dict[str, Any]  # JSON written by the child (empty on failure)


def _read_rss_anon_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_child(args: Sequence[str], result_path: Path, env_extra: dict[str, str] | None = None,
              sample_s: float = 0.005) -> ChildResult:
    """Run a fresh Python child, return its own peak RSS (wait4) and its JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(REPO_ROOT)]))
    env.update(env_extra or {})
    result_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env)
    peak_anon = 0
    done = threading.Event()

    def sampler() -> None:
        nonlocal peak_anon
        while not done.is_set():
            peak_anon = max(peak_anon, _read_rss_anon_kb(proc.pid))
            time.sleep(sample_s)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    th.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from re-waiting
    wall = time.perf_counter() - t0
    result: dict[str, Any] = {}
    if result_path.exists():
        result = json.loads(result_path.read_text())
        result_path.unlink()
    ru_max = usage.ru_maxrss * 1024 / MB
    return ChildResult(proc.returncode, float(result.get("peak_rss_mb", ru_max)), ru_max,
                       peak_anon * 1024 / MB, wall, result)


def vm_hwm_mb() -> float:
    """Peak RSS of the calling process (VmHWM), in MB.

    Preferred over getrusage().ru_maxrss in children: Linux folds the pre-exec (forked parent)
    high-water mark into ru_maxrss at execve, so a child of a big parent inherits its peak;
    VmHWM belongs to the post-exec address space only."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


# --------------------------------------------------------------------------- reports

def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> list[str]:
    align = align or ("l" + "r" * (len(headers) - 1))
    sep = ["---:" if a == "r" else ":---" for a in align]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def fmt(x: float | None, nd: int = 1, suffix: str = "") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.{nd}f}{suffix}"


def write_reports(out_dir: Path, stem: str, payload: dict[str, Any], md_lines: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    (out_dir / f"{stem}.md").write_text("\n".join(md_lines) + "\n")
    print(f"wrote {out_dir / (stem + '.md')} and {out_dir / (stem + '.json')}")
