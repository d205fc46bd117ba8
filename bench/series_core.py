"""Delta coding on a checkpoint series with the real coder (issue 13, step 1): for each
consecutive pair of `adapter_model.safetensors`, the coded size of every tensor independent,
against the previous checkpoint with XOR, SUB, SUB+bit-length, and the automatic choice, plus
the encode speed of the automatic choice (1 thread); then whole checkpoint folders packed
independently and as a chain (`pack --ref` of the previous), with a byte-exact check of the
last one unpacked.

    python bench/series_core.py [SERIES_DIR] [--level default]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import weightzip
from weightzip import _C
from weightzip.container import CHUNK_BYTES
from weightzip.dtypes import BY_NAME
from weightzip.inputs import safetensors_layout
from weightzip.levels import level_code

SERIES = Path(__file__).resolve().parents[2] / "shared/data/weights/lora_roberta-base_agnews_series"
VARIANTS = {"indep": 0, "xor": 1, "sub": 2, "sublen": 3, "auto": -1}


def tensors(path: Path) -> dict[str, tuple]:
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        start, spans, _ = safetensors_layout(f, size)
        f.seek(0)
        data = f.read()
    return {name: (dt, shape, np.frombuffer(data, np.uint8, end - begin, start + begin))
            for begin, end, name, dt, shape in spans}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("series", nargs="?", default=str(SERIES))
    ap.add_argument("--level", default="default")
    a = ap.parse_args()
    ckpts = sorted(Path(a.series).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if len(ckpts) < 2:
        print(f"no series at {a.series}", file=sys.stderr)
        return 1
    lv = level_code(a.level)
    prev = None
    totals = dict.fromkeys(VARIANTS, 0)
    raw_total, t_auto = 0, 0.0
    for ck in ckpts:
        cur = tensors(ck / "adapter_model.safetensors")
        raw = sum(x[2].size for x in cur.values())
        sizes = dict.fromkeys(VARIANTS, 0)
        for name, (dtn, shape, buf) in cur.items():
            dt = BY_NAME[dtn]
            row = int(shape[-1]) if len(shape) >= 2 else 0
            ref = prev[name][2] if prev and name in prev else None
            for v, code in VARIANTS.items():
                t0 = time.perf_counter()
                payload, _ = _C.encode_chunks(buf, dt.itemsize, dt.transform, CHUNK_BYTES, lv, row, 1,
                                              ref=ref, predictor=code if ref is not None else -1)
                if v == "auto" and prev:
                    t_auto += time.perf_counter() - t0
                sizes[v] += payload.size
        if prev:
            raw_total += raw
        label = f"{ck.name:>16}"
        print(label + "  " + "  ".join(f"{v} {100 * s / raw:6.2f}%" for v, s in sizes.items()))
        for v in VARIANTS:
            totals[v] += sizes[v] if prev else sizes["indep"]
        prev = cur
    indep = totals["indep"]
    print("chain total vs independent total (first checkpoint independent in both):")
    for v in VARIANTS:
        print(f"  {v:>7}: {totals[v]:>10} B  {totals[v] / indep:.4f}x")
    print(f"auto encode speed: {raw_total / t_auto / 1e6:.1f} MB/s (1 thread, {a.level})")
    folders(ckpts, a.level)
    return 0


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def folders(ckpts: list[Path], level: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        indep = chain = raw = 0
        t_chain = 0.0
        prev = None
        for ck in ckpts:
            indep += weightzip.pack(ck, t / f"i-{ck.name}.wz", level, threads=1).stat().st_size
            t0 = time.perf_counter()
            prev = weightzip.pack(ck, t / f"d-{ck.name}.wz", level, threads=1, ref=prev)
            t_chain += time.perf_counter() - t0
            chain += prev.stat().st_size
            raw += sum(p.stat().st_size for p in ck.rglob("*") if p.is_file())
        t0 = time.perf_counter()
        out = weightzip.unpack(prev, t / "last", threads=1)
        t_un = time.perf_counter() - t0
        same = _tree(out) == _tree(ckpts[-1])
        print(f"folders ({len(ckpts)} checkpoints, {raw} B): independent {indep} B, chain {chain} B, "
              f"{chain / indep:.4f}x; chain pack {raw / t_chain / 1e6:.1f} MB/s, unpack of the last "
              f"(whole chain) {_tree_size(ckpts[-1]) / t_un / 1e6:.1f} MB/s (1 thread); last byte-exact: {same}")


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


if __name__ == "__main__":
    sys.exit(main())
