"""The quick commands start quickly: `neurocodec --help`, `neurocodec list`, `neurocodec info
FILE.nc` and `weightzip --help` import none of the heavy libraries (torch, CompressAI, Pillow,
soundfile, matplotlib, ...), and each runs in under half a second, or, on a machine where
importing numpy alone (the floor every command pays) is slow, in at most 0.3 s more than that.

Each check runs in a fresh interpreter (the test process has imported everything already).
The timing check is skipped when the machine is too loaded to measure startup at all: when a
bare `python -c pass` already takes more than 0.15 s.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "compressai", "PIL", "soundfile", "soxr", "matplotlib", "pesq", "pystoi")
BUDGET_S = 0.5  # wall time of one command, interpreter start included
OWN_S = 0.3  # ... or this much beyond `python -c "import numpy"` where numpy alone is slow
BARE_LIMIT_S = 0.15  # slower than this for `python -c pass`: too loaded to time anything
RUNS = 3

# Runs PROGRAM's CLI main() in-process on ARGV; prints its exit status, the heavy modules
# that got imported and what it printed.
_CHILD = textwrap.dedent("""
    import contextlib, io, json, sys
    program, heavy, argv = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
    main = __import__(program + ".cli", fromlist=["main"]).main
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            rc = main(argv)
    except SystemExit as e:
        rc = e.code
    print(json.dumps({"rc": rc or 0, "heavy": sorted(set(heavy) & set(sys.modules)), "out": out.getvalue()}))
""")

# tests/golden/ holds the committed .nc files (tests/data/ before it)
_GOLDEN_NC = ("tests/golden/audio_rvq_release1.nc", "tests/data/audio_rvq_release1.nc")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def nc_files(tmp_path_factory) -> dict[str, Path]:
    """An audio .nc file (committed) and an image one (a header for shipped codec id 1 with
    made-up streams: `info` reads headers and checksums only)."""
    from neurocodec.runtime.bitstream import NcFile

    files = {}
    audio = next((REPO / p for p in _GOLDEN_NC if (REPO / p).is_file()), None)
    if audio is not None:
        files["audio"] = audio
    image = tmp_path_factory.mktemp("startup") / "image.nc"
    image.write_bytes(NcFile(1, 3, (64, 48, 3), [b"\x01" * 10, b"\x02" * 20]).to_bytes())
    files["image"] = image
    return files


COMMANDS = {
    "neurocodec --help": ("neurocodec", ["--help"]),
    "neurocodec list": ("neurocodec", ["list"]),
    "neurocodec info audio.nc": ("neurocodec", ["info", "{audio}"]),
    "neurocodec info image.nc": ("neurocodec", ["info", "{image}"]),
    "weightzip --help": ("weightzip", ["--help"]),
}


def _argv(name: str, nc_files: dict[str, Path]) -> tuple[str, list[str]]:
    program, args = COMMANDS[name]
    try:
        return program, [a.format(**{k: str(v) for k, v in nc_files.items()}) for a in args]
    except KeyError as e:
        pytest.skip(f"no {e.args[0]} .nc file in this checkout")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_quick_commands_import_no_heavy_library(name: str, nc_files: dict[str, Path]) -> None:
    program, argv = _argv(name, nc_files)
    r = subprocess.run([sys.executable, "-c", _CHILD, program, ",".join(HEAVY), *argv], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0, f"{name} exited with {res['rc']}: {r.stderr[-2000:]}"
    assert res["heavy"] == [], f"{name} imported {res['heavy']}"
    assert res["out"].strip()
    if argv[0] == "info":
        assert "checksums" in res["out"] and "codec" in res["out"]


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, check=True, timeout=60)
    return time.perf_counter() - t0


def _median_wall(cmd: list[str]) -> float:
    return statistics.median(_wall(cmd) for _ in range(RUNS))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_quick_commands_start_fast(name: str, nc_files: dict[str, Path]) -> None:
    program, argv = _argv(name, nc_files)
    bare = _median_wall([sys.executable, "-c", "pass"])
    if bare > BARE_LIMIT_S:
        pytest.skip(f"machine too loaded to time startup: `python -c pass` takes {bare:.2f} s")
    floor = _median_wall([sys.executable, "-c", "import numpy"])
    wall = _median_wall([sys.executable, "-m", program, *argv])
    assert wall < max(BUDGET_S, floor + OWN_S), \
        f"`{name}` took {wall:.2f} s (median of {RUNS}; bare interpreter {bare:.2f} s, import numpy {floor:.2f} s)"
