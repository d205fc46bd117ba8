"""Fixtures of the weightzip tests."""
from __future__ import annotations

import numpy as np
import pytest

import weightzip


@pytest.fixture(scope="session")
def small_st_wz(tmp_path_factory):
    """(safetensors bytes, .wz bytes, tensors) of a small multi-dtype safetensors file."""
    from safetensors.numpy import save_file
    d = tmp_path_factory.mktemp("small_st")
    rng = np.random.default_rng(7)
    tensors = {
        "emb.weight": rng.standard_normal((64, 48)).astype(np.float32),
        "ln.bias": rng.standard_normal(33).astype(np.float16),
        "steps": np.arange(5, dtype=np.int64),
        "mask": rng.integers(0, 2, 17).astype(bool),
    }
    src = d / "m.safetensors"
    save_file(tensors, str(src), metadata={"format": "np"})
    out = weightzip.pack(src, d / "m.safetensors.wz", level="default")
    return src.read_bytes(), out.read_bytes(), tensors
