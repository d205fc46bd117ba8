"""Real checkpoints from ../shared/data/weights (skipped when that folder is absent): every
file round-trips byte-exact at the default level (torch .pt files too, their storages coded as
tensors), and so does the checkpoint-series folder as a whole."""
from __future__ import annotations

from collections import OrderedDict

import pytest
from common import SHARED_DATA, sha256_file, tree_hashes

import weightzip

WEIGHTS = SHARED_DATA / "weights"
SERIES = WEIGHTS / "lora_roberta-base_agnews_series"
ABSENT = pytest.mark.skip(reason=f"shared data not found at {WEIGHTS}")

pytestmark = [pytest.mark.data, pytest.mark.skipif(not WEIGHTS.is_dir(), reason=f"no {WEIGHTS}")]

FILES = sorted(p for p in WEIGHTS.rglob("*") if p.is_file()) if WEIGHTS.is_dir() else []


def _params(paths):
    if not paths:
        return [pytest.param(None, marks=ABSENT, id="absent")]
    return [pytest.param(p, id=p.relative_to(WEIGHTS).as_posix()) for p in paths]


def _flatten(obj, name=""):
    import torch
    if isinstance(obj, torch.Tensor):
        return {name: obj}
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{name}.{k}" if name else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{name}.{i}"))
    return out


@pytest.mark.parametrize("src", _params([p for p in FILES if p.suffix != ".pt"]))
def test_file_roundtrip_byte_exact(tmp_path, src):
    before = sha256_file(src)
    wz = weightzip.pack(src, tmp_path / (src.name + ".wz"), level="default")
    out = weightzip.unpack(wz, tmp_path / src.name)
    assert sha256_file(out) == before == sha256_file(src)
    assert weightzip.verify(wz, src).startswith("OK")
    if src.suffix == ".safetensors":
        inf = weightzip.info(wz)
        assert inf["source"] == "safetensors" and any(e["kind"] == "tensor" for e in inf["entries"])
        assert wz.stat().st_size < 0.97 * src.stat().st_size, "real weights should compress"


@pytest.mark.parametrize("src", _params([p for p in FILES if p.suffix == ".pt"]))
def test_torch_checkpoint_byte_exact(tmp_path, src):
    import torch
    before = sha256_file(src)
    wz = weightzip.pack(src, tmp_path / (src.name + ".wz"), level="default")
    out = weightzip.unpack(wz, tmp_path / src.name)
    assert sha256_file(out) == before == sha256_file(src)
    assert weightzip.info(wz)["source"] == "torch-zip"
    ref = torch.load(src, map_location="cpu", weights_only=True)
    got = torch.load(out, map_location="cpu", weights_only=True)
    assert type(got) is type(ref) or (isinstance(ref, OrderedDict) and isinstance(got, OrderedDict))
    a, b = _flatten(ref), _flatten(got)
    assert list(a) == list(b) and len(a) > 0
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        bits = [t.contiguous().reshape(-1).view(torch.uint8) for t in (a[k], b[k])]
        assert torch.equal(*bits), k
    assert weightzip.verify(wz, src).startswith("OK")
    assert wz.stat().st_size < src.stat().st_size


@pytest.mark.parametrize("src", _params([SERIES] if SERIES.is_dir() else []))
def test_checkpoint_series_folder(tmp_path, src):
    before = tree_hashes(src)
    wz = weightzip.pack(src, tmp_path / "series.wz", level="default")
    out = weightzip.unpack(wz, tmp_path / "series")
    assert tree_hashes(out) == before == tree_hashes(src)
    assert weightzip.verify(wz, src).startswith("OK")
    inf = weightzip.info(wz)
    assert inf["source"] == "folder" and sorted(inf["files"]) == sorted(before)
    with weightzip.open(wz) as f:  # the shards were split into tensors, not stored opaque
        assert len(f.keys()) > 0
