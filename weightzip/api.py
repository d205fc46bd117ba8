"""Public API: pack/unpack files, save/load/open tensors, compress/decompress arrays."""
from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, Union

import numpy as np

from . import _C, inputs, refs, torch_io
from .atomic import atomic_folder, atomic_path  # noqa: F401  (atomic_path: re-exported)
from .batch import write_parts
from .container import Reader, Writer, check_threads, slabs_of
from .dtypes import by_name, from_numpy, from_torch
from .errors import FormatError
from .levels import DEFAULT_LEVEL

PathLike = Union[str, os.PathLike]  # runtime alias: no `|` (Python 3.9)
PROGRESS_MIN = 64 << 20  # show a progress bar from this many bytes on


def _bar(total: int, desc: str, progress: bool | None):
    """A tqdm bar, or a stand-in when nothing is shown: tqdm (and the ~60 ms of
    importlib.metadata it imports) is loaded only for a bar someone will see."""
    if not (total >= PROGRESS_MIN if progress is None else progress):
        return contextlib.nullcontext(SimpleNamespace(update=lambda n: None))
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False)


def _source_size(src: Path) -> int:
    if src.is_dir():
        return sum(p.stat().st_size for p in inputs.walk_folder(src))
    return src.stat().st_size


def pack(src: PathLike, dst: PathLike | None = None, level: str = DEFAULT_LEVEL,
         threads: int | None = None, progress: bool | None = None, overwrite: bool = False,
         ref: PathLike | None = None, max_error: float | None = None,
         moment_error: float | None = None) -> Path:
    """Compress a .safetensors file, HF model folder, torch checkpoint or .npy/.npz into .wz.

    dst defaults to SRC.wz beside the source; an existing folder means SRC.wz inside it. An
    existing dst is replaced only with overwrite=True (FileExistsError otherwise). With `ref`
    (an earlier .wz of the same model, e.g. the previous checkpoint), tensors and blobs that
    match one of it (same file, name, dtype, shape) are coded against it: unpacking then needs
    that exact reference (found beside the .wz by name, or given with ref=). With max_error
    and/or moment_error the float tensors of safetensors files are lossy (lossy.policy): each
    element within E x RMS(tensor); with ref, closed-loop against the reference's values."""
    src = Path(src)
    check_threads(threads)
    if not src.exists():
        raise FileNotFoundError(errno.ENOENT, "no such file or folder", str(src))
    src_abs = src.resolve()
    dst = Path(dst) if dst is not None else src_abs.with_name(src_abs.name + ".wz")
    if dst.is_dir():
        dst = dst / (src_abs.name + ".wz")
    if dst.resolve() == src_abs or (src.is_dir() and src_abs in dst.resolve().parents):
        raise ValueError(f"{dst}: the output must not be the input or lie inside the input folder")
    rsrc = refs.RefSource(ref, dst) if ref is not None else None
    with _bar(_source_size(src), f"pack {src.name}", progress) as bar, \
            atomic_path(dst, overwrite) as tmp, builtins.open(tmp, "wb") as f, _closing(rsrc):
        w = Writer(f, level, threads, on_bytes=bar.update, ref=rsrc, lossy=_policy(max_error, moment_error))
        files: list[dict[str, Any]] = []
        metadata: dict = {}
        source: dict[str, Any]
        if src.is_dir():
            source = {"kind": "folder"}
            for p in inputs.walk_folder(src):
                w.file = p.relative_to(src).as_posix()  # matches the reference's file of this path
                parts, how, meta = inputs.add_file(w, p)
                files.append({"path": w.file, "parts": parts, "as": how})
        elif (arrays := _npz_arrays(w, src)) is not None:
            source = {"kind": "npz-arrays", "arrays": arrays}
        else:
            parts, how, metadata = inputs.add_file(w, src)
            source = {"kind": how}
            files.append({"path": src.name, "parts": parts})
        source["name"] = src_abs.name  # what unpack() restores by default
        w.finish(files, source, metadata)
    return dst


