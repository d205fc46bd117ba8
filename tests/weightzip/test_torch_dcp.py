"""weightzip.torch_dcp: a torch.distributed.checkpoint storage layer, one compressed .wz per rank.

The 2-process scenarios (DDP + Adam, a Shard(0) DTensor, a delta save against the previous
checkpoint) run in one torch.multiprocessing.spawn over gloo (one startup for all three); the
children check equality themselves, and an exception in either propagates through spawn.
"""
from __future__ import annotations

import gc
import json
import pickle
import shutil
import warnings
from datetime import timedelta
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is unavailable", allow_module_level=True)
dcp = pytest.importorskip("torch.distributed.checkpoint")
CheckpointException = dcp.CheckpointException

from weightzip import api  # noqa: E402
from weightzip.torch_dcp import WzStorageReader, WzStorageWriter  # noqa: E402

WORLD = 2


def _flat(obj, prefix=""):
    """Nested dicts/lists -> {path: leaf}."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}/"))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flat(v, f"{prefix}{i}/"))
        return out
    return {prefix.rstrip("/"): obj}


def _assert_same(got, want, what):
    g, w = _flat(got), _flat(want)
    assert g.keys() == w.keys(), f"{what}: keys differ: {sorted(g.keys() ^ w.keys())}"
    for k, wv in w.items():
        gv = g[k]
        if torch.is_tensor(wv):
            if hasattr(wv, "full_tensor"):
                gv, wv = gv.full_tensor(), wv.full_tensor()
            assert gv.dtype == wv.dtype and gv.shape == wv.shape, f"{what}: {k}"
            assert torch.equal(gv.view(-1).view(torch.uint8), wv.reshape(-1).view(torch.uint8)), \
                f"{what}: {k} is not bit-identical"
        else:
            assert gv == wv, f"{what}: {k}: {gv!r} != {wv!r}"


def _model():
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Tanh(), torch.nn.Linear(256, 64))


def _train(model, opt, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 64, generator=g)
        loss = (model(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _fresh(ddp):
    """A new DDP model + Adam with the optimizer state materialised (a step on zero gradients)."""
    torch.manual_seed(1234)
    model = ddp(_model())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return model, opt


def _load_into(ddp, folder, **kw):
    model, opt = _fresh(ddp)
    sd = {"model": model.state_dict(), "optim": opt.state_dict()}
    dcp.load(sd, storage_reader=WzStorageReader(folder, **kw))
    model.load_state_dict(sd["model"])
    opt.load_state_dict(sd["optim"])
    return model, opt


def _worker(rank: int, tmp: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rdv", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    t = Path(tmp)
    out: dict = {}
    mesh = None
    try:
        # (a) DDP + Adam -> dcp.save -> dcp.load into fresh objects: bit-identical
        torch.manual_seed(0)
        model = DDP(_model())
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        _train(model, opt, 3, seed=100 + rank)
        dcp.save({"model": model.state_dict(), "optim": opt.state_dict()}, storage_writer=WzStorageWriter(t / "d1"))
        m2, o2 = _load_into(DDP, t / "d1")
        _assert_same(m2.state_dict(), model.state_dict(), "(a) model")
        _assert_same(o2.state_dict(), opt.state_dict(), "(a) optimizer")

        # (b) a truly sharded DTensor: each rank file holds only its shard
        mesh = init_device_mesh("cpu", (WORLD,))
        full = torch.randn(64, 48, generator=torch.Generator().manual_seed(7))
        dt = distribute_tensor(full, mesh, [Shard(0)])
        dcp.save({"w": dt}, storage_writer=WzStorageWriter(t / "db"))
        dist.barrier()
        with api.open(t / "db" / f"__{rank}_0.wz", framework="torch") as f:
            keys = f.keys()
            assert keys == [f"w@{32 * rank},0"], f"(b) rank {rank} file holds {keys}"
            assert torch.equal(f.get_tensor(keys[0]), full[32 * rank:32 * (rank + 1)]), "(b) shard bytes"
        target = distribute_tensor(torch.zeros(64, 48), mesh, [Shard(0)])
        dcp.load({"w": target}, storage_reader=WzStorageReader(t / "db"))
        assert torch.equal(target.full_tensor(), full), "(b) DTensor load"
        assert torch.equal(target.to_local(), full[32 * rank:32 * (rank + 1)]), "(b) local shard"

        # (c) more training, then a save against d1 (ref) and an independent one
        _train(model, opt, 2, seed=200 + rank)
        state = {"model": model.state_dict(), "optim": opt.state_dict()}
        dcp.save(state, storage_writer=WzStorageWriter(t / "d2", ref=t / "d1"))
        dcp.save(state, storage_writer=WzStorageWriter(t / "d3"))
        dist.barrier()
        name = f"__{rank}_0.wz"
        out["sizes"] = {"ref": (t / "d2" / name).stat().st_size, "indep": (t / "d3" / name).stat().st_size}
        for d in ("d2", "d3"):
            m3, o3 = _load_into(DDP, t / d)
            _assert_same(m3.state_dict(), model.state_dict(), f"(c) {d} model")
            _assert_same(o3.state_dict(), opt.state_dict(), f"(c) {d} optimizer")
        (t / f"result_{rank}.json").write_text(json.dumps(out))
        dist.barrier()
    finally:
        del mesh
        gc.collect()
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    if not dist.is_gloo_available():
        pytest.skip("the gloo backend of torch.distributed is unavailable")
    tmp = tmp_path_factory.mktemp("dcp")
    torch.multiprocessing.spawn(_worker, args=(str(tmp),), nprocs=WORLD, join=True)
    return tmp, [json.loads((tmp / f"result_{r}.json").read_text()) for r in range(WORLD)]


def test_ddp_adam_roundtrip(two_ranks):  # (a); equality is checked in the children
    tmp, _ = two_ranks
    md = pickle.loads((tmp / "d1" / ".metadata").read_bytes())
    assert any(k.startswith("model.") for k in md.state_dict_metadata)
    assert sorted(p.name for p in (tmp / "d1").iterdir()) == [".metadata", "__0_0.wz", "__1_0.wz"]


def test_dtensor_shards(two_ranks):  # (b)
    tmp, _ = two_ranks
    sizes = [(tmp / "db" / f"__{r}_0.wz").stat().st_size for r in range(WORLD)]
    assert all(s < 32 * 48 * 4 + 4096 for s in sizes), sizes  # each holds one shard, not the tensor


def test_delta_against_previous_checkpoint(two_ranks):  # (c)
    tmp, res = two_ranks
    ref = [r["sizes"]["ref"] for r in res]
    indep = [r["sizes"]["indep"] for r in res]
    print(f"rank files with ref={ref} independent={indep}")
    assert all(a <= b for a, b in zip(ref, indep)) and sum(ref) < sum(indep), (ref, indep)
    # both load in one process too (DCP reads both ranks' files); a copy moved away from d1
    # cannot find its references through d2/.metadata any more, ref= gives them
    far = tmp / "far" / "away" / "d2"
    shutil.copytree(tmp / "d2", far)
    template = {"model": {f"module.{k}": torch.zeros_like(v) for k, v in _model().state_dict().items()}}
    loaded = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, folder, kw in [("indep", tmp / "d3", {}), ("ref", tmp / "d2", {}),
                                 ("far", far, {"ref": tmp / "d1"})]:
            loaded[name] = _zeros_like(template)
            dcp.load(loaded[name], storage_reader=WzStorageReader(folder, **kw), no_dist=True)
        with pytest.raises(CheckpointException, match="pass ref=<that folder>"):
            dcp.load(_zeros_like(template), storage_reader=WzStorageReader(far), no_dist=True)
    _assert_same(loaded["ref"], loaded["indep"], "(c) single-process load")
    _assert_same(loaded["far"], loaded["indep"], "(c) moved copy with ref=")


def _single_state():
    torch.manual_seed(3)
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train(model, opt, 2, seed=5)
    return {"model": model.state_dict(), "optim": opt.state_dict(),
            "extra": {"step": 7, "name": "run-1", "c": torch.randn(3, 2, dtype=torch.complex64),
                      "bf": torch.randn(5, dtype=torch.bfloat16), "empty": torch.zeros(0, 4)}}, model, opt


def _zeros_like(sd):
    if isinstance(sd, dict):
        return {k: _zeros_like(v) for k, v in sd.items()}
    if isinstance(sd, list):
        return [_zeros_like(v) for v in sd]
    return torch.zeros_like(sd) if torch.is_tensor(sd) else None


def test_single_process(tmp_path):  # (d) no process group
    state, model, opt = _single_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(state, storage_writer=WzStorageWriter(tmp_path / "s1"), no_dist=True)
        assert sorted(p.name for p in (tmp_path / "s1").iterdir()) == [".metadata", "__0_0.wz"]
        got = _zeros_like(state)
        got["optim"]["param_groups"] = state["optim"]["param_groups"]
        dcp.load(got, storage_reader=WzStorageReader(tmp_path / "s1"), no_dist=True)
        _assert_same(got, state, "(d)")

        # a chain s1 <- s2 <- s3 loads with the references found through the .metadata files
        _train(model, opt, 1, seed=6)
        dcp.save(state, storage_writer=WzStorageWriter(tmp_path / "s2", ref=tmp_path / "s1"), no_dist=True)
        _train(model, opt, 1, seed=7)
        dcp.save(state, storage_writer=WzStorageWriter(tmp_path / "s3", ref=tmp_path / "s2"), no_dist=True)
        got = _zeros_like(state)
        dcp.load(got, storage_reader=WzStorageReader(tmp_path / "s3"), no_dist=True)
        _assert_same(got["model"], state["model"], "(d) chain")
        md = pickle.loads((tmp_path / "s3" / ".metadata").read_bytes())
        assert {i.ref for i in md.storage_data.values()} == {"../s1/__0_0.wz"}  # deltas stay one level deep
        # the rank files are plain weightzip files: names are fqn@offsets, byte items by fqn
        with api.open(tmp_path / "s1" / "__0_0.wz", framework="torch") as f:
            assert "model.0.weight@0,0" in f.keys() and "extra.name" in f.keys()

        # refusing to overwrite; overwrite=True replaces
        with pytest.raises(CheckpointException, match="overwrite=True"):
            dcp.save(state, storage_writer=WzStorageWriter(tmp_path / "s1"), no_dist=True)
        dcp.save(state, storage_writer=WzStorageWriter(tmp_path / "s1", overwrite=True), no_dist=True)

        # use_collectives=False: each rank writes its own __{rank}.metadata, and load finds it
        dcp.save(state, storage_writer=WzStorageWriter(tmp_path / "s4"), no_dist=True, use_collectives=False)
        assert sorted(p.name for p in (tmp_path / "s4").iterdir()) == ["__0.metadata", "__0_0.wz"]
        got = _zeros_like(state)
        dcp.load(got, storage_reader=WzStorageReader(tmp_path / "s4"), no_dist=True)
        _assert_same(got["model"], state["model"], "(d) use_collectives=False")

        # clear errors: a missing folder, a missing rank file
        with pytest.raises(CheckpointException, match="no such checkpoint folder"):
            dcp.load(_zeros_like(state), storage_reader=WzStorageReader(tmp_path / "nope"), no_dist=True)
        (tmp_path / "s3" / "__0_0.wz").unlink()
        with pytest.raises(CheckpointException, match="rank file __0_0.wz is missing"):
            dcp.load(_zeros_like(state), storage_reader=WzStorageReader(tmp_path / "s3"), no_dist=True)


def test_validate_checkpoint_id(tmp_path):
    assert WzStorageWriter.validate_checkpoint_id(tmp_path / "x")
    assert WzStorageReader.validate_checkpoint_id(str(tmp_path))
