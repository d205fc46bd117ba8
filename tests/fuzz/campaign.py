"""Run the fuzz targets for a time or an execution budget and collect what they report.

Used by test_fuzz_campaign.py (a minute in all) and bench/fuzz.py (the long campaign). Each
target runs as one process at a time, restarted after a crash with its grown corpus (so a
finding does not end the campaign; each distinct finding is kept once, with its input).
Python targets run with FUZZ_KEEP_GOING=1: pyfuzz.py records their findings and goes on.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
PY_TARGETS = {  # name -> (script and its arguments, max input length)
    "wz": (["fuzz_wz.py"], 65536),
    "nc-image": (["fuzz_nc.py", "image"], 8192),
    "nc-audio": (["fuzz_nc.py", "audio"], 8192),
    "pt": (["fuzz_pt.py"], 16384),
}
# C++ targets: (binary, seed folder, environment). The rANS decoders run once per kernel:
# AVX-512 where the CPU has it, AVX2, and scalar only.
CPP_TARGETS = {
    "chunk": ("chunk", {}), "chunk-avx2": ("chunk", {"WEIGHTZIP_SIMD": "avx2"}),
    "rans": ("rans", {}), "rans-avx2": ("rans", {"WEIGHTZIP_SIMD": "avx2"}),
    "rans-scalar": ("rans", {"WEIGHTZIP_SIMD": "none"}),
    "rans_indexed": ("rans_indexed", {}), "cm": ("cm", {}), "transform": ("transform", {}),
}
MAX_RESTARTS = 12


@dataclass
class Result:
    target: str
    engine: str
    execs: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    wall_s: float = 0.0
    runs: int = 0
    findings: list[dict] = field(default_factory=list)
    outcomes: dict = field(default_factory=dict)  # atheris: ok / error class -> count
    command: str = ""

    @property
    def exec_per_s(self) -> float:
        return self.execs / self.wall_s if self.wall_s else 0.0


def python_target_available(name: str) -> bool:
    if name != "pt":
        return True
    try:
        import weightzip.torch_zip  # noqa: F401  (the parser fuzz_pt.py exercises)
        return True
    except ImportError:
        return False


def _parse_log(text: str) -> dict:
    out = {"execs": 0, "cov": 0, "ft": 0, "corpus": 0}
    m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
    if m:
        out["execs"] = int(m[-1])
    else:
        m = re.findall(r"^#(\d+)\s", text, re.M)
        out["execs"] = int(m[-1]) if m else 0
    for line in reversed(text.splitlines()):
        m = re.search(r"cov: (\d+) ft: (\d+) corp: (\d+)", line)
        if m:
            out["cov"], out["ft"], out["corpus"] = map(int, m.groups())
            break
    return out


def _crash(text: str, artifacts: Path) -> dict | None:
    """The finding a libFuzzer run ended with (crash, sanitizer report, timeout, OOM...)."""
    m = re.findall(r"Test unit written to (\S+)", text)
    summary = re.findall(r"^SUMMARY: .*$", text, re.M)
    finding = re.findall(r"^FINDING: .*$", text, re.M)
    uncaught = re.search(r"=== Uncaught Python exception: ===\n(.*)", text)
    if not (m or summary or finding or uncaught):
        return None
    what = (finding or [""])[-1] or (uncaught.group(1) if uncaught else "") or (summary or ["?"])[-1]
    return {"kind": (summary or ["crash"])[-1].replace("SUMMARY: ", "")[:200], "what": what[:300],
            "input": m[-1] if m else "", "log_tail": text[-3000:]}


def run(name: str, engine: str, cmd: list[str], env: dict, work: Path, seeds: Path, seconds: float,
        max_execs: int | None = None, max_len: int = 4096, rss_mb: int = 2048, timeout_s: int = 10) -> Result:
    """Fuzz one target until `seconds` of wall time or `max_execs` executions."""
    corpus, artifacts, tmp = work / "corpus" / name, work / "artifacts" / name, work / "tmp" / name
    for d in (corpus, artifacts, tmp):
        d.mkdir(parents=True, exist_ok=True)
    res = Result(name, engine, command=" ".join([*cmd, f"-max_len={max_len}", str(corpus), str(seeds)]))
    t0, seen = time.monotonic(), set()
    while res.runs < MAX_RESTARTS:
        left = seconds - (time.monotonic() - t0)
        left_execs = None if max_execs is None else max_execs - res.execs
        if left < 1 or (left_execs is not None and left_execs <= 0):
            break
        stats = work / f"{name}.stats.{res.runs}.json"
        flags = [f"-max_total_time={int(left)}", "-print_final_stats=1", f"-rss_limit_mb={rss_mb}",
                 f"-timeout={timeout_s}", f"-max_len={max_len}", f"-artifact_prefix={artifacts}/"]
        if left_execs is not None:
            flags.append(f"-runs={left_execs}")
        e = dict(os.environ, **env, FUZZ_STATS=str(stats), FUZZ_FINDINGS=str(artifacts),
                 FUZZ_KEEP_GOING="1", FUZZ_TMP=str(tmp))
        log = work / f"{name}.log.{res.runs}"
        with open(log, "w") as f:
            rc = subprocess.run([*cmd, *flags, str(corpus), str(seeds)], stdout=f, stderr=subprocess.STDOUT,
                                env=e, cwd=work).returncode
        text = log.read_text(errors="replace")
        p = _parse_log(text)
        res.execs += p["execs"]
        res.cov, res.ft, res.corpus = max(res.cov, p["cov"]), max(res.ft, p["ft"]), p["corpus"] or res.corpus
        res.runs += 1
        if stats.exists():
            for k, v in json.loads(stats.read_text()).items():
                res.outcomes[k] = res.outcomes.get(k, 0) + v
        crash = _crash(text, artifacts) if rc != 0 else None
        if crash and crash["kind"] + crash["what"] not in seen:
            seen.add(crash["kind"] + crash["what"])
            res.findings.append(crash)
        if rc != 0 and not crash:
            res.findings.append({"kind": f"exit code {rc}", "what": "", "input": "", "log_tail": text[-3000:]})
        if rc == 0:
            break
    shutil.rmtree(tmp, ignore_errors=True)
    res.wall_s = round(time.monotonic() - t0, 1)
    for txt in sorted(artifacts.glob("finding-*.txt")):  # atheris findings (pyfuzz.record)
        res.findings.append({"kind": "python", "what": txt.read_text().splitlines()[0],
                             "input": str(txt.with_suffix("")), "log_tail": txt.read_text()[-3000:]})
    return res


def run_cpp(name: str, bins: dict, work: Path, seconds: float, max_execs: int | None = None) -> Result:
    binary, env = CPP_TARGETS[name]
    return run(name, "libFuzzer+ASan+UBSan", [str(bins[binary])], env, work, CORPUS / binary, seconds,
               max_execs, max_len=1 << 17, rss_mb=2048, timeout_s=10)


def run_python(name: str, work: Path, seconds: float, max_execs: int | None = None) -> Result:
    script, max_len = PY_TARGETS[name]
    cmd = [sys.executable, str(HERE / script[0]), *script[1:]]
    return run(name, "atheris", cmd, {}, work, CORPUS / name, seconds, max_execs, max_len=max_len,
               rss_mb=4096 if name.startswith("nc") else 2048, timeout_s=20)


def as_dict(r: Result) -> dict:
    d = asdict(r)
    d["exec_per_s"] = round(r.exec_per_s, 1)
    return d
