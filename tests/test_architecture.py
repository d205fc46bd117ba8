"""The layering rules, read from the source (static imports, also those inside functions):

- no import loops anywhere in weightzip/ or neurocodec/;
- weightzip never imports neurocodec; neurocodec uses only weightzip's public modules;
- neurocodec.runtime (encode/decode) never imports neurocodec.tools (train/eval/export), and
  neither the API nor the CLI imports a codec kind's package: kinds are reached through the
  registry's kind table;
- no package module is over 400 lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

from common import REPO

PACKAGES = ("weightzip", "neurocodec")
WEIGHTZIP_PUBLIC = {"weightzip", "weightzip.core", "weightzip.clitools"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            parts = f.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ours that module `name` imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # `from pkg import mod` imports pkg.mod; `from pkg import name`, pkg
                sub = f"{mod}.{a.name}"
                if sub in known:
                    found.add(sub)
                elif a.name != "_C":  # the compiled extension: no Python imports of its own
                    found.add(mod)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_import_loops():
    assert cycles(graph()) == []


def test_cycle_finder_finds_a_loop():  # the check above can fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers():
    g = graph()
    for m, deps in g.items():
        if m.startswith("weightzip"):
            assert not any(d.startswith("neurocodec") for d in deps), m
        else:
            private = {d for d in deps if d.startswith("weightzip") and d not in WEIGHTZIP_PUBLIC}
            assert not private, f"{m} imports weightzip internals {private}"
        if m.startswith("neurocodec.runtime"):
            assert not any(d.startswith("neurocodec.tools") for d in deps), m
        if m in ("neurocodec.api", "neurocodec.cli"):
            kinds = {d for d in deps if d.startswith(("neurocodec.runtime.image", "neurocodec.runtime.audio",
                                                      "neurocodec.tools.image", "neurocodec.tools.audio",
                                                      "neurocodec.runtime.coolchic", "neurocodec.tools.coolchic"))}
            assert not kinds, f"{m} reaches a codec kind directly: {kinds}"


def test_modules_are_small():
    big = {str(p.relative_to(REPO)): n for p in modules().values()
           if (n := len(p.read_text().splitlines())) > 400}
    assert big == {}
