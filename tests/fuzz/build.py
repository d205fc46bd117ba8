"""Build the libFuzzer harnesses of csrc/ with ASan + UBSan (clang).

    python tests/fuzz/build.py          # -> tests/fuzz/work/bin/fuzz_<target>, make_seeds

The csrc sources (all but bindings.cpp, the only file that knows Python) are compiled once
into instrumented objects and linked into every harness. Rebuilds only what is out of date.
Environment: FUZZ_CXX (default: clang++, then clang++-19 .. clang++-14).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CSRC = REPO / "csrc"
WORK = HERE / "work"
BIN = WORK / "bin"
TARGETS = ("chunk", "rans", "rans_indexed", "cm", "transform")
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
CXXFLAGS = ["-std=c++17", "-O2", "-g", "-fno-omit-frame-pointer", *SAN]
LIBS = ["-ldl", "-lpthread"]


def find_cxx() -> str | None:
    """A clang++ that can link -fsanitize=fuzzer (libFuzzer ships with compiler-rt), or None."""
    names = [os.environ.get("FUZZ_CXX", "")] + ["clang++"] + [f"clang++-{v}" for v in range(19, 13, -1)]
    for name in filter(None, names):
        path = shutil.which(name)
        if path and _links_libfuzzer(path):
            return path
    return None


def _links_libfuzzer(cxx: str) -> bool:
    src = 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n'
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "t.cpp").write_text(src)
        r = subprocess.run([cxx, "-fsanitize=fuzzer,address,undefined", "t.cpp", "-o", "t"],
                           cwd=d, capture_output=True)
        return r.returncode == 0


def _stale(out: Path, deps: list[Path]) -> bool:
    return not out.exists() or any(d.stat().st_mtime > out.stat().st_mtime for d in deps)


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"build failed: {' '.join(cmd)}\n{r.stderr[-4000:]}")


def build(cxx: str | None = None, verbose: bool = False) -> dict[str, Path]:
    """Build (incrementally) and return {target: binary}, plus "make_seeds"."""
    cxx = cxx or find_cxx()
    if cxx is None:
        raise RuntimeError("no clang++ with libFuzzer found (apt-get install clang libclang-rt-14-dev)")
    obj_dir = WORK / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    BIN.mkdir(parents=True, exist_ok=True)
    headers = sorted(CSRC.glob("*.hpp")) + sorted((HERE / "cpp").glob("*.hpp"))
    objs = []
    for src in sorted(CSRC.glob("*.cpp")):
        if src.name == "bindings.cpp":
            continue
        obj = obj_dir / (src.stem + ".o")
        if _stale(obj, [src, *headers]):
            if verbose:
                print("compile", src.name, flush=True)
            _run([cxx, *CXXFLAGS, "-fsanitize=fuzzer-no-link", "-c", str(src), "-o", str(obj)])
        objs.append(obj)
    out = {}
    for name in (*TARGETS, "make_seeds"):
        src = HERE / "cpp" / (f"fuzz_{name}.cpp" if name != "make_seeds" else "make_seeds.cpp")
        exe = BIN / (f"fuzz_{name}" if name != "make_seeds" else name)
        if _stale(exe, [src, *headers, *objs]):
            if verbose:
                print("link", exe.name, flush=True)
            link = "-fsanitize=fuzzer" if name != "make_seeds" else "-fsanitize=fuzzer-no-link"
            _run([cxx, *CXXFLAGS, link, str(src), *map(str, objs), "-o", str(exe), *LIBS])
        out[name] = exe
    return out


if __name__ == "__main__":
    try:
        for k, v in build(verbose=True).items():
            print(f"{k}: {v}")
    except RuntimeError as e:
        sys.exit(str(e))
