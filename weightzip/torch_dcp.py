"""A `torch.distributed.checkpoint` (DCP) storage layer that compresses each rank's data.

    import torch.distributed.checkpoint as dcp
    from weightzip.torch import WzStorageWriter, WzStorageReader
    dcp.save(state, storage_writer=WzStorageWriter("ckpt/1000"))
    dcp.save(state, storage_writer=WzStorageWriter("ckpt/1100", ref="ckpt/1000"))  # deltas
    dcp.load(state, storage_reader=WzStorageReader("ckpt/1100"))

A checkpoint is a folder as FileSystemWriter makes it: `.metadata` (pickled DCP Metadata)
and one file per rank, here `__{rank}_0.wz` (a weightzip file of the safetensors kind).
Tensors are named `{fqn}@{offsets}` (the shard's offsets, so names are stable across saves)
and byte items (non-tensor state) are uint8 tensors named `{fqn}`. With `ref=<previous
checkpoint folder>` each rank file is coded against the same rank's file there (lossless
deltas); a rank without one is coded independently. The reader finds the references again
through the `.metadata` of the folders (relative paths), or from `ref=`.
"""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import torch

try:
    from torch.distributed.checkpoint.filesystem import FileSystem
    from torch.distributed.checkpoint.metadata import Metadata, MetadataIndex, StorageMeta
    from torch.distributed.checkpoint.planner import (
        LoadItemType,
        LoadPlan,
        LoadPlanner,
        SavePlan,
        SavePlanner,
        WriteItemType,
    )
    from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
    from torch.futures import Future
except ImportError as e:  # torch<2.3, or built without torch.distributed
    raise ImportError(f"weightzip.torch_dcp needs torch>=2.3 with torch.distributed ({e}); "
                      f"this is torch {torch.__version__}") from e

from . import api
from .dtypes import from_torch
from .errors import RefError

__all__ = ["WzStorageWriter", "WzStorageReader"]

PathLike = Union[str, os.PathLike]
METADATA = ".metadata"  # as torch's filesystem.py (_metadata_fn)
DCP_VERSION = "1.0.0"   # filesystem.CURRENT_DCP_VERSION
MAX_CHAIN = 200


@dataclasses.dataclass
class _WzPrefix:
    """SavePlan.storage_data: the rank whose file `__{rank}_0.wz` gets this plan's items."""
    rank: int


@dataclasses.dataclass
class _WzInfo:
    """Metadata.storage_data[index]: where an item lives. `ref` is the reference of that rank
    file, relative to the checkpoint folder (None: independent). `raw` = (torch dtype name,
    shape) for a tensor stored as its bytes (a dtype weightzip has no codec for)."""
    relative_path: str
    name: str
    ref: str | None = None
    raw: tuple[str, tuple[int, ...]] | None = None


def _rank_file(rank: int) -> str:
    return f"__{rank}_0.wz"


def _entry_name(index: MetadataIndex) -> str:
    return f"{index.fqn}@{','.join(str(o) for o in (index.offset or ()))}"


def _narrow(t: torch.Tensor, offsets: Sequence[int], lengths: Sequence[int]) -> torch.Tensor:
    """The part of t at offsets/lengths (torch.distributed._shard._utils.narrow_tensor_by_index)."""
    for dim, (o, n) in enumerate(zip(offsets, lengths)):
        if n != t.size(dim):
            t = t.narrow(dim, o, n)
    return t


def _load_metadata(folder: Path, rank: int | None = None) -> Metadata:
    path = folder / (METADATA if rank is None else f"__{rank}{METADATA}")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such checkpoint folder")
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not a (complete) DCP checkpoint: {path.name} is missing")
    with open(path, "rb") as f:
        return pickle.load(f)  # as FileSystemReader does: only load checkpoints you trust


def _file_refs(storage_data: Any) -> dict[str, str | None]:
    """relative rank file -> its reference (relative to the folder), from storage_data."""
    out: dict[str, str | None] = {}
    for info in (storage_data or {}).values():
        if isinstance(info, _WzInfo):
            out.setdefault(info.relative_path, info.ref)
    return out


def _chain_base(p: Path) -> Path | None:
    """The file a new rank file is coded against, for reference p: p itself, or if p is a
    delta (per its folder's .metadata) the independent file its chain starts from. (Every
    rank file of a chain has the same name, and api.save looks for a reference's own
    reference beside it by name, so deltas here are kept one level deep.)"""
    for _ in range(MAX_CHAIN):
        try:
            r = _file_refs(_load_metadata(p.parent).storage_data).get(p.name)
        except (OSError, pickle.UnpicklingError):
            return p  # no readable .metadata: try p as it is (api.save checks it)
        if r is None:
            return p
        p = Path(os.path.normpath(p.parent / r))
        if not p.is_file():
            return None
    return None


