"""The training loop the codec families share. A family describes its side as a TrainTask
(model, optimisers, batches, loss, learning-rate schedule, validation, optional extra work per
step); fit() runs the loop: progress from the step count or the time budget, the schedule,
clipped optimiser steps, an EMA of the loss, a tqdm bar and a log line every 50 steps,
validation every val_every steps, atomic checkpoints every ckpt_every_min minutes and at the
end, and resume from them (random states included, so that a resumed run draws the batches
an uninterrupted one would have). limit_steps(n) around a run stops it after n more steps.

Data-parallel training: under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the
environment) open_run joins the process group (parallel.py: gloo on CPU, NCCL on
cuda:LOCAL_RANK) and fit trains one model on all processes. cfg.batch is the global batch:
while task.batch() runs it reads as this process's share, and each process's random states
are seeded from (seed, rank) (rank 0 keeps a one-process run's seed). After each backward
pass one all-reduce averages the main optimiser's gradients and carries the mean loss and
rank 0's clock (the schedule, the time-budget stop and the checkpoint times are rank 0's
everywhere); the other optimisers average theirs before each step. No DistributedDataParallel:
tasks keep their model (auxiliary optimisers, dead-code restarts). Rank 0 alone reads and
writes checkpoints (the others get the loaded state, and wait at a barrier while it writes),
writes train.log and the bar, and validates. A task that changes weights outside its
optimisers syncs them (parallel.broadcast_from_rank0, average_across_ranks); the weights are
compared at every checkpoint. Model buffers are per process (the checkpoint holds rank 0's).
A checkpoint resumes under any number of processes (random states kept when it is the same).

A checkpoint is a dict that torch.load(weights_only=True) reads: "config" {"train": the train
config dataclass as a dict, "model": the model config dict}, "model" (state dict), one entry
per optimiser (its key in TrainTask.optimizers), "step", "elapsed" (seconds), "world" (the
number of processes), "rng" (rank 0's random states) and "ema" (both absent from checkpoints
of older versions: resuming those reseeds with seed + step), and "rng_ranks" (every
process's random states, in multi-process runs)."""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from neurocodec.tools import parallel
from neurocodec.tools.checkpoints import restore, save_checkpoint, start_run

log = logging.getLogger("neurocodec.train")

LOG_EVERY = 50  # steps between log lines
_MAX_STEPS: contextvars.ContextVar[int] = contextvars.ContextVar("max_steps", default=0)


class TrainTask(ABC):
    """One codec family's side of training; fit() owns the loop."""

    cfg: Any  # the family's train config dataclass: steps, time_budget_min, clip, val_every, ckpt_every_min, model, ...
    model: torch.nn.Module
    # Checkpoint key -> optimiser. "opt" is the main one: it follows lr_at() and its parameters
    # are clipped to cfg.clip; any other is the task's own business (see after_step).
    optimizers: dict[str, torch.optim.Optimizer]
    # Other trained modules that are not part of the exported model (a GAN's discriminators):
    # saved in the checkpoint as "module:<key>" and restored with it.
    aux_modules: dict[str, torch.nn.Module] = {}
    step: int = 0  # optimiser steps done, kept current by fit() (resumed runs included)
    rng: np.random.Generator  # the batch sampler's (checkpointed with torch's)
    desc: str = "train"  # progress bar label
    shown: tuple[str, ...] = ()  # stats of loss() shown in the progress bar

    @abstractmethod
    def batch(self) -> Any:
        """The next training batch, on the run's device: cfg.batch examples (in a
        multi-process run, cfg.batch reads as this process's share while batch() runs)."""

    @abstractmethod
    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar loss to minimise: a mean over the batch, detached stats to log: each logged as its mean)."""

    @abstractmethod
    def lr_at(self, frac: float) -> float:
        """The main optimiser's learning rate at this fraction of the run (0..1)."""

    @abstractmethod
    def validate(self) -> dict:
        """Held-out metrics (JSON-able); runs in eval mode under torch.no_grad(), on rank 0 only."""

    def after_step(self, step: int) -> dict[str, Any]:
        """Extra work after optimiser step number `step` (1-based); returns more stats to log."""
        return {}

    def snapshot_config(self) -> dict:
        """The checkpoint's "config": plain dicts only (torch.load with weights_only=True)."""
        return {"train": asdict(self.cfg), "model": self.cfg.model}

    def describe(self) -> str:
        """A line about the data, for the log."""
        return ""


@dataclass
class Run:
    """A run folder opened for training (open_run)."""
    device: torch.device
    ckpt_path: Path
    state: dict | None  # the checkpoint resumed from
    init_state: dict | None  # the checkpoint whose weights start a new run (cfg.init)
    seed: int  # cfg.seed + the step resumed at (per rank): torch is seeded with it, the task's sampler should be
    rank: int = 0  # this process's rank in a multi-process run
    world: int = 1  # the number of processes
    distributed: bool = False  # in a process group (torchrun), even of one process
    max_steps: int = 0  # stop after this many more steps (0: no limit; see limit_steps)


