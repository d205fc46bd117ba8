"""A whole training run as one series: `run.wzs/`, a folder of ordinary .wz members and a manifest.

    weightzip pack run_dir/ -o run.wzs               # every checkpoint-N/ (HF Trainer naming)
    weightzip append run.wzs run_dir/checkpoint-2600
    weightzip unpack run.wzs -o out/ --checkpoint checkpoint-1000
    weightzip info run.wzs                           # one row per checkpoint

Why a folder and not a new container: the .wz stays the only coded format (one container per
half); appending writes one new member and then replaces series.json atomically, so old bytes
are never touched and a crash mid-append leaves the previous manifest valid. Every member is a
normal .wz that `weightzip unpack member.wz` decodes alone (its references sit beside it).

Members are chained: each checkpoint is a delta against the one before (consecutive
checkpoints are the closest), and every `keyframe_every`-th is packed independently, so reading
any checkpoint decodes at most keyframe_every members. In lossy mode the chain is closed-loop:
each delta is against the previous member's reconstruction, so errors do not accumulate.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import api, inspect
from .atomic import write_atomic
from .errors import FormatError

MANIFEST = "series.json"
FORMAT = "weightzip-series"
VERSION = 1
_CKPT = re.compile(r"^(?:.*[-_])?(\d+)$")


def is_run_dir(p: Path) -> bool:
    """A folder whose subfolders include checkpoint-N/ (or any name ending in -N / _N)."""
    return p.is_dir() and any(d.is_dir() and d.name.startswith("checkpoint-") for d in p.iterdir())


def _step(name: str) -> int | None:
    m = _CKPT.match(name)
    return int(m.group(1)) if m else None


def checkpoints_of(run_dir: Path) -> list[Path]:
    """The checkpoint subfolders of a run, by step."""
    ds = [d for d in run_dir.iterdir() if d.is_dir() and _step(d.name) is not None]
    if not ds:
        raise ValueError(f"{run_dir}: no checkpoint subfolders (checkpoint-N/)")
    return sorted(ds, key=lambda d: (_step(d.name), d.name))


@dataclass
class Series:
    """An opened series: its manifest and members."""
    path: Path
    manifest: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.manifest["checkpoints"]]

    def member(self, name: str) -> dict[str, Any]:
        for c in self.manifest["checkpoints"]:
            if c["name"] == name:
                return c
        raise KeyError(f"{self.path}: no checkpoint {name!r} (have: {', '.join(self.names) or 'none'})")

    def member_path(self, name: str) -> Path:
        return self.path / self.member(name)["file"]

    def open(self, name: str, **kw: Any) -> api.WzFile:
        """Tensors of one checkpoint (its chain of references is resolved inside the series)."""
        return api.open(self.member_path(name), **kw)


def open_series(path: str | Path) -> Series:
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise FormatError(f"{path}: not a weightzip series (no {MANIFEST})")
    try:
        m = json.loads(mf.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{mf}: corrupt manifest ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("checkpoints"), list):
        raise FormatError(f"{mf}: not a weightzip series manifest")
    if m.get("version", 0) > VERSION:
        raise FormatError(f"{mf}: series version {m['version']} is newer than this weightzip: upgrade weightzip")
    for c in m["checkpoints"]:
        f = c.get("file") if isinstance(c, dict) else None
        if not isinstance(f, str) or "/" in f or "\\" in f or f.startswith("."):
            raise FormatError(f"{mf}: bad member entry {c!r}")
    return Series(path, m)


def _write_manifest(s: Series) -> None:
    write_atomic(s.path / MANIFEST, (json.dumps(s.manifest, indent=1) + "\n").encode(), overwrite=True)


def _pack_member(s: Series, ckpt: Path, name: str, level: str, threads: int | None) -> dict[str, Any]:
    cks = s.manifest["checkpoints"]
    k = int(s.manifest["keyframe_every"])
    step = _step(name)
    prev = cks[-1] if cks else None
    keyframe = prev is None or k <= 1 or (len(cks) % k == 0)
    lossy = s.manifest.get("lossy") or {}
    file = f"{step if step is not None else len(cks):08d}-{name}.wz"
    if any(c["file"] == file for c in cks):
        raise FileExistsError(f"{s.path}: a member {file} exists already")
    opts: dict[str, Any] = {k: lossy[k] for k in ("max_error", "moment_error") if lossy.get(k) is not None}
    if not keyframe:
        opts["ref"] = s.path / prev["file"]  # type: ignore[index]
    dst = api.pack(ckpt, s.path / file, level=level, threads=threads, progress=False, **opts)
    raw = api._source_size(ckpt)
    return {"name": name, "step": step, "file": file, "ref": None if keyframe else prev["file"],  # type: ignore[index]
            "bytes": dst.stat().st_size, "raw_bytes": raw}


def pack_series(run_dir: str | Path, dst: str | Path, keyframe_every: int = 8, level: str = "default",
                max_error: float | None = None, moment_error: float | None = None, threads: int | None = None,
                progress: bool | None = None, overwrite: bool = False) -> Path:
    """Pack every checkpoint subfolder of run_dir into the series folder dst (created). With
    max_error/moment_error the members are lossy (api.pack), deltas closed-loop."""
    from tqdm import tqdm
    run_dir, dst = Path(run_dir), Path(dst)
    if keyframe_every < 1:
        raise ValueError("keyframe_every must be >= 1")
    ckpts = checkpoints_of(run_dir)
    if dst.exists():
        if not overwrite:
            raise FileExistsError(f"{dst} exists (use --force to replace it)")
        open_series(dst)  # only ever replace a series, never some other folder
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    s = Series(dst, {"format": FORMAT, "version": VERSION, "keyframe_every": keyframe_every,
                     "lossy": None if max_error is None and moment_error is None else
                     {"max_error": max_error, "moment_error": moment_error}, "checkpoints": []})
    _write_manifest(s)
    for c in tqdm(ckpts, desc=f"pack {run_dir.name}", unit="ckpt", disable=progress is False):
        s.manifest["checkpoints"].append(_pack_member(s, c, c.name, level, threads))
        _write_manifest(s)
    return dst


def append(series: str | Path, checkpoint: str | Path, name: str | None = None, level: str = "default",
           threads: int | None = None) -> dict[str, Any]:
    """Add one checkpoint folder (or file) at the end; the old members are not touched."""
    s = open_series(series)
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint}: no such file or folder")
    name = name or checkpoint.name
    if name in s.names:
        raise ValueError(f"{series}: it holds a checkpoint {name!r} already")
    row = _pack_member(s, checkpoint, name, level, threads)
    s.manifest["checkpoints"].append(row)
    _write_manifest(s)
    return row


def unpack_checkpoint(series: str | Path, name: str, dst: str | Path | None = None,
                      threads: int | None = None, overwrite: bool = False) -> Path:
    s = open_series(series)
    out = Path(dst) if dst is not None else s.path.parent / name
    out.parent.mkdir(parents=True, exist_ok=True)
    return api.unpack(s.member_path(name), out, threads=threads, progress=False, overwrite=overwrite)


def unpack_series(series: str | Path, dst: str | Path, threads: int | None = None,
                  overwrite: bool = False) -> Path:
    """Every checkpoint into dst/<name>/."""
    s = open_series(series)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for n in s.names:
        unpack_checkpoint(s.path, n, dst / n, threads, overwrite)
    return dst


def series_info(series: str | Path, name: str | None = None, verify: bool = True,
                threads: int | None = None) -> dict[str, Any]:
    """One row per checkpoint, or the member's per-tensor table when name is given."""
    s = open_series(series)
    if name is not None:
        return inspect.info(s.member_path(name), verify=verify, threads=threads)
    rows = []
    for c in s.manifest["checkpoints"]:
        if verify:
            try:
                inspect.info(s.path / c["file"], verify=True, threads=threads)
            except FormatError as e:  # ChecksumError too: name the member that is broken
                raise type(e)(f"series member {c['name']} ({c['file']}): {e}") from None
        rows.append({**c, "kind": "keyframe" if c["ref"] is None else "delta",
                     "ratio": c["bytes"] / c["raw_bytes"] if c["raw_bytes"] else 1.0})
    total, raw = sum(r["bytes"] for r in rows), sum(r["raw_bytes"] for r in rows)
    return {"series": str(s.path), "keyframe_every": s.manifest["keyframe_every"], "lossy": s.manifest.get("lossy"),
            "checkpoints": rows, "total_bytes": total, "raw_bytes": raw, "ratio": total / raw if raw else 1.0,
            "verified": verify}
