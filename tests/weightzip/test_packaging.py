"""Packaging facts weightzip relies on: its version comes from the distribution's metadata, its
core dependencies are numpy + ml_dtypes + tqdm only, and its level names (weightzip.levels)
match what the C++ core does with each level code (csrc/chunk.hpp, enum Level)."""
from __future__ import annotations

import ast
import importlib.metadata
import inspect
import re
import subprocess
import sys

import numpy as np
import pytest
from common import REPO

import weightzip
from weightzip import _C
from weightzip.container import METHODS
from weightzip.dtypes import by_name
from weightzip.levels import DEFAULT_LEVEL, LEVEL_NAMES, LEVELS, level_code

PACKAGE = REPO / "weightzip"
CORE_DEPENDENCIES = {"numpy", "ml_dtypes", "tqdm"}
LAZY_OPTIONAL = {"torch"}  # imported inside functions, only for torch checkpoints / framework="torch"


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("-", "_")


# --------------------------------------------------------------------------- version

def test_version_is_the_distribution_version() -> None:
    try:
        installed = importlib.metadata.version("neurocodec")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the neurocodec distribution is not installed (source tree only)")
    assert weightzip.__version__ == installed


def test_installed_version_matches_pyproject() -> None:
    try:
        installed = importlib.metadata.version("neurocodec")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the neurocodec distribution is not installed (source tree only)")
    declared = _pyproject()["project"]["version"]
    assert installed == declared, f"installed metadata says {installed}, pyproject.toml {declared}: reinstall"


def test_version_fallback_without_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    from weightzip import _version

    monkeypatch.setattr(_version, "DISTRIBUTION", "neurocodec-no-such-distribution")
    _version.version.cache_clear()
    try:
        assert _version.version() == _version.UNKNOWN == "0+unknown"
    finally:
        _version.version.cache_clear()


def test_import_reads_no_metadata_and_no_progress_bar() -> None:
    """`import weightzip` (and the quick commands) skip importlib.metadata and tqdm (~0.1 s):
    __version__ is read on first use and a progress bar is made only when shown."""
    code = ("import sys, weightzip; assert 'tqdm' not in sys.modules and 'importlib.metadata' not in sys.modules; "
            "v = weightzip.__version__; import neurocodec; assert neurocodec.__version__ == v; print(v)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() and r.stdout.strip() != "0+unknown"


# --------------------------------------------------------------------------- dependencies

def test_core_dependencies_are_weightzips() -> None:
    deps = {_dist_name(d) for d in _pyproject()["project"]["dependencies"]}
    assert deps == CORE_DEPENDENCIES


# weightzip.torch (training-loop checkpoints), weightzip.torch_module and cuda_lanes (compressed
# modules in memory) and weightzip.torch_dcp (torch.distributed.checkpoint storage) import torch by
# design; nothing else in the package imports them.
TORCH_BRIDGES = {"torch.py", "torch_dcp.py", "torch_module.py", "torch_rounding.py", "cuda_lanes.py"}


def test_no_module_imports_the_torch_bridges() -> None:
    bridges = {n.removesuffix(".py") for n in TORCH_BRIDGES}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name in TORCH_BRIDGES:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:  # from .torch import x / from . import torch
                names = {str(node.module)} if node.module else {a.name for a in node.names}
                assert not names & bridges, f"{path.name} imports {names & bridges}"
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                mods = {a.name for a in node.names} if isinstance(node, ast.Import) else {str(node.module)}
                assert not {f"weightzip.{b}" for b in bridges} & mods, path.name


def _imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(top-level module names imported at module level, those imported inside functions)."""
    top, lazy = set(), set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                names = {a.name.split(".")[0] for a in child.names}
            elif isinstance(child, ast.ImportFrom):
                names = set() if child.level else {str(child.module).split(".")[0]}
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
                continue
            (lazy if in_function else top).update(names)

    visit(tree, False)
    return top, lazy


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is 3.10+")
def test_weightzip_imports_only_its_core_dependencies() -> None:
    allowed = set(sys.stdlib_module_names) | CORE_DEPENDENCIES | {"weightzip"}
    bad = []
    for path in sorted(PACKAGE.glob("*.py")):
        top, lazy = _imports(ast.parse(path.read_text(), str(path)))
        if path.name in TORCH_BRIDGES:  # the opt-in PyTorch modules: torch is their point
            top -= {"torch"}
        bad += [f"{path.name}: {m}" for m in sorted(top - allowed)]
        bad += [f"{path.name}: {m} (inside a function)" for m in sorted(lazy - allowed - LAZY_OPTIONAL)]
    assert not bad, "weightzip imports beyond numpy, ml_dtypes and tqdm:\n" + "\n".join(bad)


# --------------------------------------------------------------------------- levels

def test_level_names_are_one_list() -> None:
    assert LEVEL_NAMES == tuple(LEVELS) == ("fast", "default", "max")
    assert DEFAULT_LEVEL in LEVELS
    for fn in (weightzip.pack, weightzip.save, weightzip.compress):
        assert inspect.signature(fn).parameters["level"].default == DEFAULT_LEVEL
    with pytest.raises(ValueError, match="fast, default, max"):
        weightzip.compress(b"x", level="fastest")
    with pytest.raises(ValueError):
        level_code(1)


def _chunk_methods(data: bytes, dtype: str, code: int, row: int = 0) -> set[str]:
    """Names of the methods the C++ core picks for every stream of every chunk of data."""
    dt = by_name(dtype)
    payload, table = _C.encode_chunks(memoryview(data), dt.itemsize, dt.transform, 1 << 16, code, row, 1)
    k = _C.stream_count(dt.transform, dt.itemsize)
    raw, used, off = bytes(payload), set(), 0
    for csize in table[:, 0]:
        head = raw[off:off + k]
        used |= {"stored"} if head[:1] == b"\xff" else {METHODS[m] for m in head}
        off += int(csize)
    return used


def test_level_codes_match_the_cpp_core() -> None:
    """kFast = 0, kDefault = 1, kMax = 2: the core accepts exactly these codes, and each code
    behaves as its name says (fast: no zstd, no context mixing; default: zstd where it wins,
    no context mixing; max: context mixing where it wins)."""
    assert sorted(LEVELS.values()) == list(range(len(LEVELS)))
    assert LEVELS["fast"] < LEVELS["default"] < LEVELS["max"]
    text = b"the quick brown fox jumps over the lazy dog " * 3000
    for bad in (-1, len(LEVELS)):
        with pytest.raises(ValueError, match="level"):
            _C.encode_chunks(memoryview(text), 1, 0, 1 << 16, bad, 0, 1)

    rng = np.random.default_rng(0)
    smooth = (rng.standard_normal((64, 256)).cumsum(1) * 0.01).astype(np.float32).tobytes()
    used = {name: _chunk_methods(smooth, "F32", code, 256) | _chunk_methods(text, "U8", code)
            for name, code in LEVELS.items()}
    assert not used["fast"] & {"zstd", "cm"}, used
    assert "cm" not in used["default"], used
    assert "cm" in used["max"], used
    if _C.zstd_available():  # libzstd.so.1 is loaded at run time
        assert "zstd" in used["default"], used