@contextlib.contextmanager
def limit_steps(n: int | None) -> Iterator[None]:
    """Runs opened inside stop after n more steps (and checkpoint); None or 0: no limit."""
    token = _MAX_STEPS.set(int(n or 0))
    try:
        yield
    finally:
        _MAX_STEPS.reset(token)


def open_run(cfg: Any, resume: bool = True) -> Run:
    """Create cfg.out and its train.log, set the thread count, pick the device, load the
    checkpoint to resume (or cfg.init's) and seed torch. A loaded checkpoint's model config
    replaces cfg.model: the weights must fit the model built. Under torchrun (or in a process
    group already started; even of one process) this joins the group: rank 0 alone touches
    cfg.out and the checkpoints, and sends the other processes what it loaded."""
    if not (parallel.in_torchrun() or (dist.is_available() and dist.is_initialized())):
        device, ckpt_path, state, init_state = start_run(cfg.out, cfg.threads, cfg.device, resume, cfg.init)
        return _seeded(cfg, Run(device, ckpt_path, state, init_state, 0), 0)
    device = parallel.join_group(cfg.device)
    rank, world = dist.get_rank(), dist.get_world_size()
    if world > 1 and isinstance(getattr(cfg, "batch", None), int) and cfg.batch % world:
        raise ValueError(f"--batch {cfg.batch} (the global batch) does not split evenly over {world} processes")
    _, ckpt_path, state, init_state = start_run(cfg.out, cfg.threads, str(device), resume, cfg.init,
                                                primary=rank == 0)
    states = [state, init_state]
    dist.broadcast_object_list(states, src=0)
    return _seeded(cfg, Run(device, ckpt_path, states[0], states[1], 0, rank, world, True), rank)


def _seeded(cfg: Any, run: Run, rank: int) -> Run:
    if run.state or run.init_state:
        cfg.model = dict((run.state or run.init_state)["config"]["model"])
    run.seed = parallel.rank_seed(cfg.seed + (run.state["step"] if run.state else 0), rank)
    run.max_steps = _MAX_STEPS.get()
    torch.manual_seed(run.seed)
    return run


def progress(cfg: Any, step: int, elapsed: float) -> float:
    """Fraction of the run done: by steps, or by time when a budget is set (whichever is ahead)."""
    by_time = elapsed / (cfg.time_budget_min * 60) if cfg.time_budget_min else 0.0
    return max(step / cfg.steps, by_time)


def _draw(task: TrainTask, run: Run) -> Any:
    """task.batch(), with cfg.batch this process's share of the global batch."""
    full = getattr(task.cfg, "batch", None)
    if not run.distributed or not isinstance(full, int):
        return task.batch()
    task.cfg.batch = full // run.world
    try:
        return task.batch()
    finally:
        task.cfg.batch = full


# ---- the loop -----------------------------------------------------------------------------------

