"""torch checkpoints (.pt/.pth/.bin) and numpy files (.npy/.npz), generated in tmp_path:
torch checkpoints (zip and legacy) come back byte-exact (sha256), so torch loads the same
objects, views and shared storages included (more in test_torch_pt.py); .npy and np.savez
files byte-exact, np.savez_compressed files tensor-exact."""
from __future__ import annotations

from collections import OrderedDict

import ml_dtypes
import numpy as np
import pytest
from common import sha256_file
from wz_helpers import roundtrip, torch_tensors

import weightzip

# ------------------------------------------------------------------ torch checkpoints

def make_state_dict():
    import torch
    sd = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4)).state_dict()
    sd.update(torch_tensors())
    return {"state_dict": sd, "epoch": 3, "name": "run-1", "lr": 0.5, "flags": [True, None],
            "shape": (2, 3), "nested": {"step": 10, 5: "int key", "t": torch.ones(2, dtype=torch.int32)}}


def assert_same_tree(a, b):
    import torch
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_tree(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_checkpoint(tmp_path, legacy):
    import torch
    obj = make_state_dict()
    if legacy:  # torch itself cannot weights_only-load fp8 from the legacy format
        del obj["state_dict"]["layer.0.f8"]
    src = tmp_path / "ckpt.pt"
    torch.save(obj, src, _use_new_zipfile_serialization=not legacy)
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    assert weightzip.info(wz)["source"] == ("torch-legacy" if legacy else "torch-zip")
    names = {e["name"] for e in weightzip.info(wz)["entries"] if e["kind"] == "tensor"}
    assert {"state_dict.0.weight", "state_dict.embed.weight", "nested.t"} <= names  # coded, named
    back = torch.load(out, weights_only=True)
    assert_same_tree(back, obj)
    assert isinstance(back["state_dict"], OrderedDict)
    assert getattr(back["state_dict"], "_metadata", None) == getattr(obj["state_dict"], "_metadata", None)


def test_torch_views_and_bin_suffix(tmp_path):
    import torch
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = OrderedDict(full=base, col=base[:, 1], t=base.t(), offset=base[2:])
    src = tmp_path / "pytorch_model.bin"
    torch.save(sd, src)
    _, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    back = torch.load(out, weights_only=True)
    assert_same_tree(back, sd)
    assert back["col"].stride() == (6,)  # views and storage sharing survive
    assert back["t"].untyped_storage().data_ptr() == back["full"].untyped_storage().data_ptr()


def test_torch_checkpoint_with_empty_tensor(tmp_path):
    import torch
    sd = OrderedDict(w=torch.zeros(0, 4), b=torch.ones(3))
    src = tmp_path / "e.pt"
    torch.save(sd, src)
    _, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    assert_same_tree(torch.load(out, weights_only=True), sd)


# ------------------------------------------------------------------ numpy

@pytest.mark.parametrize("kind", ["c", "fortran", "bigendian", "scalar", "bf16", "empty", "bool3d"])
def test_npy_byte_exact(tmp_path, kind):
    rng = np.random.default_rng(1)
    a = {"c": rng.standard_normal((20, 30)).astype(np.float32),
         "fortran": np.asfortranarray(rng.standard_normal((20, 30, 2))),
         "bigendian": rng.standard_normal((9, 11)).astype(">f4"),
         "scalar": np.float16(3.5).reshape(()),
         "bf16": rng.standard_normal(100).astype(ml_dtypes.bfloat16),
         "empty": np.zeros((0, 5), np.int64),
         "bool3d": rng.random((3, 4, 5)) > 0.5}[kind]
    src = tmp_path / f"{kind}.npy"
    np.save(src, a)
    wz, out = roundtrip(src, tmp_path)
    assert out.read_bytes() == src.read_bytes()
    if kind in ("c", "fortran", "scalar", "empty", "bool3d"):
        got = weightzip.load(wz)[kind]  # stored as a real tensor, in the right order
        assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a)


def npz_arrays():
    rng = np.random.default_rng(2)
    return {"w": rng.standard_normal((30, 20)).astype(np.float32),
            "f": np.asfortranarray(rng.standard_normal((5, 7))),
            "i": np.arange(100, dtype=np.int64), "s": np.array(7, np.uint8),
            "h": rng.standard_normal(33).astype(np.float16)}


def test_npz_savez_byte_exact(tmp_path):
    src = tmp_path / "a.npz"
    np.savez(src, **npz_arrays(), be=np.arange(5, dtype=">i4"), c=np.ones(2, np.complex64))
    wz, out = roundtrip(src, tmp_path)
    assert out.read_bytes() == src.read_bytes()
    loaded = weightzip.load(wz)  # members are real tensors (Fortran order honoured)
    for k, a in npz_arrays().items():
        assert loaded[k].dtype == a.dtype and loaded[k].shape == a.shape and np.array_equal(loaded[k], a)


def test_npz_savez_compressed_tensor_exact(tmp_path):
    src = tmp_path / "c.npz"
    arrays = npz_arrays()
    del arrays["s"]  # 0-d arrays: see test_npz_savez_compressed_scalar
    np.savez_compressed(src, **arrays)
    _, out = roundtrip(src, tmp_path)
    with np.load(out) as z:
        assert sorted(z.files) == sorted(arrays)
        for k, a in arrays.items():
            assert z[k].dtype == a.dtype and z[k].shape == a.shape
            assert z[k].tobytes() == a.tobytes()


def test_npz_savez_compressed_scalar(tmp_path):
    src = tmp_path / "s.npz"
    np.savez_compressed(src, s=np.array(7, np.uint8), f=np.float32(2.5))
    _, out = roundtrip(src, tmp_path)
    with np.load(out) as z:
        assert z["s"].shape == () and z["f"].shape == ()


def test_npz_savez_compressed_bigendian(tmp_path):
    src = tmp_path / "be.npz"
    np.savez_compressed(src, a=np.arange(6, dtype=">f4"), b=np.arange(3, dtype=np.int32))
    _, out = roundtrip(src, tmp_path)
    with np.load(out) as z:
        assert z["a"].tobytes() == np.arange(6, dtype=">f4").tobytes()
