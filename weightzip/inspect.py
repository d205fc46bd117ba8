"""`info` (what is inside a .wz and how well it compressed) and `verify` (is it intact and
does it reproduce the original)."""
from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import _C, inputs, refs, zipscan
from .api import PathLike, _tensor
from .container import METHODS, PREDICTORS, SLAB_BYTES, Entry, Reader
from .errors import ChecksumError, FormatError
from .packs import member_of


def info(path: PathLike, verify: bool = True, threads: int | None = None,
         ref: PathLike | list[PathLike] | None = None) -> dict[str, Any]:
    """Per-entry table (name, dtype, shape, bytes before/after, ratio, codecs) and totals.

    With verify=True (the default) every chunk is decoded and checked against its checksum
    first, so a corrupt file raises ChecksumError/FormatError instead of showing a table;
    verify=False reads only the index ("verified": False in the result), and needs no
    reference for a delta file (verifying one does: `ref`, or found beside it)."""
    path = Path(path)
    with builtins.open(path, "rb") as f:
        r = Reader(f)
        if verify:
            with refs.attach(r, path, ref):
                _check_all(r, threads)
        rows = []
        for e in r.entries:
            if e.kind == "pack":  # its members' rows carry its bytes
                continue
            csize = stored_bytes(r, e)
            rows.append({
                "name": e.name if e.kind == "tensor" else "(bytes)",
                "kind": e.kind, "dtype": e.dtype, "shape": list(e.shape),
                "bytes": e.nbytes, "stored": csize,
                "ratio": csize / e.nbytes if e.nbytes else 1.0,
                "codecs": {"packed": 1, **chunk_methods(r, r.entries[member_of(e)[0]])} if member_of(e)
                else chunk_methods(r, e),  # a packed tensor: its pack's streams, and its share of the bytes
                "bits_per_weight": 8 * csize / (e.nbytes // r.dtype_of(e).itemsize) if e.nbytes else 0.0,
                "lossy": e.extra.get("lossy"),
            })
        raw = sum(x["bytes"] for x in rows)
        return {
            "file": str(path), "level": r.level, "source": r.source.get("kind"),
            "files": [fd["path"] for fd in r.files], "entries": rows,
            "total_bytes": raw, "file_bytes": path.stat().st_size,
            "ratio": path.stat().st_size / raw if raw else 1.0, "verified": verify,
            "ref": r.ref.to_json() if r.ref else None,
        }


def stored_bytes(r: Reader, e: Any) -> int:
    """Coded bytes of an entry; a packed tensor's share of its pack, by size."""
    m = member_of(e)
    if m is None:
        return int(r.table["csize"][e.first:e.first + e.count].sum())
    p = r.entries[m[0]]
    return round(stored_bytes(r, p) * e.nbytes / p.nbytes) if p.nbytes else 0


def _check_all(r: Reader, threads: int | None) -> None:
    """Decode every entry (each chunk is checked against its checksum) and discard it."""
    for i in range(len(r.entries)):
        for _ in r.iter_entry(i, threads):
            pass


def _sha256(chunks: Iterator[memoryview | bytes]) -> bytes:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.digest()


def _file_blocks(path: Path) -> Iterator[bytes]:
    with builtins.open(path, "rb") as f:
        while block := f.read(SLAB_BYTES):
            yield block


def _parts_stream(r: Reader, parts: list[int], threads) -> Iterator[memoryview]:
    for idx in parts:
        yield from r.iter_entry(idx, threads)


def verify(path: PathLike, original: PathLike | None = None, threads: int | None = None,
           ref: PathLike | list[PathLike] | None = None) -> str:
    """Decode everything (checking every checksum); with `original`, also check that the
    restored content equals it. Returns a one-line summary; raises on any mismatch. A delta
    file needs its reference (`ref`, or found beside it)."""
    path = Path(path)
    with builtins.open(path, "rb") as f, refs.Resolver(refs.as_paths(ref)) as res:
        r = Reader(f)
        res.attach(r, path)
        kind = r.source.get("kind")
        if original is None:
            _check_all(r, threads)
            return f"OK: {len(r.entries)} entries, all checksums match"
        original = Path(original)
        if kind == "torch":  # old .wz files only (tensor-exact); new checkpoints compare bytes below
            import torch
            ref = torch.load(original, map_location="cpu", weights_only=True)
            flat = _flatten_torch(ref)
            if set(flat) != set(r.tensors):
                raise ChecksumError("tensor names differ from the original")
            for name, t in flat.items():
                got = _tensor(r, r.tensors[name], "torch", threads)
                same_kind = got.dtype == t.dtype and tuple(got.shape) == tuple(t.shape)
                if not same_kind or not torch.equal(got.reshape(-1).view(torch.uint8),
                                                    t.contiguous().reshape(-1).view(torch.uint8)):
                    raise ChecksumError(f"tensor {name!r} differs from the original")
            return f"OK: {len(flat)} tensors bit-exact with {original}"
        if kind == "npz-arrays":
            with np.load(original, allow_pickle=False) as z:
                for a in r.source["arrays"]:
                    if z[a["name"]].tobytes() != _tensor(r, a["entry"], "numpy", threads).tobytes():
                        raise ChecksumError(f"array {a['name']!r} differs from the original")
            return f"OK: {len(r.source['arrays'])} arrays bit-exact with {original}"
        targets = [(fd, original / fd["path"] if kind == "folder" else original) for fd in r.files]
        if kind == "folder":
            on_disk = {p.relative_to(original).as_posix() for p in inputs.walk_folder(original)}
            if on_disk != {fd["path"] for fd in r.files}:
                raise ChecksumError("the folder's file list differs from the original")
        n_lossy = 0
        for fd, p in targets:
            if any("lossy" in r.entries[i].extra for i in fd["parts"]):
                n_lossy += _check_lossy_file(r, fd["parts"], p, threads)
            elif _sha256(_parts_stream(r, fd["parts"], threads)) != _sha256(_file_blocks(p)):
                raise ChecksumError(f"{fd['path']}: restored bytes differ from {p}")
        if n_lossy:
            return (f"OK: {len(targets)} file(s) match {original}: {n_lossy} lossy tensor(s) within their "
                    "bound, everything else byte-identical")
        return f"OK: {len(targets)} file(s) byte-identical (sha256) to {original}"


def _check_lossy_file(r: Reader, parts: list[int], path: Path, threads: int | None) -> int:
    """Parts in file order against the original: lossy tensors within their stored bound
    (|x - x̂| <= E x RMS; in sqrt(v) for the sqrt domain; non-finite values bit-exact), every
    other part byte-identical. Returns how many tensors were lossy."""
    n, pos = 0, 0
    with builtins.open(path, "rb") as f:
        crc_fields = _zip_crc_fields(f, path)
        for i in parts:
            e = r.entries[i]
            f.seek(pos)
            want = f.read(e.nbytes)
            if len(want) != e.nbytes:
                raise ChecksumError(f"{path}: shorter than the restored content")
            got = r.read_entry(i, threads)
            lo = e.extra.get("lossy")
            start, pos = pos, pos + e.nbytes
            if lo is None:
                if got.tobytes() != want and not _same_but_crcs(got.tobytes(), want, start, crc_fields):
                    raise ChecksumError(f"{path}: restored bytes differ (entry {i})")
                continue
            n += 1
            dt = r.dtype_of(e).numpy
            x, xh = np.frombuffer(want, dt).astype(np.float64), got.view(dt).astype(np.float64)
            fin = np.isfinite(x)
            if lo["domain"] == "sqrt":
                x, xh = np.sqrt(np.maximum(x, 0)), np.sqrt(np.maximum(xh, 0))
            bits = np.frombuffer(want, f"u{dt.itemsize}")
            if not np.array_equal(bits[~fin], got.view(bits.dtype)[~fin]) or \
                    np.any(np.abs(x[fin] - xh[fin]) > float(lo["bound"])):
                raise ChecksumError(f"{e.name}: not within its bound {lo['bound']:.3g} of {path}")
    if path.stat().st_size != pos:
        raise ChecksumError(f"{path}: longer than the restored content")
    return n


def _zip_crc_fields(f: Any, path: Path) -> list[int]:
    """Offsets of the CRC-32 fields of a zip (torch) original: a lossy pack rewrites them for
    the reconstructed members, so verify compares everything but them."""
    size = path.stat().st_size
    f.seek(0)
    if not zipscan.is_zip(f.read(4)):
        return []
    try:
        return sorted(o for at in zipscan.crc_fields(f, size, zipscan.members(f, size)).values() for o in at)
    except FormatError:
        return []


def _same_but_crcs(got: bytes, want: bytes, start: int, crc_fields: list[int]) -> bool:
    if len(got) != len(want):
        return False
    a, b = bytearray(got), bytearray(want)
    for off in crc_fields:
        if start <= off and off + 4 <= start + len(a):
            a[off - start:off - start + 4] = b[off - start:off - start + 4] = b"\0\0\0\0"
    return a == b


def _flatten_torch(obj: Any, name: str = "") -> dict[str, Any]:
    import torch
    if isinstance(obj, torch.Tensor):
        return {name: obj}
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten_torch(v, f"{name}.{k}" if name else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_flatten_torch(v, f"{name}.{i}"))
    return out


def chunk_methods(r: Reader, e: Entry) -> dict[str, int]:
    """How many streams of this entry each method coded (for `weightzip info`)."""
    counts: dict[str, int] = {}
    k = _C.stream_count(r.dtype_of(e).transform, r.dtype_of(e).itemsize)
    for off in r.offset[e.first:e.first + e.count]:
        r.f.seek(int(off))
        head = r.f.read(max(k, 1) + 2)
        pred = PREDICTORS[head[1]] if head[:1] == b"\xfe" and len(head) > 1 and head[1] < len(PREDICTORS) else None
        if pred is not None:  # coded against the reference: predictor, then its streams
            head = head[2:2 + {"sublen": 2, "zstd-dict": 0}.get(pred, k)]
        if head[:1] == b"\xfd":  # quantised (lossy): flags byte says whether predicted
            names = ["quantised"] + (["ref:quantised"] if len(head) > 2 and head[2] & 8 else [])
            for name in names:
                counts[name] = counts.get(name, 0) + 1
            continue
        names = ["stored"] if head[:1] == b"\xff" else \
            [METHODS[m & 0x7f] if m & 0x7f < len(METHODS) else "?" for m in head[:k]]
        if pred is not None:
            names.append(f"ref:{pred}")
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return counts


__all__ = ["info", "verify", "FormatError"]
