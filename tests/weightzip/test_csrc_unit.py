"""The C++ unit tests of csrc (csrc/tests/test_core.cpp and test_arm.cpp), compiled with the
system compiler.

The core is compiled straight from the sources, without Python or CMake, in one command at
-O1 (a few seconds), and the program is run once per SIMD level of the rANS coders
(WEIGHTZIP_SIMD=none, avx2, and the best the CPU has): every run must pass, and all must
encode the same bytes (the program prints a digest of its encoded outputs). The ARM coder's
program (arm.cpp only) runs the same way: it checks a golden digest itself, with the scalar and
the AVX2 network kernels. Skipped when no C++ compiler is found. The same program builds with CMake:
    cmake -S . -B build -DWZ_BUILD_TESTS=ON && cmake --build build -j2 && ctest --test-dir build
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / "csrc"
TEST_SRC = CSRC / "tests" / "test_core.cpp"
ARM_TEST_SRC = CSRC / "tests" / "test_arm.cpp"


def find_cxx() -> str | None:
    for name in (os.environ.get("CXX", ""), "c++", "g++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def test_core(tmp_path_factory) -> Path:
    if not TEST_SRC.exists():
        pytest.skip("csrc/tests/test_core.cpp is not here (not a source checkout)")
    cxx = find_cxx()
    if cxx is None:
        pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX) found")
    exe = tmp_path_factory.mktemp("csrc") / "test_core"
    # The core is plain C++17 (SIMD code is compiled per function: no -m flags); libzstd is
    # loaded at run time (-ldl); bindings.cpp is the only file that needs Python.
    sources = sorted(str(p) for p in CSRC.glob("*.cpp") if p.name not in ("bindings.cpp", "arm.cpp"))
    cmd = [cxx, "-std=c++17", "-O1", "-pthread", f"-I{CSRC}", *sources, str(TEST_SRC),
           "-o", str(exe), "-ldl"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"compiling the C++ unit tests failed:\n{r.stderr[-6000:]}"
    return exe


def test_csrc_unit(test_core: Path) -> None:
    digests = {}
    for simd in ("none", "avx2", ""):
        env = {**os.environ, "WEIGHTZIP_SIMD": simd}
        r = subprocess.run([str(test_core)], capture_output=True, text=True, timeout=300, env=env)
        label = simd or "best"
        assert r.returncode == 0, f"WEIGHTZIP_SIMD={label}:\n{r.stdout}\n{r.stderr[-6000:]}"
        lines = r.stdout.strip().splitlines()
        assert lines and lines[-1].startswith("digest "), r.stdout
        digests[label] = lines[-1]
    assert len(set(digests.values())) == 1, f"encoded bytes depend on the SIMD level: {digests}"


@pytest.fixture(scope="module")
def test_arm(tmp_path_factory) -> Path:
    if not ARM_TEST_SRC.exists():
        pytest.skip("csrc/tests/test_arm.cpp is not here (not a source checkout)")
    cxx = find_cxx()
    if cxx is None:
        pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX) found")
    exe = tmp_path_factory.mktemp("csrc") / "test_arm"
    cmd = [cxx, "-std=c++17", "-O1", "-pthread", f"-I{CSRC}", str(CSRC / "arm.cpp"), str(ARM_TEST_SRC),
           "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"compiling the ARM unit tests failed:\n{r.stderr[-6000:]}"
    return exe


def test_csrc_arm_unit(test_arm: Path) -> None:
    for simd in ("none", ""):
        env = {**os.environ, "WEIGHTZIP_SIMD": simd}
        r = subprocess.run([str(test_arm)], capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, f"WEIGHTZIP_SIMD={simd or 'best'}:\n{r.stdout}\n{r.stderr[-6000:]}"
        assert r.stdout.strip().splitlines()[-1].endswith(" 0 failed"), r.stdout
