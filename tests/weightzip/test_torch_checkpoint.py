"""weightzip.torch: save_checkpoint/load_checkpoint inside a training loop."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import weightzip
import weightzip.torch as wzt
from weightzip.errors import FormatError


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 8)
        self.mid = torch.nn.Linear(8, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.out = torch.nn.Linear(8, 11, bias=False)
        self.out.weight = self.emb.weight  # tied

    def forward(self, x):
        return self.out(self.norm(torch.relu(self.mid(self.emb(x)))))


def _setup(seed=0):
    torch.manual_seed(seed)
    m = Tiny()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)
    sch = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    return m, opt, sch


def _train(m, opt, sch, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.randint(0, 11, (4, 5), generator=g)
        loss = torch.nn.functional.cross_entropy(m(x).reshape(-1, 11), x.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sch.step()
        losses.append(loss.item())
    return losses


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    a, b = a.reshape(-1), b.reshape(-1)  # bit patterns (NaN payloads, -0.0) must match
    assert torch.equal(a.view(torch.uint8) if a.dtype != torch.uint8 else a,
                       b.view(torch.uint8) if b.dtype != torch.uint8 else b)


def test_lossless_round_trip_resumes_bit_exactly(tmp_path):
    m, opt, sch = _setup()
    _train(m, opt, sch, 5)
    p = wzt.save_checkpoint(m, opt, tmp_path / "c.wz", step=5, scheduler=sch, extra={"note": "hi"})
    after_ref = _train(m, opt, sch, 4, seed=1)

    m2, opt2, sch2 = _setup(seed=99)  # different init: everything must come from the file
    info = wzt.load_checkpoint(p, m2, opt2, sch2)
    assert info["step"] == 5 and info["extra"] == {"note": "hi"}
    assert m2.out.weight is m2.emb.weight  # ties survive (load_state_dict keeps the module's tie)
    after = _train(m2, opt2, sch2, 4, seed=1)
    assert after == after_ref  # the exact resume reproduces the original run
    for k, v in m.state_dict().items():
        _same(v, m2.state_dict()[k])


def test_file_is_plain_safetensors_with_json_metadata(tmp_path):
    m, opt, sch = _setup()
    _train(m, opt, sch, 2)
    p = wzt.save_checkpoint(m, opt, tmp_path / "c.wz", step=2)
    with weightzip.open(p) as f:
        keys = set(f.keys())
        meta = json.loads(f.metadata()[wzt.META_KEY])
    assert "model/emb.weight" in keys and "model/out.weight" not in keys  # the tie is stored once
    assert meta["ties"] == {"out.weight": "emb.weight"}
    assert {k.rsplit("/", 1)[-1] for k in keys if k.startswith("optimizer/")} == {"exp_avg", "exp_avg_sq", "step"}
    out = weightzip.unpack(p, tmp_path / "c.safetensors")
    st = pytest.importorskip("safetensors.numpy")
    arrs = st.load_file(str(out))
    np.testing.assert_array_equal(arrs["model/mid.weight"], m.mid.weight.detach().numpy())


def test_rng_state_is_restored(tmp_path):
    m, opt, _ = _setup()
    torch.manual_seed(7)
    p = wzt.save_checkpoint(m, opt, tmp_path / "c.wz")
    want = torch.rand(3)
    torch.manual_seed(8)
    wzt.load_checkpoint(p, m, opt)
    assert torch.equal(torch.rand(3), want)


def test_model_only_and_errors(tmp_path):
    m, _, _ = _setup()
    p = wzt.save_checkpoint(m, None, tmp_path / "m.wz")
    m2, opt2, _ = _setup(seed=3)
    wzt.load_checkpoint(p, m2)
    _same(m.mid.weight.detach(), m2.mid.weight.detach())
    with pytest.raises(FormatError, match="no optimizer state"):
        wzt.load_checkpoint(p, m2, opt2)
    plain = weightzip.save({"a": np.zeros(3, np.float32)}, tmp_path / "plain.wz")
    with pytest.raises(FormatError, match="not a weightzip.torch checkpoint"):
        wzt.load_checkpoint(plain, m2)
    with pytest.raises(TypeError, match="JSON"):
        wzt.save_checkpoint(m, None, tmp_path / "x.wz", extra={"f": object()})
    assert not (tmp_path / "x.wz").exists()


def test_delta_checkpoints_are_smaller_and_load_exactly(tmp_path):
    m, opt, sch = _setup()
    _train(m, opt, sch, 3)
    first = wzt.save_checkpoint(m, opt, tmp_path / "c3.wz", step=3)
    _train(m, opt, sch, 1)
    indep = wzt.save_checkpoint(m, opt, tmp_path / "indep.wz", step=4)
    delta = wzt.save_checkpoint(m, opt, tmp_path / "c4.wz", step=4, ref=first)
    assert weightzip.info(delta, verify=False)["entries"] and delta.stat().st_size < indep.stat().st_size
    m2, opt2, sch2 = _setup(seed=5)
    assert wzt.load_checkpoint(delta, m2, opt2)["step"] == 4  # the reference is found beside it
    for k, v in m.state_dict().items():
        _same(v, m2.state_dict()[k])
    for (_, a), (_, b) in zip(opt.state_dict()["state"].items(), opt2.state_dict()["state"].items()):
        for key in a:
            _same(a[key], b[key])
    first.rename(tmp_path / "gone.wz")
    with pytest.raises(FormatError, match="c3.wz"):
        wzt.load_checkpoint(delta, m2, opt2)


def test_lossy_moments_keep_weights_exact_and_bound_sqrt_v(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Linear(64, 32)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        m(torch.randn(16, 64)).square().mean().backward()
        opt.step()
    p = wzt.save_checkpoint(m, opt, tmp_path / "c.wz", moment_error=0.05)
    m2 = torch.nn.Linear(64, 32)
    opt2 = torch.optim.Adam(m2.parameters(), lr=1e-2)
    wzt.load_checkpoint(p, m2, opt2)
    _same(m.weight.detach(), m2.weight.detach())  # weights lossless
    v, v2 = opt.state_dict()["state"][0]["exp_avg_sq"].double(), opt2.state_dict()["state"][0]["exp_avg_sq"].double()
    s, s2 = v.sqrt(), v2.sqrt()
    assert (s - s2).abs().max() <= 0.05 * s.square().mean().sqrt()  # the bound, in the sqrt domain
    assert not ((v > 0) & (v2 == 0)).any()  # Adam never divides by a vanished moment
    mm, mm2 = opt.state_dict()["state"][0]["exp_avg"].double(), opt2.state_dict()["state"][0]["exp_avg"].double()
    assert 0 < (mm - mm2).abs().max() <= 0.05 * mm.square().mean().sqrt()
    _same(opt.state_dict()["state"][0]["step"], opt2.state_dict()["state"][0]["step"])  # counters exact


def test_checkpoint_chain_keyframes_cache_and_resume(tmp_path, monkeypatch):
    from weightzip import container
    m, opt, sch = _setup()
    chain = wzt.CheckpointChain(tmp_path / "run", keyframe_every=3, max_error=0.01)
    decoded = []
    real = container.Reader._decode
    monkeypatch.setattr(container.Reader, "_decode", lambda self, *a, **k: decoded.append(1) or real(self, *a, **k))
    states = []
    for step in range(1, 6):
        _train(m, opt, sch, 1, seed=step)
        chain.save(m, opt, step=step)
        states.append({k: v.clone() for k, v in m.state_dict().items()})
    monkeypatch.undo()
    tensor_decodes = len(decoded)
    assert tensor_decodes < 10  # the cache spared the reference decodes (blobs only)
    paths = chain.paths()
    assert [p.name for p in paths] == [f"ckpt-{s:09d}.wz" for s in range(1, 6)]
    refs_of = [weightzip.info(p, verify=False).get("ref") for p in paths]
    assert [r is None for r in refs_of] == [True, False, False, True, False]  # keyframes at 0 and 3
    m2, opt2, _ = _setup(seed=9)
    assert wzt.CheckpointChain(tmp_path / "run").load(m2, opt2)["step"] == 5  # a new chain object resumes
    for k, v in states[-1].items():
        w = m2.state_dict()[k]
        if v.is_floating_point() and v.numel() >= 64:
            assert (w - v).abs().max() <= 0.01 * v.double().square().mean().sqrt()
        else:
            _same(v, w)
