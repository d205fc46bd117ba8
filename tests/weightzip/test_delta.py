"""Deltas (issue 13, point 1): `pack SRC --ref PREV.wz` codes SRC against an earlier pack,
byte-exact round trips (sha256) of files, folders, trainer checkpoints and chains, fallbacks
to independent coding, and the errors for missing, wrong and truncated references."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from common import SHARED_DATA, assert_cli_error, needs_zstd, run_cli, sha256_file, tree_hashes

import weightzip
from weightzip import _C
from weightzip import container as wzc
from weightzip.errors import FormatError, RefError
from weightzip.inspect import chunk_methods

st = pytest.importorskip("safetensors.numpy")
SERIES = SHARED_DATA / "weights" / "lora_roberta-base_agnews_series"


def _weights(seed: int, steps: int = 0) -> dict[str, np.ndarray]:
    """A small model after `steps` of slow drift (a training run's checkpoints)."""
    g = np.random.default_rng(seed)
    w = {"a.weight": g.normal(0, 0.02, (256, 512)).astype(np.float32),
         "a.bias": g.normal(0, 0.02, 512).astype(np.float32),
         "b.weight": g.normal(0, 0.02, (128, 256)).astype(np.float16),
         "emb": g.normal(0, 0.02, (64, 256)).astype(np.float32)}
    d = np.random.default_rng(1000 + steps)
    for _ in range(steps):
        for k, v in w.items():
            w[k] = (v + d.normal(0, 2e-4, v.shape)).astype(v.dtype)
    return w


def _entries(wz) -> list:
    with open(wz, "rb") as f:  # the index only: no reference needed
        return wzc.Reader(f).entries


def _version(wz) -> int:
    return int.from_bytes(wz.read_bytes()[8:10], "little")


@needs_zstd
def test_c_level_roundtrip_and_no_ref():
    prev = np.random.default_rng(0).normal(0, 0.02, 200_000).astype(np.float32)
    cur = prev + np.float32(1e-4) * np.random.default_rng(1).normal(size=prev.size).astype(np.float32)
    for pred in (-1, 1, 2, 3):
        payload, tab = _C.encode_chunks(cur, 4, 3, 1 << 20, 1, 0, 1, ref=prev, predictor=pred)
        assert payload[0] == 0xFE and (pred == -1 or payload[1] == pred)
        table = np.array([[0, tab[0, 0], tab[0, 1], tab[0, 2]]], np.uint64)
        out = np.empty_like(cur)
        _C.decode_chunks(payload, table, 4, 3, out, ref=prev)
        assert out.tobytes() == cur.tobytes()
        with pytest.raises(FormatError, match="reference"):
            _C.decode_chunks(payload, table, 4, 3, out)
    indep, _ = _C.encode_chunks(cur, 4, 3, 1 << 20, 1, 0, 1)
    auto, _ = _C.encode_chunks(cur, 4, 3, 1 << 20, 1, 0, 1, ref=prev)
    assert auto.size < 0.9 * indep.size
    # A reference of another size is a zstd dictionary (blobs that grew), never misaligned.
    text = b"".join(b'{"step": %d, "loss": %.4f},\n' % (i, 1 / (i + 1)) for i in range(400))
    grown = np.frombuffer(text + b'{"step": 400, "loss": 0.0025},\n', np.uint8)
    old = np.frombuffer(text, np.uint8)
    payload, tab = _C.encode_chunks(grown, 1, 0, 1 << 20, 1, 0, 1, ref=old)
    assert payload[:2].tolist() == [0xFE, 0] and payload.size < 100
    out = np.empty_like(grown)
    _C.decode_chunks(payload, np.array([[0, *tab[0]]], np.uint64), 1, 0, out, ref=old)
    assert out.tobytes() == grown.tobytes()


def test_single_file_roundtrip_and_fallbacks(tmp_path):
    w0, w1 = _weights(0), _weights(0, steps=3)
    w1["renamed"] = w1.pop("emb")  # not in the reference: independent
    w1["b.weight"] = w1["b.weight"].astype(np.float32)  # another dtype: independent
    w1["a.bias"] = w1["a.bias"][:256].copy()  # reshaped: independent
    st.save_file(w0, tmp_path / "c0.safetensors")
    st.save_file(w1, tmp_path / "c1.safetensors")
    ref = weightzip.pack(tmp_path / "c0.safetensors", tmp_path / "c0.wz")
    alone = weightzip.pack(tmp_path / "c1.safetensors", tmp_path / "alone.wz")
    delta = weightzip.pack(tmp_path / "c1.safetensors", tmp_path / "c1.wz", ref=ref)
    # small tensors are packed, deltas never pack
    assert any(e.kind == "pack" for e in _entries(ref)) and not any(e.kind == "pack" for e in _entries(delta))
    assert delta.stat().st_size < 0.9 * alone.stat().st_size
    coded = {e.name: e.ref_entry is not None for e in _entries(delta) if e.kind == "tensor"}
    assert coded == {"a.weight": True, "a.bias": False, "b.weight": False, "renamed": False}
    out = weightzip.unpack(delta, tmp_path / "out.safetensors")  # the reference is found beside it
    assert sha256_file(out) == sha256_file(tmp_path / "c1.safetensors")
    got = weightzip.load(delta)
    assert all(np.array_equal(got[k], w1[k]) for k in w1)
    with weightzip.open(delta, ref=ref) as f:
        assert np.array_equal(f.get_tensor("a.weight"), w1["a.weight"])
    info = weightzip.info(delta)
    assert info["ref"]["name"] == "c0.wz" and info["verified"]
    assert any(k.startswith("ref:") for e in info["entries"] for k in e["codecs"])
    assert weightzip.verify(delta, tmp_path / "c1.safetensors").startswith("OK")


@needs_zstd
def test_hf_folder_roundtrip(tmp_path):
    for i in range(2):
        d = tmp_path / f"m{i}"
        (d / "sub").mkdir(parents=True)
        st.save_file(_weights(1, steps=2 * i), d / "model.safetensors")
        (d / "config.json").write_text(json.dumps({"hidden": 256, "layers": 2}))
        (d / "sub" / "tokenizer.json").write_text(json.dumps({"vocab": list(range(50 + i))}))
    ref = weightzip.pack(tmp_path / "m0", tmp_path / "m0.wz")
    delta = weightzip.pack(tmp_path / "m1", tmp_path / "m1.wz", ref=ref)
    assert delta.stat().st_size < 0.95 * ref.stat().st_size
    with open(delta, "rb") as f:  # blobs too: config.json (same size), tokenizer.json (grown)
        r = wzc.Reader(f)
        parts = {fd["path"]: fd["parts"] for fd in r.files}
        assert r.entries[parts["config.json"][0]].ref_entry is not None
        assert r.entries[parts["sub/tokenizer.json"][0]].ref_entry is not None
        assert chunk_methods(r, r.entries[parts["sub/tokenizer.json"][0]]) == {"ref:zstd-dict": 1}
    out = weightzip.unpack(delta, tmp_path / "out")
    assert tree_hashes(out) == tree_hashes(tmp_path / "m1")


def test_trainer_folder_with_adam(tmp_path):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)
    log = []
    for ck in range(3):
        for _ in range(5):
            opt.zero_grad()
            loss = model(torch.randn(32, 64, generator=g)).square().mean()
            loss.backward()
            opt.step()
            sched.step()
            log.append({"loss": loss.item()})
        d = tmp_path / f"checkpoint-{ck}"
        d.mkdir()
        st.save_file({k: v.numpy() for k, v in model.state_dict().items()}, d / "model.safetensors")
        torch.save(opt.state_dict(), d / "optimizer.pt")
        torch.save(sched.state_dict(), d / "scheduler.pt")
        torch.save({"cpu": torch.get_rng_state()}, d / "rng_state.pth")
        (d / "trainer_state.json").write_text(json.dumps({"log_history": log}, indent=2))
    prev = None
    for ck in range(3):
        wz = weightzip.pack(tmp_path / f"checkpoint-{ck}", tmp_path / f"checkpoint-{ck}.wz", ref=prev)
        prev = wz
    with open(prev, "rb") as f:
        r = wzc.Reader(f)
        entries, parts = r.entries, {fd["path"]: fd["parts"] for fd in r.files}
    moments = [entries[i] for i in parts["optimizer.pt"]
               if entries[i].kind == "tensor" and "exp_avg" in entries[i].name]
    assert len(moments) == 8 and all(e.ref_entry is not None for e in moments)
    assert entries[parts["trainer_state.json"][0]].ref_entry is not None  # grown: zstd dictionary
    assert all(entries[i].ref_entry is not None for i in parts["model.safetensors"])
    out = weightzip.unpack(prev, tmp_path / "out")
    assert tree_hashes(out) == tree_hashes(tmp_path / "checkpoint-2")
    sd = torch.load(out / "optimizer.pt", weights_only=True)
    assert torch.equal(sd["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_chain_of_four(tmp_path):
    src, packs = tmp_path / "src", tmp_path / "packs"
    src.mkdir()
    packs.mkdir()
    prev = None
    for i in range(4):
        st.save_file(_weights(2, steps=i), src / f"ckpt-{i}.safetensors")
        prev = weightzip.pack(src / f"ckpt-{i}.safetensors", packs / f"ckpt-{i}.wz", ref=prev)
    assert [_version(packs / f"ckpt-{i}.wz") for i in range(4)] == [4] * 4
    assert [sum(e.ref_entry is not None for e in _entries(packs / f"ckpt-{i}.wz")) > 0 for i in range(4)] == \
        [False, True, True, True]
    # Only the last is unpacked: ckpt-2, ckpt-1, ckpt-0 are found beside it by name.
    r = run_cli("unpack", packs / "ckpt-3.wz", "-o", tmp_path / "out.safetensors", "-q")
    assert r.returncode == 0, r.stderr
    assert sha256_file(tmp_path / "out.safetensors") == sha256_file(src / "ckpt-3.safetensors")
    # Elsewhere, the chain given explicitly (any order).
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(packs / "ckpt-3.wz", moved / "last.wz")
    refs = [packs / f"ckpt-{i}.wz" for i in (0, 2, 1)]
    out = weightzip.unpack(moved / "last.wz", tmp_path / "out2.safetensors", ref=refs)
    assert sha256_file(out) == sha256_file(src / "ckpt-3.safetensors")
    shutil.copy(packs / "ckpt-2.wz", moved / "ckpt-2.wz")  # found, but its own reference is not
    with pytest.raises(RefError, match=r"ckpt-1\.wz .*needed by ckpt-2\.wz, needed by last\.wz"):
        weightzip.unpack(moved / "last.wz", tmp_path / "out3.safetensors")
    assert not (tmp_path / "out3.safetensors").exists()


def test_reference_errors(tmp_path):
    st.save_file(_weights(3), tmp_path / "c0.safetensors")
    st.save_file(_weights(3, steps=1), tmp_path / "c1.safetensors")
    st.save_file(_weights(4), tmp_path / "other.safetensors")
    ref = weightzip.pack(tmp_path / "c0.safetensors", tmp_path / "c0.wz")
    other = weightzip.pack(tmp_path / "other.safetensors", tmp_path / "other.wz")
    delta = weightzip.pack(tmp_path / "c1.safetensors", tmp_path / "c1.wz", ref=ref)
    away = tmp_path / "away"
    away.mkdir()
    shutil.copy(delta, away / "c1.wz")
    out = tmp_path / "out.safetensors"
    # missing: not beside, not given
    r = run_cli("unpack", away / "c1.wz", "-o", out)
    assert_cli_error(r)
    assert "c1.wz is a delta against c0.wz" in r.stderr and "--ref" in r.stderr
    assert not out.exists()
    # wrong: another file given, or under the right name beside it; a re-pack is another file
    r = run_cli("unpack", away / "c1.wz", "-o", out, "--ref", other)
    assert_cli_error(r)
    assert "wrong reference for c1.wz: expected c0.wz" in r.stderr
    weightzip.pack(tmp_path / "c0.safetensors", away / "c0.wz", level="fast")
    with pytest.raises(RefError, match="re-packed"):
        weightzip.unpack(away / "c1.wz", out)
    # truncated
    (away / "c0.wz").write_bytes(ref.read_bytes()[:-100])
    r = run_cli("verify", away / "c1.wz")
    assert_cli_error(r)
    # info --no-verify needs no reference; info/verify with it work
    r = run_cli("info", away / "c1.wz", "--no-verify")
    assert r.returncode == 0 and "delta against c0.wz" in r.stdout, r.stderr
    r = run_cli("verify", away / "c1.wz", tmp_path / "c1.safetensors", "--ref", ref)
    assert r.returncode == 0, r.stderr
    # pack: not a weightzip file, the output itself
    with pytest.raises(RefError, match="not a weightzip file"):
        weightzip.pack(tmp_path / "c1.safetensors", tmp_path / "x.wz", ref=tmp_path / "c0.safetensors")
    with pytest.raises(RefError, match="same file"):
        weightzip.pack(tmp_path / "c1.safetensors", ref, ref=ref, overwrite=True)
    assert issubclass(RefError, FormatError)


def test_no_ref_is_independent_and_deltas_need_a_newer_reader(tmp_path, monkeypatch):
    st.save_file(_weights(5), tmp_path / "c0.safetensors")
    st.save_file(_weights(5, steps=1), tmp_path / "c1.safetensors")
    a = weightzip.pack(tmp_path / "c0.safetensors", tmp_path / "a.wz")
    b = weightzip.pack(tmp_path / "c0.safetensors", tmp_path / "b.wz", ref=None)
    assert a.read_bytes() == b.read_bytes() and _version(a) == 4
    delta = weightzip.pack(tmp_path / "c1.safetensors", tmp_path / "c1.wz", ref=a)
    monkeypatch.setattr(wzc, "VERSION", 3)
    with pytest.raises(FormatError, match="upgrade"):
        weightzip.info(delta, verify=False)


def test_identical_reference_is_tiny(tmp_path):
    st.save_file(_weights(6), tmp_path / "c.safetensors")
    ref = weightzip.pack(tmp_path / "c.safetensors", tmp_path / "c0.wz")
    same = weightzip.pack(tmp_path / "c.safetensors", tmp_path / "c1.wz", ref=ref)
    assert same.stat().st_size < 0.02 * ref.stat().st_size
    assert sha256_file(weightzip.unpack(same, tmp_path / "o.safetensors")) == sha256_file(tmp_path / "c.safetensors")


@pytest.mark.data
def test_lora_series_chain(tmp_path):
    if not SERIES.exists():
        pytest.skip(f"{SERIES} not present")
    ckpts = sorted(SERIES.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    indep = chain = 0
    prev = None
    for ck in ckpts:
        indep += weightzip.pack(ck, tmp_path / f"i-{ck.name}.wz").stat().st_size
        prev = weightzip.pack(ck, tmp_path / f"d-{ck.name}.wz", ref=prev)
        chain += prev.stat().st_size
    assert chain <= 0.85 * indep, (chain, indep, chain / indep)
    out = weightzip.unpack(prev, tmp_path / "last")
    assert tree_hashes(out) == tree_hashes(ckpts[-1])
