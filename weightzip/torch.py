"""Checkpoints inside PyTorch training loops.

    import weightzip.torch as wzt
    wzt.save_checkpoint(model, optimizer, "ckpt-1000.wz", step=1000)
    wzt.save_checkpoint(model, optimizer, "ckpt-1100.wz", step=1100, ref="ckpt-1000.wz")  # a delta
    info = wzt.load_checkpoint("ckpt-1100.wz", model, optimizer)   # finds ckpt-1000.wz beside it

A checkpoint is one .wz of the safetensors kind: `weightzip unpack` gives an ordinary
.safetensors file. Tensors are named `model/<key>`, `optimizer/<param id>/<state key>` and
`rng/torch`; everything else (param_groups, non-tensor optimizer state, the scheduler's
state, the step, `extra`) is JSON in the safetensors metadata under "weightzip.checkpoint".
Nothing is pickled, so loading never runs code from the file.

This module imports torch; `import weightzip` never imports it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch

from . import api
from .errors import FormatError
from .refs import ReconCache
from .torch_module import coded_bytes, compress_module, decompress_module, recompress_module  # noqa: F401

META_KEY = "weightzip.checkpoint"
FORMAT = "weightzip-torch-checkpoint/1"
PathLike = Union[str, Path]


def _json_ok(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=True)
        return True
    except (TypeError, ValueError):
        return False


def _state_to_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors to store, the JSON rest)."""
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[tuple, str] = {}  # tied parameters (one storage, same view) are stored once
    ties: dict[str, str] = {}
    for k, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key in seen and t.numel():
            ties[k] = seen[key]
            continue
        seen[key] = k
        tensors[f"model/{k}"] = t
    meta: dict[str, Any] = {"format": FORMAT, "ties": ties}
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, st in sd["state"].items():
            for key, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optimizer/{pid}/{key}"] = v
                elif _json_ok(v):
                    scalars.setdefault(str(pid), {})[key] = v
                else:
                    raise TypeError(f"optimizer state {pid}.{key} is neither a tensor nor JSON: {type(v).__name__}")
        if not _json_ok(sd["param_groups"]):
            raise TypeError("optimizer param_groups hold values that are not JSON")
        meta["optimizer"] = {"param_groups": sd["param_groups"], "scalars": scalars,
                             "pids": [str(p) for p in sd["state"]]}
    tensors["rng/torch"] = torch.get_rng_state()
    return tensors, meta


def save_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, path: PathLike, *,
                    step: int | None = None, scheduler: Any = None, extra: Mapping[str, Any] | None = None,
                    ref: PathLike | None = None, max_error: float | None = None,
                    moment_error: float | None = None, level: str = "default", threads: int | None = None,
                    overwrite: bool = True, cache: ReconCache | None = None) -> Path:
    """Write model (+ optimizer, scheduler, RNG, step, JSON extra) to one .wz.

    ref: a previous checkpoint .wz to code against (lossless deltas; closed-loop in lossy mode).
    max_error: lossy weights, each element within max_error x RMS(tensor). moment_error: the
    bound for Adam's moments (exp_avg linear, exp_avg_sq in the sqrt domain); default
    max_error. Without either the checkpoint is lossless (weightzip.lossy.policy)."""
    tensors, meta = _state_to_tensors(model, optimizer)
    meta["step"] = step
    if scheduler is not None:
        sd = scheduler.state_dict()
        if not _json_ok(sd):
            raise TypeError("scheduler.state_dict() is not JSON; pass what you need in extra")
        meta["scheduler"] = sd
    if extra is not None:
        if not _json_ok(dict(extra)):
            raise TypeError("extra must be JSON-serialisable")
        meta["extra"] = dict(extra)
    md = {META_KEY: json.dumps(meta, separators=(",", ":"))}
    return api.save(tensors, path, level=level, metadata=md, threads=threads, overwrite=overwrite, ref=ref,
                    max_error=max_error, moment_error=moment_error, cache=cache)