def _policy(max_error: float | None, moment_error: float | None):
    if max_error is None and moment_error is None:
        return None
    from . import lossy
    return lossy.policy(max_error, moment_error)


class _closing:
    """Close an optional resource (None: nothing) on exit."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __enter__(self) -> Any:
        return self.obj

    def __exit__(self, *exc) -> None:
        if self.obj is not None:
            self.obj.close()


def _npz_arrays(w: Writer, p: Path) -> list[dict] | None:
    """Arrays of a deflated .npz (np.savez_compressed), stored tensor-exact; None otherwise
    (not .npz, uncompressed members that split byte-exact, or unreadable: stored as bytes)."""
    import zipfile
    if p.suffix.lower() != ".npz":
        return None
    try:
        with zipfile.ZipFile(p) as z:
            if all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist()):
                return None
        return inputs.add_npz_arrays(w, p)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return None


def unpack(src: PathLike, dst: PathLike | None = None, threads: int | None = None,
           progress: bool | None = None, overwrite: bool = False,
           ref: PathLike | list[PathLike] | None = None) -> Path:
    """Restore what pack() stored: the same bytes (or, for npz-compressed and old torch .wz
    files, the same tensors).

    dst defaults to the packed file's or folder's original name, beside the .wz; an existing
    folder as dst receives a packed file under its original name. A packed folder unpacked
    into an existing folder writes only the files it restores: one that already exists is
    replaced only with overwrite=True (checked before anything is written), and nothing else
    in the folder is touched. A single output file is never replaced without overwrite=True.
    A delta (packed with a reference) needs its reference: given with `ref` (several for a
    chain), or found by name beside the .wz (RefError otherwise)."""
    src = Path(src)
    check_threads(threads)
    with builtins.open(src, "rb") as f:
        r = Reader(f)
        with refs.attach(r, src, ref):
            return _unpack(src, r, dst, threads, progress, overwrite)


def _unpack(src: Path, r: Reader, dst: PathLike | None, threads: int | None,
            progress: bool | None, overwrite: bool) -> Path:
    kind = r.source.get("kind")
    if kind == "array":
        raise FormatError("this .wz holds an array from weightzip.compress(): use weightzip.decompress()")
    dst = _unpack_target(src, r, None if dst is None else Path(dst))
    total = sum(e.nbytes for e in r.entries)
    if kind == "folder":
        with _bar(total, f"unpack {src.name}", progress) as bar, atomic_folder(dst, overwrite) as tmp:
            for fd in r.files:
                out = _safe_join(tmp, fd["path"])
                out.parent.mkdir(parents=True, exist_ok=True)
                write_parts(r, fd["parts"], out, threads, bar)
        return dst
    with _bar(total, f"unpack {src.name}", progress) as bar, atomic_path(dst, overwrite) as tmp:
        if kind == "torch":
            obj = _from_index(lambda: torch_io.rebuild(
                r.source["tree"], lambda i: _tensor(r, _entry_index(r, i), "torch", threads)))
            torch_io.save_checkpoint(obj, tmp)
        elif kind == "npz-arrays":
            arrays = _from_index(lambda: {a["name"]: _npz_array(r, a, threads) for a in r.source["arrays"]})
            with builtins.open(tmp, "wb") as fo:  # a file object: numpy adds no suffix
                np.savez_compressed(fo, **arrays)
        else:
            if len(r.files) != 1:
                raise FormatError("corrupt index: expected exactly one file")
            write_parts(r, r.files[0]["parts"], tmp, threads, bar)
    return dst


_OLD_SUFFIX = {"torch": ".pt", "npz-arrays": ".npz"}  # .wz files from before the name was stored


def _unpack_target(src: Path, r: Reader, dst: Path | None) -> Path:
    """Where unpack() writes: dst, dst/NAME for an existing folder, or NAME beside the .wz,
    NAME being the original file or folder name stored at pack time."""
    kind = r.source.get("kind")
    name = r.source.get("name")
    if name is None and kind != "folder" and len(r.files) == 1:
        name = r.files[0].get("path")
    stem = src.name[:-3] if src.name.lower().endswith(".wz") else ""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        name = stem + ("" if Path(stem).suffix else _OLD_SUFFIX.get(str(kind), ""))
    if dst is not None:
        return dst / name if dst.is_dir() and kind != "folder" and name else dst
    if not name or name == src.name:
        raise ValueError(f"{src}: cannot guess the output name: give one with -o")
    return src.with_name(name)


def _from_index(build):
    """Run a rebuild step driven by the index; a malformed index is a FormatError."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"corrupt index ({type(e).__name__}: {e})") from None


