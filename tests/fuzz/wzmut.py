"""Structure-aware mutation of .wz files (atheris custom mutator of fuzz_wz.py).

Most mutations edit one part of a parsed file (a chunk, the index JSON as a tree or as text,
the chunk table, the preamble) and re-seal every checksum (wzfmt.build), so the reader's
own checks and the decoders are exercised; about a fifth are plain byte mutations of the
whole file, which keep the checksum checks themselves covered.
"""
from __future__ import annotations

import json
import random
from typing import Any, Callable

import wzfmt

ByteMutator = Callable[[bytes, int], bytes]  # atheris.Mutate(data, max_size)

INTS = [-1, 0, 1, 2, 3, 7, 8, 255, 256, 1 << 16, (1 << 20) + 1, (1 << 24) + 1, (1 << 31) - 1, 1 << 31,
        1 << 32, (1 << 53) + 1, 1 << 63, 1 << 64, -(1 << 63), 10 ** 30]
STRINGS = ["", "U8", "F32", "BF16", "F8_E5M2", "BOOL", "I64", "tensor", "blob", "array", "folder",
           "torch", "npz-arrays", "safetensors", "raw", "npy", "F", "C", "../x", "/abs/path", "a/../../b",
           "a/", "x" * 300, "nul\x00byte", "é/ü", "."]
SPECIAL: list[Any] = [None, True, False, [], {}, 0.5, -0.0, 1e308, [0], [[0, 1]], {"__tensor__": 0}]


def _slots(tree: Any, out: list, depth: int = 0) -> list:
    """Every (container, key) pair of a JSON tree, depth first."""
    if depth > 30:
        return out
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        out.append((tree, k))
        _slots(v, out, depth + 1)
    return out


def _new_value(rng: random.Random, old: Any, donors: list) -> Any:
    r = rng.random()
    if isinstance(old, bool) or not isinstance(old, int):
        pass
    elif r < 0.4:
        return old + rng.choice([-1, 1, -2, 2, 8, -8, 1 << 20])
    elif r < 0.6:
        return rng.choice(INTS)
    if isinstance(old, str) and r < 0.5:
        return rng.choice(STRINGS)
    r = rng.random()
    if r < 0.35 and donors:  # a value from elsewhere in the index (type-correct more often)
        return json.loads(json.dumps(_pick(rng, donors)))
    if r < 0.55:
        return rng.choice(INTS)
    if r < 0.75:
        return rng.choice(STRINGS)
    return json.loads(json.dumps(rng.choice(SPECIAL)))


def _pick(rng: random.Random, slots: list) -> Any:
    parent, key = rng.choice(slots)
    return parent[key]


def mutate_tree(tree: Any, rng: random.Random) -> Any:
    """One edit of a JSON tree: replace, delete, duplicate or insert a value, or nest it."""
    slots = _slots(tree, [])
    if not slots:
        return rng.choice(SPECIAL)
    parent, key = rng.choice(slots)
    op = rng.random()
    if op < 0.6:
        parent[key] = _new_value(rng, parent[key], slots)
    elif op < 0.75:
        del parent[key]
    elif op < 0.85:
        if isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(parent[key])))
        else:
            parent[rng.choice(["extra", "order", "npdtype", "bytes", "tree", key + "_"])] = parent[key]
    elif op < 0.95 and isinstance(parent, list):
        j = rng.randrange(len(parent))
        parent[key], parent[j] = parent[j], parent[key]
    else:
        parent[key] = [parent[key]] if rng.random() < 0.5 else {"k": parent[key]}
    return tree


def mutate(data: bytes, max_size: int, seed: int, bytes_mutator: ByteMutator | None = None) -> bytes:
    """A mutation of data (bytes <= max_size)."""
    if bytes_mutator is None:
        import atheris
        bytes_mutator = atheris.Mutate
    rng = random.Random(seed)
    r = rng.random()
    w = wzfmt.parse(data) if r >= 0.2 else None
    if w is None:
        return bytes_mutator(data, max_size)
    if r < 0.5 and w.chunks:  # one chunk's bytes, checksum re-sealed by decoding
        i = rng.randrange(len(w.chunks))
        c = w.chunks[i]
        if c and rng.random() < 0.2:  # a method byte
            c = bytes([rng.choice([0, 1, 2, 3, 4, 5, 0xFF])]) + c[1:]
        else:
            c = bytes_mutator(c, max(len(c) * 2, 64))
        w.chunks[i] = c
        wzfmt.reseal_chunk(w, i)
    elif r < 0.8:
        w.index = mutate_tree(w.index, rng)
        for _ in range(rng.choice([0, 0, 0, 1, 2])):  # a few edits at once now and then
            w.index = mutate_tree(w.index, rng)
    elif r < 0.88:
        js = json.dumps(w.index, separators=(",", ":")).encode()
        w.json_text = bytes_mutator(js, max(2 * len(js), 256))
    elif r < 0.95 and w.chunks:  # the chunk table: drop, duplicate, or a stale record
        i = rng.randrange(len(w.chunks))
        op = rng.random()
        if op < 0.3:
            del w.chunks[i], w.hashes[i]
        elif op < 0.6:
            w.chunks.insert(i, w.chunks[i])
            w.hashes.insert(i, w.hashes[i])
        else:
            w.hashes[i] = rng.getrandbits(32)
    else:
        w.version = rng.choice([0, 1, 2, 0xFFFF])
        w.flags = rng.choice([0, 1, 0x8000])
        w.reserved = rng.choice([0, 1])
    try:
        out = wzfmt.build(w)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return bytes_mutator(data, max_size)
    return out if len(out) <= max_size else bytes_mutator(data, max_size)
