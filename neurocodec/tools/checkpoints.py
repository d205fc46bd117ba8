"""Training's run folders and checkpoints: the run folder and its train.log, device choice,
safe loading (weights_only) and atomic saving of checkpoints, and restoring a model and its
optimisers from one."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def start_run(out: str | Path, threads: int, device: str, resume: bool, init: str, primary: bool = True) -> tuple:
    """Create the run folder and its train.log, set the thread count, pick the device and
    load the state to continue from: (device, checkpoint path, resumed state or None,
    initial weights' state or None). Resuming wins over init. Not primary (a multi-process
    run's other ranks): the thread count and the device only; the log goes to stderr,
    warnings only, and nothing is read or written."""
    out = Path(out)
    if threads:
        torch.set_num_threads(threads)
    ckpt_path, state, init_state = out / "checkpoint.pt", None, None
    if not primary:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", force=True)
        return pick_device(device), ckpt_path, None, None
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=out / "train.log", level=logging.INFO,
                        format="%(asctime)s %(message)s", force=True)
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
    elif init:
        init_state = load_checkpoint(init)
    return pick_device(device), ckpt_path, state, init_state


def load_checkpoint(path: str | Path) -> dict:
    """A training checkpoint (torch.load with weights_only=True: nothing is unpickled beyond
    tensors and plain containers). Anything else, a pickle that would run code included, is a
    one-line ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, zip errors...
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path}: not a neurocodec training checkpoint (refused by torch.load with "
                         f"weights_only=True: {reason[:200]})") from None
    ok = isinstance(state, dict) and isinstance(state.get("config"), dict) and \
        isinstance(state["config"].get("model"), dict) and isinstance(state.get("model"), dict)
    if not ok:
        raise ValueError(f"{path}: not a neurocodec training checkpoint (no config/model entries)")
    return state


def restore(model: torch.nn.Module, optimizers: dict, state: dict | None, init_state: dict | None,
            aux_modules: dict | None = None) -> tuple:
    """Load start_run()'s states: init weights, or the resumed model, optimizers and other
    trained modules (by their key in the checkpoint). Returns (step, elapsed seconds) to continue from."""
    if init_state:
        model.load_state_dict(init_state["model"])
    if not state:
        return 0, 0.0
    model.load_state_dict(state["model"])
    for key, m in (aux_modules or {}).items():
        if f"module:{key}" in state:  # absent: a run that starts its adversarial stage now
            m.load_state_dict(state[f"module:{key}"])
    for key, opt in optimizers.items():
        if key in state or key == "opt":  # an optional one may start later (the discriminators')
            opt.load_state_dict(state[key])
    logging.getLogger("neurocodec.train").info("resumed at step %d (%.1f min)", state["step"], state["elapsed"] / 60)
    return state["step"], state["elapsed"]


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary sibling, then rename: a crash never leaves half a checkpoint
    (and a failed save leaves the previous one, and no temporary file)."""
    tmp = Path(path).with_suffix(".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
