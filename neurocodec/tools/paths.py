"""How paths are recorded in results.json, codec.json, model cards, CSVs and bench reports.

One convention: relative to the repository root, POSIX separators, ``..`` for its siblings
(``../shared/data/images/kodak``, ``../runs/hyperprior``), so that nothing committed names the
machine it was measured on. Paths outside the root's parent folder (``/tmp/...``) stay
absolute. Outside a source checkout (an installed wheel) paths are recorded relative to the
working directory instead. Standard library only: bench imports this without torch.
"""
from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path

_HERE = Path(os.path.abspath(__file__)).parent


def _find_root() -> Path:
    root = _HERE.parents[1]  # neurocodec/tools/paths.py -> the checkout
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


REPO_ROOT = _find_root()


def _relative(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` (both absolute), if it is inside root's parent folder."""
    try:
        rel = Path(os.path.relpath(path, root))
    except ValueError:  # another drive (Windows)
        return None
    parts = rel.parts
    if parts.count("..") > 1 or (parts[:1] == ("..",) and len(parts) == 1):
        return None  # above the root's parent, or the parent itself
    return rel.as_posix()


def display_path(p: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """``p`` as it goes into a recorded result: relative to ``root`` (the repository root by
    default) with ``..`` for siblings of the root; absolute when it lies elsewhere.

    A relative ``p`` is taken relative to the working directory. Symlinks are only followed
    when the literal path is not under the root's parent (so ``/work/shared`` stays
    ``../shared`` even if it is a link)."""
    root_p = Path(os.path.abspath(root if root is not None else REPO_ROOT))
    path = Path(os.path.abspath(os.fspath(p)))
    rel = _relative(path, root_p)
    if rel is None:
        rel = _relative(path.resolve(), root_p.resolve())
    return rel if rel is not None else path.as_posix()


def display_arg(arg: str, root: str | os.PathLike[str] | None = None) -> str:
    """One command-line argument: an absolute path (or ``--opt=/abs/path``) -> display_path."""
    if os.path.isabs(arg):
        return display_path(arg, root)
    if arg.startswith("-") and "=" in arg:
        opt, val = arg.split("=", 1)
        if os.path.isabs(val):
            return f"{opt}={display_path(val, root)}"
    return arg


def display_command(argv: Iterable[str], root: str | os.PathLike[str] | None = None) -> str:
    """A command line as recorded, shell-quoted: the program (first item) by its name only
    ("python"), unless it lies inside the repository; absolute paths among the arguments as
    display_path."""
    argv = [os.fspath(a) for a in argv]
    if not argv:
        return ""
    prog = display_path(argv[0], root) if os.path.isabs(argv[0]) else argv[0]
    if prog.startswith("../") or os.path.isabs(prog):
        prog = Path(argv[0]).name
    return shlex.join([prog, *(display_arg(a, root) for a in argv[1:])])


def display_paths(obj: object, root: str | os.PathLike[str] | None = None) -> object:
    """A copy of a JSON-like record (a training config, a {folder: seconds} dict) in which every
    string that is an absolute path, as a value or as a dict key at any depth, goes through
    display_path. Only for records whose strings are paths or names, not command lines."""

    def conv(v: object) -> object:
        if isinstance(v, os.PathLike) or (isinstance(v, str) and os.path.isabs(v)):
            return display_path(v, root)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {conv(k): conv(x) for k, x in v.items()}
        return v

    return conv(obj)
