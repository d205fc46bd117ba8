"""Data-parallel training's plumbing (neurocodec.tools.trainer uses it under torchrun): the
process group (gloo on the CPU, NCCL on cuda:LOCAL_RANK), per-rank seeds, and the collectives
that keep the processes' models identical without DistributedDataParallel: one all-reduce of
the gradients per step, broadcasts from rank 0, averages. Every function is a no-op (or the
identity) in a one-process run, so tasks may call broadcast_from_rank0 and
average_across_ranks unconditionally."""
from __future__ import annotations

import atexit
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from neurocodec.tools.checkpoints import pick_device


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps seed (a one-process run's); any other rank a seed drawn from (seed, rank)."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def in_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def join_group(device: str) -> torch.device:
    """This process's device in a multi-process run; the process group, started on the first
    call (gloo for the CPU, NCCL for cuda:LOCAL_RANK: "auto" or "cuda" under torchrun), is
    kept for later runs of the process (torch cannot start it twice) and ended at its exit."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda:"):
        raise ValueError(f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK (use --device cuda)")
    dev = torch.device(f"cuda:{local}") if device == "cuda" or (
        device == "auto" and torch.cuda.is_available()) else pick_device(device)
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local} has no GPU ({torch.cuda.device_count()} visible): start at most "
                             "that many processes per machine, or train with --device cpu")
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        if dev.type == "cuda":
            dist.init_process_group("nccl", device_id=dev)
        else:
            dist.init_process_group("gloo")
        atexit.register(_end_group)
    return dev


def _end_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _flat(tensors: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])


def _unflat(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy the chunks of flat back into tensors (any memory format)."""
    i = 0
    for t in tensors:
        t.detach().copy_(flat[i:i + t.numel()].view(t.shape))
        i += t.numel()


def _float_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def broadcast_from_rank0(tensors: Iterable[torch.Tensor]) -> None:
    """Make tensors (parameters, buffers) rank 0's on every process: one broadcast. A no-op in
    a one-process run."""
    tensors = list(tensors)
    if world() == 1 or not tensors:
        return
    for dtype in dict.fromkeys(t.dtype for t in tensors):  # one broadcast per dtype, exact
        group = [t for t in tensors if t.dtype == dtype]
        flat = _flat(group, dtype)
        dist.broadcast(flat, src=0)
        _unflat(flat, group)


def average_across_ranks(tensors: Iterable[torch.Tensor]) -> None:
    """Replace floating-point tensors by their mean over the processes (in place): one
    all-reduce. A no-op in a one-process run."""
    tensors, n = list(tensors), world()
    if n == 1 or not tensors:
        return
    flat = _flat(tensors, _float_dtype(tensors))
    dist.all_reduce(flat)
    _unflat(flat.div_(n), tensors)


def average_grads(params: list[torch.Tensor], extra: list[float] | None = None) -> list[float]:
    """Average the gradients of params over the processes: one all-reduce, which also sums the
    values of extra (returned). A gradient missing on every process stays None; one missing on
    some counts as zeros there (as in the one-process mean over the global batch)."""
    extra = list(extra or [])
    if not params:
        return extra
    dtype, n_ranks = _float_dtype(params), world()
    grads = [p.grad if p.grad is not None else p.new_zeros(p.shape) for p in params]
    for g in grads:
        if g.is_sparse:
            raise ValueError("multi-process training does not average sparse gradients")
    has = torch.tensor([p.grad is not None for p in params] + extra, dtype=dtype, device=grads[0].device)
    flat = torch.cat([_flat(grads, dtype), has])
    dist.all_reduce(flat)
    n = flat.numel() - len(has)
    tail = flat[n:].tolist()
    flat = flat[:n].div_(n_ranks)
    i = 0
    for p, used in zip(params, tail[:len(params)]):
        if used:
            if p.grad is None:
                p.grad = torch.empty_like(p)
            p.grad.copy_(flat[i:i + p.numel()].view(p.shape))
        i += p.numel()
    return tail[len(params):]


def averaging_hook(params: list[torch.Tensor]) -> Any:
    """An optimiser step pre-hook that averages params' gradients over the processes."""
    def hook(*_: Any) -> None:
        average_grads(params)
    return hook


def same_weights(model: torch.nn.Module) -> bool:
    """Whether every process holds rank 0's parameters (compared by a checksum); if not, they
    are made so."""
    params = list(model.parameters())
    if not params:
        return True
    s = torch.stack([torch.stack([p.detach().double().sum(), p.detach().double().square().sum()]) for p in params])
    got = [torch.empty_like(s) for _ in range(world())]
    dist.all_gather(got, s)
    if all(torch.equal(g, got[0]) for g in got):
        return True
    broadcast_from_rank0(params)
    return False