class _WzCheckpointFolder:
    """What the writer and the reader share: the checkpoint is the folder `self.path`, and a
    checkpoint id is valid where FileSystemWriter/Reader would take it."""

    path: Path

    @property
    def checkpoint_id(self) -> PathLike:
        return self.path

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: PathLike) -> bool:
        return FileSystem.validate_checkpoint_id(checkpoint_id)


class WzStorageWriter(_WzCheckpointFolder, StorageWriter):
    """Writes a DCP checkpoint to folder `path`: one compressed .wz per rank.

    ref: a previous checkpoint folder of this layer; each rank's file is coded against the
    same rank's file there, if it exists (independent otherwise). level/threads: as
    weightzip.save. overwrite: replace an existing checkpoint (its .metadata) in `path`."""

    def __init__(self, path: PathLike, *, ref: PathLike | None = None, level: str = "default",
                 threads: int | None = None, overwrite: bool = False):
        super().__init__()
        self.path = Path(path)
        self.ref = None if ref is None else Path(ref)
        self.level, self.threads, self.overwrite = level, threads, overwrite
        self.save_id = uuid.uuid4().hex
        self.rank: int | None = None
        self.use_collectives = True

    def reset(self, checkpoint_id: PathLike | None = None) -> None:
        if checkpoint_id:
            self.path = Path(checkpoint_id)
        self.save_id = uuid.uuid4().hex

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self.rank = kwargs.get("rank")
        self.use_collectives = kwargs.get("use_collectives", True)

    def _metadata_path(self, rank: int | None = None) -> Path:
        return self.path / (METADATA if rank is None else f"__{rank}{METADATA}")

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        self.path.mkdir(parents=True, exist_ok=True)
        md = self._metadata_path(None if self.use_collectives else 0)
        if md.exists() and not self.overwrite:
            raise FileExistsError(f"{self.path}: a checkpoint exists here ({md.name}); "
                                  "pass overwrite=True to replace it")
        if self.rank is not None and not self.use_collectives:
            plan = dataclasses.replace(plan, storage_data=_WzPrefix(self.rank))
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        return [p if p.storage_data is not None else dataclasses.replace(p, storage_data=_WzPrefix(i))
                for i, p in enumerate(plans)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        prefix = plan.storage_data
        rank = prefix.rank if isinstance(prefix, _WzPrefix) else (self.rank or 0)
        rel = _rank_file(rank)
        ref_file = None
        if self.ref is not None and (self.ref / rel).is_file():
            ref_file = _chain_base(self.ref / rel)
        tensors: dict[str, torch.Tensor] = {}
        results: list[WriteResult] = []
        for item in plan.items:
            data = planner.resolve_data(item)
            raw = None
            if item.type == WriteItemType.BYTE_IO:
                name = item.index.fqn
                buf = data.getvalue() if isinstance(data, io.BytesIO) else bytes(data)
                t = torch.frombuffer(bytearray(buf), dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
                nbytes = len(buf)
            else:
                name = _entry_name(item.index)
                t = data.detach().cpu().contiguous()
                nbytes = t.numel() * t.element_size()
                if from_torch(t.dtype) is None:  # e.g. complex: stored as its bytes
                    raw = (str(t.dtype).removeprefix("torch."), tuple(t.shape))
                    t = t.reshape(-1).view(torch.uint8)
            if name in tensors:
                raise ValueError(f"two items of rank {rank} map to the same entry {name!r}")
            tensors[name] = t
            results.append(WriteResult(index=item.index, size_in_bytes=nbytes,
                                       storage_data=_WzInfo(rel, name, None, raw)))
        # .metadata guards against overwriting a finished checkpoint (prepare_local_plan);
        # a rank file without it is left over from an unfinished save and is replaced.
        try:
            api.save(tensors, self.path / rel, level=self.level, threads=self.threads, overwrite=True,
                     ref=ref_file)
        except RefError as e:  # e.g. a reference whose own reference is gone: code independently
            warnings.warn(f"{self.path / rel}: not coded against {ref_file} ({e}); written independently",
                          stacklevel=2)
            ref_file = None
            api.save(tensors, self.path / rel, level=self.level, threads=self.threads, overwrite=True)
        if ref_file is not None:
            ref_rel = os.path.relpath(ref_file, self.path)
            for wr in results:
                wr.storage_data.ref = ref_rel
        fut: Future[list[WriteResult]] = Future()
        fut.set_result(results)
        return fut

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        metadata.version = DCP_VERSION
        metadata.storage_data = {wr.index: wr.storage_data for wrs in results for wr in wrs}
        metadata.storage_meta = self.storage_meta()
        per_rank = not self.use_collectives and self.rank is not None
        final = self._metadata_path(self.rank if per_rank else None)
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(metadata, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def storage_meta(self) -> StorageMeta | None:
        return StorageMeta(checkpoint_id=str(self.path), save_id=self.save_id)


class WzStorageReader(_WzCheckpointFolder, StorageReader):
    """Reads a checkpoint written by WzStorageWriter. The references of delta files are found
    through the `.metadata` of the checkpoint folders (paths relative to each folder); if
    the folders moved apart, give them with ref= (a folder, a .wz, or a list of these).
    threads: decoding threads (as weightzip.open)."""

    def __init__(self, path: PathLike, *, ref: PathLike | Sequence[PathLike] | None = None,
                 threads: int | None = None):
        super().__init__()
        self.path, self.threads = Path(path), threads
        self.ref = [] if ref is None else [Path(ref)] if isinstance(ref, (str, os.PathLike)) else [Path(r) for r in ref]
        self.storage_data: dict[Any, Any] = {}
        self.load_id = uuid.uuid4().hex
        self.rank: int | None = None
        self.use_collectives = True

    def reset(self, checkpoint_id: PathLike | None = None) -> None:
        self.storage_data = {}
        if checkpoint_id:
            self.path = Path(checkpoint_id)
        self.load_id = uuid.uuid4().hex

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        md = _load_metadata(self.path, kwargs.get("rank"))
        if getattr(md, "storage_meta", None) is None:
            md.storage_meta = StorageMeta()
        md.storage_meta.load_id = self.load_id
        return md

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self.storage_data = metadata.storage_data
        self.rank = kwargs.get("rank")
        self.use_collectives = kwargs.get("use_collectives", True)
        if self.storage_data is None:
            raise ValueError(f"{self.path}: .metadata has no storage_data")

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def _refs_of(self, rel: str) -> list[Path]:
        """Candidate references for rank file rel: ref= given, then the chain of folders."""
        out: list[Path] = [r / rel if r.is_dir() else r for r in self.ref]
        folder, ref = self.path, _file_refs(self.storage_data).get(rel)
        for _ in range(MAX_CHAIN):
            if ref is None:
                break
            p = Path(os.path.normpath(folder / ref))
            if not p.is_file():
                break
            out.append(p)
            try:
                md = _load_metadata(p.parent)
            except (OSError, pickle.UnpicklingError):
                break
            folder, ref = p.parent, _file_refs(md.storage_data).get(p.name)
        return [p for p in out if p.is_file()]

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        per_file: dict[str, list[Any]] = {}
        for req in plan.items:
            per_file.setdefault(self.storage_data[req.storage_index].relative_path, []).append(req)
        for rel, reqs in per_file.items():
            path = self.path / rel
            if not path.is_file():
                raise FileNotFoundError(f"{self.path}: rank file {rel} is missing (incomplete checkpoint?)")
            cands: list[PathLike] = list(self._refs_of(rel))
            try:
                f = api.open(path, framework="torch", threads=self.threads, ref=cands or None)
            except RefError as e:
                looked = ", ".join(str(c) for c in cands) or "none found"
                raise RefError(f"{path} is a delta against an earlier checkpoint's {rel}, which is not usable "
                               f"(tried: {looked}); pass ref=<that folder> to WzStorageReader [{e}]") from None
            with f:
                for req in reqs:
                    info: _WzInfo = self.storage_data[req.storage_index]
                    t = f.get_tensor(info.name)
                    if req.type == LoadItemType.BYTE_IO:
                        planner.load_bytes(req, io.BytesIO(t.numpy().tobytes()))
                        continue
                    if info.raw is not None:
                        t = t.view(getattr(torch, info.raw[0])).reshape(info.raw[1])
                    t = _narrow(t, req.storage_offsets, req.lengths)
                    target = planner.resolve_tensor(req).detach()
                    if target.size() != t.size():
                        raise ValueError(f"{info.name}: size mismatch {tuple(target.size())} vs {tuple(t.size())}")
                    target.copy_(t)
                    planner.commit_tensor(req, target)
        fut: Future[None] = Future()
        fut.set_result(None)
        return fut