def _entry_index(r: Reader, i: Any) -> int:
    if type(i) is not int or not 0 <= i < len(r.entries) or r.entries[i].kind != "tensor":
        raise FormatError("corrupt index (bad tensor reference)")
    return i


def _npz_array(r: Reader, a: dict, threads: int | None) -> np.ndarray:
    x = _tensor(r, _entry_index(r, a["entry"]), "numpy", threads)
    if "npdtype" in a:  # stored as bytes: reinterpret
        x = x.view(np.dtype(a["npdtype"])).reshape(a["shape"])
    return x


def _safe_join(root: Path, rel: str) -> Path:
    out = (root / rel).resolve()
    if rel.startswith("/") or ".." in Path(rel).parts or root.resolve() not in out.parents:
        raise FormatError(f"refusing to write outside the output folder: {rel!r}")
    return out


def _tensor(r: Reader, idx: int, framework: str, threads: int | None):
    e = r.entries[idx]
    raw = r.read_entry(idx, threads)
    if framework == "torch":
        return torch_io.to_tensor(raw, e.dtype, e.shape)
    if framework != "numpy":
        raise ValueError(f"framework must be 'numpy' or 'torch', not {framework!r}")
    order: Literal["C", "F"] = "F" if e.extra.get("order") == "F" else "C"
    return raw.view(by_name(e.dtype).numpy).reshape(e.shape, order=order)


class WzFile:
    """Lazy, random-access view of a .wz file (like safetensors.safe_open)."""

    def __init__(self, path: PathLike, framework: str = "numpy", threads: int | None = None,
                 ref: PathLike | list[PathLike] | None = None):
        self.framework, self.threads = framework, threads
        self._f = builtins.open(path, "rb")
        try:
            self._r = Reader(self._f)
            self._refs = refs.attach(self._r, path, ref)
        except BaseException:
            self._f.close()
            raise

    def keys(self) -> list[str]:
        return list(self._r.tensors)

    def __iter__(self):
        return iter(self._r.tensors)

    def __len__(self) -> int:
        return len(self._r.tensors)

    def __contains__(self, name: str) -> bool:
        return name in self._r.tensors

    def get_tensor(self, name: str):
        """Decode one tensor; nothing else in the file is read."""
        if name not in self._r.tensors:
            raise KeyError(name)
        return _tensor(self._r, self._r.tensors[name], self.framework, self.threads)

    def metadata(self) -> dict[str, Any]:
        return dict(self._r.metadata)

    @property
    def reader(self) -> Reader:
        return self._r

    def close(self) -> None:
        self._refs.close()
        self._f.close()

    def __enter__(self) -> WzFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open(path: PathLike, framework: str = "numpy", threads: int | None = None,  # noqa: A001
         ref: PathLike | list[PathLike] | None = None) -> WzFile:
    return WzFile(path, framework, threads, ref)


def load(path: PathLike, framework: str = "numpy", threads: int | None = None,
         ref: PathLike | list[PathLike] | None = None) -> dict[str, Any]:
    """Decode every tensor of a .wz file into a dict name -> array/tensor."""
    with WzFile(path, framework, threads, ref) as wf:
        return {k: wf.get_tensor(k) for k in wf.keys()}


