"""Torch helpers the codecs share: device choice, atomic checkpoints, and running ops on one
intra-op thread (float32 convolutions are not thread-count invariant: oneDNN blocks its
reductions by thread count, so a decoder that must give the same bits everywhere runs on one
thread)."""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import torch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary sibling, then rename: a crash never leaves half a checkpoint."""
    tmp = Path(path).with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


_ONE_THREAD = threading.Lock()


@contextmanager
def one_intra_op_thread():
    """Run torch ops on one thread (process-wide setting, hence the lock)."""
    with _ONE_THREAD:
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(n)