def _rng_state(task: TrainTask, device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": task.rng.bit_generator.state}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(task: TrainTask, device: torch.device, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    task.rng.bit_generator.state = state["numpy"]
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _saved_rng(run: Run) -> dict | None:
    """This process's random states in the checkpoint resumed from: rank 0's for one process,
    each rank's own when the number of processes is the one saved (else None: reseeded)."""
    assert run.state is not None
    if run.world == 1:
        return run.state.get("rng")
    ranks = run.state.get("rng_ranks") or []
    return ranks[run.rank] if len(ranks) == run.world else None


def _validate(task: TrainTask) -> dict:
    task.model.eval()
    with torch.no_grad():
        res = task.validate()
    task.model.train()
    return res


def _mean(v: Any) -> float:
    return float(v.float().mean()) if isinstance(v, torch.Tensor) else float(v)


def fit(task: TrainTask, run: Run) -> Path:
    """Train until cfg.steps, the time budget or run.max_steps more steps, checkpointing to
    run.ckpt_path; returns it."""
    cfg, model, opt = task.cfg, task.model, task.optimizers["opt"]
    step, elapsed = restore(model, task.optimizers, run.state, run.init_state, task.aux_modules)
    task.step = step
    ema = None  # of the loss
    if run.state:
        rng = _saved_rng(run)
        if rng is not None:
            _set_rng_state(task, run.device, rng)
            ema = run.state.get("ema")
        elif run.distributed:
            log.info("random states reseeded: the checkpoint is of %d processes", run.state.get("world", 1))
    log.info("config %s", json.dumps(asdict(cfg)))
    log.info("device %s, threads %d, %s", run.device, torch.get_num_threads(), task.describe())
    params = [p for g in opt.param_groups for p in g["params"]]
    hooks = []
    if run.distributed:
        log.info("%d processes (%s), global batch %s", run.world, dist.get_backend(), getattr(cfg, "batch", "?"))
        parallel.broadcast_from_rank0([*model.parameters(), *model.buffers()])  # fresh weights: seeded per rank
        for key, o in task.optimizers.items():
            if key != "opt":
                aux = [p for g in o.param_groups for p in g["params"]]
                hooks.append(o.register_step_pre_hook(parallel.averaging_hook(aux)))

    def save() -> None:
        rngs: list = [None] * run.world
        if run.distributed:
            dist.all_gather_object(rngs, _rng_state(task, run.device))
            if not parallel.same_weights(model):
                log.warning("step %d: the processes' weights differed (a task changed parameters outside its "
                            "optimisers without broadcast_from_rank0); rank 0's were restored everywhere", step)
        if run.rank == 0:
            extra = {"rng_ranks": rngs} if run.distributed else {}
            save_checkpoint(run.ckpt_path, {
                "config": task.snapshot_config(), "model": model.state_dict(),
                **{key: o.state_dict() for key, o in task.optimizers.items()},
                **{f"module:{key}": m.state_dict() for key, m in task.aux_modules.items()},
                "step": step, "elapsed": elapsed, "world": run.world, "ema": ema,
                "rng": _rng_state(task, run.device), **extra})
        if run.distributed:
            dist.barrier()

    t0, last_ckpt = time.time() - elapsed, time.time()
    end = min(cfg.steps, step + run.max_steps) if run.max_steps else cfg.steps
    agreed, due = elapsed, False  # multi-process: rank 0's clock and checkpoint time, as of the last step
    bar = tqdm(total=cfg.steps, initial=step, desc=task.desc, dynamic_ncols=True, disable=run.rank != 0)
    model.train()
    try:
        while step < end:
            elapsed = agreed if run.distributed else time.time() - t0
            frac = progress(cfg, step, elapsed)
            if frac >= 1.0:
                break
            lr = task.lr_at(frac)
            for g in opt.param_groups:
                g["lr"] = lr
            loss, stats = task.loss(_draw(task, run))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if run.distributed:
                clock = [time.time() - t0, float(time.time() - last_ckpt > cfg.ckpt_every_min * 60)]
                clock = clock if run.rank == 0 else [0.0, 0.0]  # summed over the ranks: rank 0's
                total, agreed, due = parallel.average_grads(params, [loss.item(), *clock])
                loss_value = total / run.world
            else:
                loss_value = loss.item()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            step += 1
            task.step = step
            stats = {**stats, **task.after_step(step)}
            ema = loss_value if ema is None else 0.98 * ema + 0.02 * loss_value
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", **{k: f"{_mean(stats[k]):.3f}" for k in task.shown}, lr=f"{lr:.0e}")
            if step % LOG_EVERY == 0:
                log.info("step %d loss %.4f ema %.4f %s lr %.1e", step, loss_value, ema,
                         " ".join(f"{k} {_mean(v):.5g}" for k, v in stats.items()), lr)
            if step % cfg.val_every == 0 and run.rank == 0:
                log.info("val step %d %s", step, json.dumps(_validate(task)))
            if due if run.distributed else time.time() - last_ckpt > cfg.ckpt_every_min * 60:
                elapsed = time.time() - t0
                save()
                last_ckpt = time.time()
        bar.close()
        elapsed = time.time() - t0
        save()
    finally:
        for h in hooks:
            h.remove()
    if run.rank == 0:
        log.info("done: step %d, %.1f min; val %s", step, elapsed / 60, json.dumps(_validate(task)))
    if run.distributed:
        dist.barrier()  # the others wait for rank 0's validation
    return run.ckpt_path


# ---- configs from CLI-style options -------------------------------------------------------------

def _coerce(key: str, value: Any, default: Any) -> Any:
    """value in the type of the field's default; a comma-separated string fills a list field."""
    try:
        if isinstance(default, (list, tuple)):
            items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
            kind = type(default[0]) if default else float
            return type(default)(kind(v) for v in items)
        if isinstance(default, int) and not isinstance(default, bool):
            if float(value) != int(float(value)):
                raise ValueError("not a whole number")
            return int(float(value))
        if isinstance(default, (float, str)):
            return type(default)(value)
        return value
    except (TypeError, ValueError) as e:
        raise ValueError(f"--{key.replace('_', '-')}: bad value {value!r} ({e})") from None


def split_options(kind: str, train_cls: type, model_cls: type, model: dict, opts: dict) -> tuple[dict, dict]:
    """CLI-style overrides -> (train config fields, the model config dict `model` updated).
    Keys are field names of train_cls or model_cls; None values keep the default; any other
    key is a ValueError naming the option and the family."""
    train_defaults, model_defaults = asdict(train_cls()), asdict(model_cls())
    train_keys = set(train_defaults) - {"data", "model"}
    model_keys = set(model_defaults) - {"arch"}
    train, model = {}, dict(model)
    for key, value in opts.items():
        if value is None:
            continue
        if key in train_keys:
            train[key] = _coerce(key, value, train_defaults[key])
        elif key in model_keys:
            model[key] = _coerce(key, value, model_defaults[key])
        else:
            raise ValueError(f"--{key.replace('_', '-')} is not an option of {kind} training (options: "
                             f"{', '.join(sorted(train_keys | model_keys))})")
    return train, model
