"""The training loop the codec families share. A family describes its side as a TrainTask
(model, optimisers, batches, loss, learning-rate schedule, validation, optional extra work per
step); fit() runs the loop: progress from the step count or the time budget, the schedule,
clipped optimiser steps, an EMA of the loss, a tqdm bar and a log line every 50 steps,
validation every val_every steps, atomic checkpoints every ckpt_every_min minutes and at the
end, and resume from them (random states included, so that a resumed run draws the batches
an uninterrupted one would have).

A checkpoint is a dict that torch.load(weights_only=True) reads: "config" {"train": the train
config dataclass as a dict, "model": the model config dict}, "model" (state dict), one entry
per optimiser (its key in TrainTask.optimizers), "step", "elapsed" (seconds), and "rng" and
"ema" (absent from checkpoints of older versions: resuming those reseeds with seed + step)."""
from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from neurocodec.tools.checkpoints import restore, save_checkpoint, start_run

log = logging.getLogger("neurocodec.train")

LOG_EVERY = 50  # steps between log lines


class TrainTask(ABC):
    """One codec family's side of training; fit() owns the loop."""

    cfg: Any  # the family's train config dataclass: steps, time_budget_min, clip, val_every, ckpt_every_min, model, ...
    model: torch.nn.Module
    # Checkpoint key -> optimiser. "opt" is the main one: it follows lr_at() and its parameters
    # are clipped to cfg.clip; any other is the task's own business (see after_step).
    optimizers: dict[str, torch.optim.Optimizer]
    rng: np.random.Generator  # the batch sampler's (checkpointed with torch's)
    desc: str = "train"  # progress bar label
    shown: tuple[str, ...] = ()  # stats of loss() shown in the progress bar

    @abstractmethod
    def batch(self) -> Any:
        """The next training batch, on the run's device."""

    @abstractmethod
    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar loss to minimise, detached stats to log: each logged as its mean)."""

    @abstractmethod
    def lr_at(self, frac: float) -> float:
        """The main optimiser's learning rate at this fraction of the run (0..1)."""

    @abstractmethod
    def validate(self) -> dict:
        """Held-out metrics (JSON-able); runs in eval mode under torch.no_grad()."""

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
    seed: int  # cfg.seed + the step resumed at: torch is seeded with it, the task's sampler should be


def open_run(cfg: Any, resume: bool = True) -> Run:
    """Create cfg.out and its train.log, set the thread count, pick the device, load the
    checkpoint to resume (or cfg.init's) and seed torch. A loaded checkpoint's model config
    replaces cfg.model: the weights must fit the model built."""
    device, ckpt_path, state, init_state = start_run(cfg.out, cfg.threads, cfg.device, resume, cfg.init)
    if state or init_state:
        cfg.model = dict((state or init_state)["config"]["model"])
    seed = cfg.seed + (state["step"] if state else 0)
    torch.manual_seed(seed)
    return Run(device, ckpt_path, state, init_state, seed)


def progress(cfg: Any, step: int, elapsed: float) -> float:
    """Fraction of the run done: by steps, or by time when a budget is set (whichever is ahead)."""
    by_time = elapsed / (cfg.time_budget_min * 60) if cfg.time_budget_min else 0.0
    return max(step / cfg.steps, by_time)


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


def _validate(task: TrainTask) -> dict:
    task.model.eval()
    with torch.no_grad():
        res = task.validate()
    task.model.train()
    return res


def _mean(v: Any) -> float:
    return float(v.float().mean()) if isinstance(v, torch.Tensor) else float(v)


def fit(task: TrainTask, run: Run) -> Path:
    """Train until cfg.steps or the time budget, checkpointing to run.ckpt_path; returns it."""
    cfg, model, opt = task.cfg, task.model, task.optimizers["opt"]
    step, elapsed = restore(model, task.optimizers, run.state, run.init_state)
    ema = None  # of the loss
    if run.state and "rng" in run.state:
        _set_rng_state(task, run.device, run.state["rng"])
        ema = run.state.get("ema")
    log.info("config %s", json.dumps(asdict(cfg)))
    log.info("device %s, threads %d, %s", run.device, torch.get_num_threads(), task.describe())
    params = [p for g in opt.param_groups for p in g["params"]]

    def save() -> None:
        save_checkpoint(run.ckpt_path, {
            "config": task.snapshot_config(), "model": model.state_dict(),
            **{key: o.state_dict() for key, o in task.optimizers.items()},
            "step": step, "elapsed": elapsed, "ema": ema, "rng": _rng_state(task, run.device)})

    t0, last_ckpt = time.time() - elapsed, time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc=task.desc, dynamic_ncols=True)
    model.train()
    while step < cfg.steps:
        elapsed = time.time() - t0
        frac = progress(cfg, step, elapsed)
        if frac >= 1.0:
            break
        lr = task.lr_at(frac)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, stats = task.loss(task.batch())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        step += 1
        stats = {**stats, **task.after_step(step)}
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.3f}", **{k: f"{_mean(stats[k]):.3f}" for k in task.shown}, lr=f"{lr:.0e}")
        if step % LOG_EVERY == 0:
            log.info("step %d loss %.4f ema %.4f %s lr %.1e", step, loss.item(), ema,
                     " ".join(f"{k} {_mean(v):.5g}" for k, v in stats.items()), lr)
        if step % cfg.val_every == 0:
            log.info("val step %d %s", step, json.dumps(_validate(task)))
        if time.time() - last_ckpt > cfg.ckpt_every_min * 60:
            elapsed = time.time() - t0
            save()
            last_ckpt = time.time()
    bar.close()
    elapsed = time.time() - t0
    save()
    log.info("done: step %d, %.1f min; val %s", step, elapsed / 60, json.dumps(_validate(task)))
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
