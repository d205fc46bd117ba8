"""Lossy packing end to end: --lossy --max-error E in the container, closed-loop deltas, info."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

import weightzip
from weightzip import cli
from weightzip.errors import ChecksumError, FormatError

st = pytest.importorskip("safetensors.numpy")
FLOATS = [np.float32, np.float16, ml_dtypes.bfloat16, np.float64]


def _rms(x):
    a = np.asarray(x, np.float64).ravel()
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def _check_bound(orig, got, e):
    assert got.dtype == orig.dtype and got.shape == orig.shape
    o, g = np.asarray(orig, np.float64), np.asarray(got, np.float64)
    fin = np.isfinite(o)
    assert np.all(np.abs(o[fin] - g[fin]) <= e * _rms(orig)), np.abs(o[fin] - g[fin]).max() / _rms(orig)
    bits = orig.view(f"u{orig.dtype.itemsize}")
    assert np.array_equal(bits[~fin], got.view(bits.dtype)[~fin])  # NaN payloads, ±Inf exact


def _model(rng, drift=None):
    base = drift or {}
    out = {}
    for i, dt in enumerate(FLOATS):
        w = base.get(f"w{i}")
        step = 1e-3 * rng.standard_normal((96, 80))
        w = rng.standard_normal((96, 80)) * 0.05 if w is None else w.astype(np.float64) + step
        out[f"w{i}"] = w.astype(dt)
    out["w0"].reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    out["ids"] = np.arange(300, dtype=np.int64)  # ints stay exact
    out["tiny"] = np.array([0.5, -0.25], np.float32)  # scalars/small tensors stay exact
    return out


def test_pack_lossy_safetensors_bound_and_exact_rest(tmp_path):
    rng = np.random.default_rng(0)
    t = _model(rng)
    src = tmp_path / "m.safetensors"
    st.save_file(t, str(src))
    assert cli.main(["pack", str(src), "-o", str(tmp_path / "m.wz"), "--lossy", "--max-error", "0.01", "-q"]) == 0
    assert (tmp_path / "m.wz").stat().st_size < 0.45 * src.stat().st_size
    assert cli.main(["unpack", str(tmp_path / "m.wz"), "-o", str(tmp_path / "u.safetensors"), "-q"]) == 0
    got = st.load_file(str(tmp_path / "u.safetensors"))
    assert list(got) == list(st.load_file(str(src)))  # names and order
    for i in range(len(FLOATS)):
        _check_bound(t[f"w{i}"], got[f"w{i}"], 0.01)
    assert np.array_equal(got["ids"], t["ids"]) and np.array_equal(got["tiny"], t["tiny"])
    d = weightzip.info(tmp_path / "m.wz")
    rows = {r["name"]: r for r in d["entries"] if r["kind"] == "tensor"}
    assert rows["w0"]["lossy"]["max_error"] == 0.01 and rows["ids"]["lossy"] is None
    assert rows["w0"]["bits_per_weight"] < 12 and "quantised" in rows["w0"]["codecs"]


def test_closed_loop_chain_keeps_the_bound(tmp_path):
    rng = np.random.default_rng(1)
    prev, t, sizes = None, None, []
    for k in range(4):
        t = _model(rng, t)
        p = weightzip.save(t, tmp_path / f"c{k}.wz", max_error=0.02, ref=prev)
        sizes.append(p.stat().st_size)
        got = weightzip.load(p)  # finds the chain beside it
        for i in range(len(FLOATS)):
            _check_bound(t[f"w{i}"], got[f"w{i}"], 0.02)  # errors do not accumulate
        prev = p
    assert max(sizes[1:]) < 0.6 * sizes[0]


def test_torch_pt_lossy_with_valid_zip_crcs(tmp_path):
    import zipfile
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.Linear(64, 48)
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(8, 64)).square().mean().backward()
    opt.step()
    src = tmp_path / "ckpt.pt"
    torch.save({"model": m.state_dict(), "optimizer": opt.state_dict(), "ids": torch.arange(100)}, src)
    p = weightzip.pack(src, tmp_path / "ckpt.wz", max_error=0.01, moment_error=0.1)
    assert p.stat().st_size < 0.5 * src.stat().st_size
    out = weightzip.unpack(p, tmp_path / "u.pt")
    assert out.stat().st_size == src.stat().st_size
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None  # every member's CRC-32 matches the reconstructed bytes
    a, b = torch.load(src, weights_only=True), torch.load(out, weights_only=True)
    _check_bound(a["model"]["weight"].numpy(), b["model"]["weight"].numpy(), 0.01)
    assert torch.equal(a["ids"], b["ids"]) and torch.equal(a["optimizer"]["state"][0]["step"],
                                                           b["optimizer"]["state"][0]["step"])
    _check_bound(a["optimizer"]["state"][0]["exp_avg"].numpy(), b["optimizer"]["state"][0]["exp_avg"].numpy(), 0.1)
    v, v2 = a["optimizer"]["state"][0]["exp_avg_sq"].double(), b["optimizer"]["state"][0]["exp_avg_sq"].double()
    assert (v.sqrt() - v2.sqrt()).abs().max() <= 0.1 * v.sqrt().square().mean().sqrt()
    assert not bool(((v > 0) & (v2 == 0)).any())
    assert "within their bound" in weightzip.verify(p, src)
    # lossless packing of the same file is unchanged: byte-exact
    q = weightzip.pack(src, tmp_path / "exact.wz")
    assert weightzip.unpack(q, tmp_path / "e.pt").read_bytes() == src.read_bytes()


def test_corrupt_quantised_chunk_is_caught(tmp_path):
    rng = np.random.default_rng(2)
    p = weightzip.save({"w": rng.standard_normal(50_000).astype(np.float32)}, tmp_path / "a.wz", max_error=0.01)
    data = bytearray(p.read_bytes())
    data[len(data) // 4] ^= 0x10
    p.write_bytes(bytes(data))
    with pytest.raises((ChecksumError, FormatError)):
        weightzip.load(p)


def test_cli_refuses_incomplete_lossy_options(tmp_path, capsys):
    src = tmp_path / "m.safetensors"
    st.save_file({"w": np.zeros((8, 8), np.float32)}, str(src))
    assert cli.main(["pack", str(src), "--max-error", "0.01", "-o", str(tmp_path / "a.wz")]) == 1
    assert "--lossy" in capsys.readouterr().err
    assert cli.main(["pack", str(src), "--lossy", "-o", str(tmp_path / "b.wz")]) == 1
    assert not (tmp_path / "a.wz").exists() and not (tmp_path / "b.wz").exists()


@settings(max_examples=25, deadline=None)
@given(dt=hs.sampled_from(FLOATS), e=hs.floats(1e-4, 0.5), n=hs.integers(64, 3000), seed=hs.integers(0, 2**31),
       scale=hs.sampled_from([1e-30, 1e-3, 1.0, 1e4]), with_ref=hs.booleans())
def test_property_bound_holds(tmp_path_factory, dt, e, n, seed, scale, with_ref):
    rng = np.random.default_rng(seed)
    d = tmp_path_factory.mktemp("p")
    with np.errstate(over="ignore"):  # huge values overflow F16/BF16 to ±Inf: stored exactly
        x = (rng.standard_t(3, n) * scale).astype(dt)
    ref = None
    if with_ref:
        with np.errstate(over="ignore"):
            x0 = (x.astype(np.float64) + scale * rng.standard_normal(n)).astype(dt)
        ref = weightzip.save({"x": x0}, d / "r.wz", max_error=e)
    p = weightzip.save({"x": x}, d / "x.wz", max_error=e, ref=ref)
    _check_bound(x, weightzip.load(p)["x"], e)


def test_verify_checks_the_bound_against_the_original(tmp_path, capsys):
    rng = np.random.default_rng(3)
    t = {"a": rng.standard_normal((128, 64)).astype(np.float32), "n": np.arange(10, dtype=np.int32)}
    src = tmp_path / "m.safetensors"
    st.save_file(t, str(src))
    p = weightzip.pack(src, tmp_path / "m.wz", max_error=0.01)
    assert "within their bound" in weightzip.verify(p, src)
    t["a"][5, 5] += 1.0  # an original the file does not match
    st.save_file(t, str(tmp_path / "other.safetensors"))
    assert cli.main(["verify", str(p), str(tmp_path / "other.safetensors")]) == 1
    assert "bound" in capsys.readouterr().err


def test_trainer_folder_lossy_chain_with_optimizer_pt(tmp_path):
    import json
    import zipfile
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    m = torch.nn.Linear(96, 64)
    opt = torch.optim.AdamW(m.parameters())
    prev = None
    for k in range(3):
        m(torch.randn(8, 96)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        d = tmp_path / f"checkpoint-{k}"
        d.mkdir()
        st.save_file({n: p.detach().numpy() for n, p in m.named_parameters()}, str(d / "model.safetensors"))
        torch.save(opt.state_dict(), d / "optimizer.pt")
        (d / "trainer_state.json").write_text(json.dumps({"step": k, "log": list(range(10 * k))}))
        p = weightzip.pack(d, tmp_path / f"c{k}.wz", max_error=0.01, moment_error=0.1, ref=prev)
        out = weightzip.unpack(p, tmp_path / f"u{k}")  # the chain is found beside it
        assert (out / "trainer_state.json").read_bytes() == (d / "trainer_state.json").read_bytes()
        with zipfile.ZipFile(out / "optimizer.pt") as z:
            assert z.testzip() is None
        a, b = torch.load(d / "optimizer.pt", weights_only=True), torch.load(out / "optimizer.pt", weights_only=True)
        _check_bound(a["state"][0]["exp_avg"].numpy(), b["state"][0]["exp_avg"].numpy(), 0.1)
        got = st.load_file(str(out / "model.safetensors"))
        _check_bound(m.weight.detach().numpy(), got["weight"], 0.01)
        prev = p
    assert weightzip.info(prev, verify=True)["entries"]  # every checksum of the last delta holds
