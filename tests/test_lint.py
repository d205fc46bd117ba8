"""Repository hygiene: ruff and mypy pass with the configuration in pyproject.toml, and the
committed results record no absolute paths of the machine they were measured on.

ruff takes well under a second on the whole tree, mypy (the public API, torch skipped) a
couple of seconds; each is skipped when it is not installed (both come with the dev extra).
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_ruff() -> None:
    r = _tool("ruff", "check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]


def test_mypy(tmp_path: Path) -> None:
    # the files and options are [tool.mypy]'s; the cache goes to a scratch folder, not the tree
    r = _tool("mypy", "--cache-dir", str(tmp_path / "mypy_cache"))
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]


# --------------------------------------------------------------------------- recorded paths

# an absolute POSIX path with at least two parts, or a Windows drive path, inside a string
_ABSOLUTE = re.compile(r"""(?:^|[\s"'`(=,])((?:/(?!/)[\w.+-]+){2,}|[A-Za-z]:\\[\w.+-])""")
_RECORDED = ("codecs", "bench/results")


def _recorded_files() -> list[Path]:
    return sorted(p for top in _RECORDED for p in (REPO / top).rglob("*")
                  if p.is_file() and p.suffix in (".json", ".md", ".csv"))


def test_committed_results_record_relative_paths() -> None:
    """codec.json, results.json, model cards, CSVs and bench reports name paths relative to the
    repository root (neurocodec.tools.paths.display_path), never /work/..., /tmp/... or /home/..."""
    files = _recorded_files()
    if not files:
        pytest.skip("no recorded results in this checkout")
    bad = []
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        if p.suffix == ".json":
            json.loads(text)  # still valid
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in _ABSOLUTE.finditer(line):
                bad.append(f"{p.relative_to(REPO)}:{lineno}: {m.group(1)}")
    assert not bad, "absolute paths in recorded results:\n" + "\n".join(bad[:40])


def test_display_path_convention(tmp_path: Path) -> None:
    from neurocodec.tools.paths import display_command, display_path, display_paths

    root = tmp_path / "checkout"
    root.mkdir()
    assert display_path(root / "bench" / "image.py", root) == "bench/image.py"
    assert display_path(root, root) == "."
    assert display_path(tmp_path / "shared" / "data" / "kodak", root) == "../shared/data/kodak"
    outside = Path(tmp_path.anchor) / "elsewhere-entirely" / "x.wav"
    if tmp_path.parent != Path(tmp_path.anchor):  # the root's parent is not /
        assert display_path(outside, root) == outside.as_posix()
    py = tmp_path / "venv" / "bin" / "python"
    assert display_command([str(py), str(root / "bench" / "image.py"), "--data",
                            str(tmp_path / "shared" / "d"), f"--out={root / 'o'}", "-q"], root) == \
        "python bench/image.py --data ../shared/d --out=o -q"
    rec = {"data": [str(tmp_path / "shared" / "a")], "out": "runs/x", "steps": 3,
           "seconds": {str(tmp_path / "shared" / "b"): 1.5}}
    assert display_paths(rec, root) == {"data": ["../shared/a"], "out": "runs/x", "steps": 3,
                                        "seconds": {"../shared/b": 1.5}}
