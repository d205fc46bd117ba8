"""The series side of the weightzip CLI (series.py): `append`, and pack/unpack/info when the
path is a run folder -> .wzs, or a .wzs series."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import series

SUFFIX = ".wzs"


def add_parsers(sub: argparse._SubParsersAction, common) -> None:
    ap = sub.add_parser("append", help="add a checkpoint folder to a .wzs series (old members untouched)")
    ap.add_argument("series")
    ap.add_argument("checkpoint")
    ap.add_argument("--name", help="checkpoint name in the series (default: the folder's name)")
    common(ap)


def add_options(pk: argparse.ArgumentParser, un: argparse.ArgumentParser, inf: argparse.ArgumentParser) -> None:
    pk.add_argument("--keyframe-every", type=int, default=8, metavar="K",
                    help="series (-o X.wzs): pack every K-th checkpoint independently, the others as "
                    "deltas against the previous one (default 8)")
    for p in (un, inf):
        p.add_argument("--checkpoint", metavar="NAME", help="series (.wzs): only this checkpoint")


def wants_series(a: argparse.Namespace) -> bool:
    if a.cmd == "append":
        return True
    if a.cmd == "pack":
        return bool(a.output) and Path(a.output).suffix == SUFFIX
    path = Path(a.src if a.cmd == "unpack" else a.file)
    return path.is_dir() and (path / series.MANIFEST).is_file()


def command(a: argparse.Namespace, size, lossy_options) -> dict | None:
    """Run a series command; returns a member's info table for the caller to print, or None."""
    if a.cmd == "pack":
        src = Path(a.src)
        if not series.is_run_dir(src) and not any(d.is_dir() for d in src.iterdir()):
            raise ValueError(f"{src}: a .wzs series needs a run folder with checkpoint-N/ subfolders")
        out = series.pack_series(src, a.output, keyframe_every=a.keyframe_every, level=a.level,
                                 **lossy_options(a), threads=a.threads,
                                 progress=False if a.quiet else None, overwrite=a.force)
        if not a.quiet:
            d = series.series_info(out, verify=False)
            print(f"{a.src} -> {out}: {len(d['checkpoints'])} checkpoints, {size(d['raw_bytes'])} -> "
                  f"{size(d['total_bytes'])} ({100 * d['ratio']:.2f}% of original)")
    elif a.cmd == "append":
        row = series.append(a.series, a.checkpoint, a.name, threads=a.threads)
        if not a.quiet:
            kind = "keyframe" if row["ref"] is None else f"delta against {row['ref']}"
            print(f"{a.checkpoint} -> {a.series}/{row['file']}: {size(row['raw_bytes'])} -> "
                  f"{size(row['bytes'])} ({kind})")
    elif a.cmd == "unpack":
        dst = Path(a.output) if a.output else Path(a.src).with_suffix("")
        if a.checkpoint:
            out = series.unpack_checkpoint(a.src, a.checkpoint, dst / a.checkpoint if dst.is_dir() else dst,
                                           threads=a.threads, overwrite=a.force)
        else:
            out = series.unpack_series(a.src, dst, threads=a.threads, overwrite=a.force)
        if not a.quiet:
            print(f"{a.src} -> {out}")
    else:  # info
        d = series.series_info(a.file, a.checkpoint, verify=not a.no_verify, threads=a.threads)
        if a.json:
            print(json.dumps(d, indent=1))
            return None
        if a.checkpoint:
            return d  # a member's per-tensor table, printed like any .wz
        print(f"{d['series']}: {len(d['checkpoints'])} checkpoints, keyframe every {d['keyframe_every']}"
              + (f", lossy {d['lossy']}" if d.get("lossy") else ""))
        kinds = ["keyframe" if c["ref"] is None else f"delta <- {c['ref']}" for c in d["checkpoints"]]
        kw = max([len(k) for k in kinds] + [8])
        print(f"{'checkpoint':<24} {'step':>8} {'kind':<{kw}} {'raw':>10} {'stored':>10} {'ratio':>8}")
        for c, kind in zip(d["checkpoints"], kinds):
            print(f"{c['name']:<24} {c['step'] if c['step'] is not None else '':>8} {kind:<{kw}} "
                  f"{size(c['raw_bytes']):>10} {size(c['bytes']):>10} {100 * c['ratio']:7.2f}%")
        print(f"total: {size(d['raw_bytes'])} -> {size(d['total_bytes'])} ({100 * d['ratio']:.2f}%)")
        print("checksums: all members verified" if d["verified"] else "checksums: NOT verified (--no-verify)")
    return None