def load_checkpoint(path: PathLike, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, *,
                    ref: PathLike | None = None, strict: bool = True, restore_rng: bool = True) -> dict[str, Any]:
    """Load a save_checkpoint() file into model/optimizer/scheduler (each optional). Returns
    {"step", "extra", "model", "optimizer"}: the step and extra as saved, and the state dicts."""
    kw = {"ref": ref} if ref is not None else {}
    with api.open(path, framework="torch", **kw) as f:
        raw = f.metadata().get(META_KEY)
        if raw is None:
            raise FormatError(f"{path}: not a weightzip.torch checkpoint (no {META_KEY} metadata)")
        meta = json.loads(raw)
        if meta.get("format") != FORMAT:
            raise FormatError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    msd = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    for k, src in meta.get("ties", {}).items():
        msd[k] = msd[src]
    osd = None
    if "optimizer" in meta:
        om = meta["optimizer"]
        state: dict[int, dict[str, Any]] = {int(p): {} for p in om["pids"]}
        for k, v in tensors.items():
            if k.startswith("optimizer/"):
                _, pid, key = k.split("/", 2)
                state[int(pid)][key] = v
        for pid, sc in om["scalars"].items():
            state[int(pid)].update(sc)
        osd = {"state": state, "param_groups": om["param_groups"]}
    if model is not None:
        model.load_state_dict(msd, strict=strict)
    if optimizer is not None:
        if osd is None:
            raise FormatError(f"{path}: the checkpoint holds no optimizer state")
        optimizer.load_state_dict(osd)
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict(meta["scheduler"])
    if restore_rng and "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    return {"step": meta.get("step"), "extra": meta.get("extra"), "model": msd, "optimizer": osd}


class CheckpointChain:
    """Checkpoints of one run in a folder, each a delta against the one before (closed-loop
    when lossy), a keyframe every `keyframe_every`, so loading any of them decodes at most that
    many files. The last save's decoded tensors stay in memory, so the next delta needs no
    decode. A new CheckpointChain on an existing folder continues its chain.

        chain = CheckpointChain("ckpt/", keyframe_every=8, moment_error=0.1)
        chain.save(model, optimizer, step=step)          # every N steps
        info = chain.load(model, optimizer)              # the latest (or step=...)
    """
    PATTERN = "ckpt-*.wz"

    def __init__(self, directory: PathLike, keyframe_every: int = 8, max_error: float | None = None,
                 moment_error: float | None = None, level: str = "default", threads: int | None = None):
        if keyframe_every < 1:
            raise ValueError("keyframe_every must be >= 1")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.k, self.level, self.threads = keyframe_every, level, threads
        self.max_error, self.moment_error = max_error, moment_error
        self.cache = ReconCache()

    def paths(self) -> list[Path]:
        return sorted(self.dir.glob(self.PATTERN))

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *, step: int,
             scheduler: Any = None, extra: Mapping[str, Any] | None = None) -> Path:
        have = self.paths()
        keyframe = not have or len(have) % self.k == 0
        return save_checkpoint(model, optimizer, self.dir / f"ckpt-{step:09d}.wz", step=step, scheduler=scheduler,
                               extra=extra, ref=None if keyframe else have[-1], max_error=self.max_error,
                               moment_error=self.moment_error, level=self.level, threads=self.threads,
                               overwrite=False, cache=self.cache)

    def load(self, model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
             scheduler: Any = None, step: int | None = None, **kw: Any) -> dict[str, Any]:
        have = self.paths()
        if not have:
            raise FileNotFoundError(f"{self.dir}: no checkpoints")
        path = have[-1] if step is None else self.dir / f"ckpt-{step:09d}.wz"
        return load_checkpoint(path, model, optimizer, scheduler, **kw)


def __getattr__(name: str):  # the DCP storage layer (needs torch.distributed) is imported on first use
    if name in ("WzStorageWriter", "WzStorageReader"):
        from . import torch_dcp
        return getattr(torch_dcp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