def _as_bytes(name: str, t: Any) -> tuple[Any, tuple[int, ...], memoryview]:
    """(weightzip dtype, shape, raw little-endian bytes) of a numpy array or torch tensor."""
    if type(t).__module__.startswith("torch"):
        dt = from_torch(t.dtype)
        if dt is None:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        flat = t.detach().cpu().contiguous().reshape(-1)
        import torch
        return dt, tuple(t.shape), memoryview(flat.view(torch.uint8).numpy())
    a = np.asarray(t)
    dt = from_numpy(a.dtype)
    if dt is None:
        raise ValueError(f"{name}: unsupported dtype {a.dtype}")
    return dt, a.shape, np.ascontiguousarray(a).reshape(-1).view(np.uint8).data


def save(tensors: Mapping[str, Any], path: PathLike, level: str = DEFAULT_LEVEL,
         metadata: Mapping[str, str] | None = None, threads: int | None = None,
         overwrite: bool = False, ref: PathLike | None = None, max_error: float | None = None,
         moment_error: float | None = None, cache: refs.ReconCache | None = None) -> Path:
    """Write tensors to .wz; unpack() of it yields a valid .safetensors file. An existing
    path is replaced only with overwrite=True. With `ref` (an earlier save() of the same
    names, e.g. the previous checkpoint) tensors are coded against it; max_error and
    moment_error make float tensors lossy, as in pack(). cache (a refs.ReconCache) keeps this
    file's decoded tensors in memory, so that the next save with ref= this file skips decoding it."""
    items = [(name, *_as_bytes(name, t)) for name, t in tensors.items()]
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    off = 0
    for name, dt, shape, buf in items:
        header[name] = {"dtype": dt.name, "shape": list(shape), "data_offsets": [off, off + len(buf)]}
        off += len(buf)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)  # safetensors pads the header to 8 bytes
    path = Path(path)
    rsrc = refs.RefSource(ref, path, cache) if ref is not None else None
    with atomic_path(path, overwrite) as tmp, builtins.open(tmp, "wb") as f, _closing(rsrc):
        w = Writer(f, level, threads, ref=rsrc, lossy=_policy(max_error, moment_error))
        w.keep = {} if cache is not None else None
        parts = [w.add_blob(len(js).to_bytes(8, "little") + js)]
        parts += [w.add_tensor(name, dt, shape, slabs_of(buf), lossy_ok=True) for name, dt, shape, buf in items]
        ident = w.finish([{"path": path.with_suffix("").name or "tensors", "parts": parts}],
                         {"kind": "safetensors"}, dict(metadata or {}))
    if cache is not None:
        cache.store(*ident, w.keep or {})
    return path


def compress(data: Any, level: str = DEFAULT_LEVEL, threads: int | None = None) -> bytes:
    """Compress one array (numpy or torch, any supported dtype) or a bytes-like object."""
    is_bytes = isinstance(data, (bytes, bytearray, memoryview))
    arr = np.frombuffer(data, np.uint8) if is_bytes else data
    dt, shape, buf = _as_bytes("array", arr)
    out = _Parts()
    w = Writer(out, level, threads, pack_small=False)  # type: ignore[arg-type]  # one tensor: version 1
    w.add_tensor("array", dt, shape, slabs_of(buf))
    w.finish([], {"kind": "array", "bytes": is_bytes})
    return _C.join_bytes(out.parts)


class _Parts:
    """A write-only file that keeps the written buffers (fresh ones, owned by nobody else) and
    joins them once (_C.join_bytes, into huge pages): compress() copies its output once."""

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def write(self, b: Any) -> int:
        self.parts.append(b)
        return len(memoryview(b).cast("B"))


def decompress(blob: bytes | bytearray | memoryview, threads: int | None = None) -> Any:
    """Inverse of compress(): returns a numpy array (or bytes if bytes went in)."""
    r = Reader(io.BytesIO(blob))
    r.mem = memoryview(blob).cast("B")
    if r.source.get("kind") != "array" or len(r.entries) != 1:
        raise FormatError("not a weightzip.compress() frame (use weightzip.load for files)")
    a = _tensor(r, 0, "numpy", threads)
    return _C.join_bytes([a]) if r.source.get("bytes") else a  # a.tobytes(), into huge pages
