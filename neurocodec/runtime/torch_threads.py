"""Running torch ops on one intra-op thread, which decoding needs: float32 convolutions are
not thread-count invariant (oneDNN blocks its reductions by thread count), so a decoder that
must give the same bits everywhere runs on one thread. Training's helpers (run folders,
checkpoints, device choice) live in neurocodec.tools.checkpoints."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

_ONE_THREAD = threading.Lock()  # guards the two below, never held while torch runs
_one_thread_users = 0  # sections now open, in any thread
_saved_threads = 1  # the count before the first of them


@contextmanager
def one_intra_op_thread():
    """Run this thread's torch ops on one intra-op thread for the block.

    The thread count is process-wide (and, with OpenMP, also each thread's own), so sections
    may overlap in several threads: the first to open saves the count, each sets 1 in its
    own thread, each leaving thread restores its own, and the last also the saved count. The
    lock guards only that bookkeeping: a section never waits for another. Open it around
    computation, not across a `yield`: a suspended generator would keep the count at 1."""
    global _one_thread_users, _saved_threads
    with _ONE_THREAD:
        mine = torch.get_num_threads()  # also this thread's first (lazy) init, which would
        # otherwise later reset its count from the process-wide one
        if _one_thread_users == 0:
            _saved_threads = mine
        _one_thread_users += 1
        torch.set_num_threads(1)
    try:
        yield
    finally:
        with _ONE_THREAD:
            _one_thread_users -= 1
            torch.set_num_threads(mine if _one_thread_users else _saved_threads)
