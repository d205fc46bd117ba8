"""Series store (run.wzs/): pack a run, random access, append, info, errors."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

st = pytest.importorskip("safetensors.numpy")

from weightzip import cli, series
from weightzip.errors import FormatError


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _make_run(root, n=5, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    run = root / "run"
    for i in range(n):
        d = run / f"checkpoint-{100 * (i + 1)}"
        d.mkdir(parents=True)
        w = w + 1e-3 * rng.standard_normal(w.shape).astype(np.float32)  # small steps: deltas pay
        b = b + 1e-3 * rng.standard_normal(b.shape).astype(np.float32)
        st.save_file({"layer.weight": w, "layer.bias": b}, str(d / "model.safetensors"))
        (d / "trainer_state.json").write_text(json.dumps({"step": 100 * (i + 1), "log": list(range(i * 10))}))
    (run / "README.md").write_text("not a checkpoint")
    return run


def test_pack_unpack_every_checkpoint_byte_exact(tmp_path):
    run = _make_run(tmp_path)
    out = series.pack_series(run, tmp_path / "run.wzs", keyframe_every=3, progress=False)
    s = series.open_series(out)
    assert s.names == [f"checkpoint-{100 * (i + 1)}" for i in range(5)]
    kinds = [c["ref"] is None for c in s.manifest["checkpoints"]]
    assert kinds == [True, False, False, True, False]  # keyframes at 0 and 3
    for n in s.names:
        got = series.unpack_checkpoint(out, n, tmp_path / "u" / n)
        assert _digest(got) == _digest(run / n)
    # each delta is smaller than its keyframe-coded twin
    k1 = series.pack_series(run, tmp_path / "k1.wzs", keyframe_every=1, progress=False)
    assert all(c["ref"] is None for c in series.open_series(k1).manifest["checkpoints"])
    sizes3 = [c["bytes"] for c in s.manifest["checkpoints"]]
    sizes1 = [c["bytes"] for c in series.open_series(k1).manifest["checkpoints"]]
    assert sizes3[1] < sizes1[1] and sizes3[4] < sizes1[4]


def test_random_access_decodes_only_the_chain(tmp_path, monkeypatch):
    run = _make_run(tmp_path)
    out = series.pack_series(run, tmp_path / "run.wzs", keyframe_every=8, progress=False)
    s = series.open_series(out)
    opened = []
    real_open = open

    def spy(path, *a, **kw):
        if str(path).endswith(".wz"):
            opened.append(os.path.basename(str(path)))
        return real_open(path, *a, **kw)
    monkeypatch.setattr("builtins.open", spy)
    with s.open("checkpoint-300") as f:
        w = f.get_tensor("layer.weight")
    monkeypatch.undo()
    want = st.load_file(str(run / "checkpoint-300" / "model.safetensors"))["layer.weight"]
    np.testing.assert_array_equal(w, want)
    later = {c["file"] for c in s.manifest["checkpoints"][3:]}
    assert opened and not later & set(opened)  # members after the one asked for are never read


def test_append_leaves_old_members_untouched(tmp_path):
    run = _make_run(tmp_path, n=6)
    extra = run / "checkpoint-600"
    (tmp_path / "later").mkdir()
    moved = tmp_path / "later" / "checkpoint-600"
    extra.rename(moved)
    out = series.pack_series(run, tmp_path / "run.wzs", progress=False)
    before = {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.glob("*.wz")}
    row = series.append(out, moved)
    assert row["name"] == "checkpoint-600" and row["ref"] is not None
    after = {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.glob("*.wz")}
    assert {k: after[k] for k in before} == before
    got = series.unpack_checkpoint(out, "checkpoint-600", tmp_path / "u6")
    assert _digest(got) == _digest(moved)
    with pytest.raises(ValueError, match="already"):
        series.append(out, moved)


def test_cli_pack_info_unpack_and_errors(tmp_path, capsys):
    run = _make_run(tmp_path, n=3)
    assert cli.main(["pack", str(run), "-o", str(tmp_path / "r.wzs"), "-q"]) == 0
    assert cli.main(["info", str(tmp_path / "r.wzs")]) == 0
    out = capsys.readouterr().out
    assert "3 checkpoints" in out and "keyframe" in out and "delta" in out
    assert cli.main(["info", str(tmp_path / "r.wzs"), "--checkpoint", "checkpoint-200"]) == 0
    assert "layer.weight" in capsys.readouterr().out
    assert cli.main(["unpack", str(tmp_path / "r.wzs"), "-o", str(tmp_path / "all"), "-q"]) == 0
    for n in ("checkpoint-100", "checkpoint-200", "checkpoint-300"):
        assert _digest(tmp_path / "all" / n) == _digest(run / n)
    # a corrupt member is named; a missing checkpoint and a non-series are clean errors
    s = series.open_series(tmp_path / "r.wzs")
    m = s.member_path("checkpoint-200")
    data = bytearray(m.read_bytes())
    data[len(data) // 3] ^= 0x40
    m.write_bytes(bytes(data))
    assert cli.main(["info", str(tmp_path / "r.wzs")]) == 1
    assert "checkpoint-200" in capsys.readouterr().err
    with pytest.raises(KeyError, match="no checkpoint"):
        s.member("checkpoint-999")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FormatError, match="not a weightzip series"):
        series.open_series(tmp_path / "plain")
    assert cli.main(["pack", str(run), "-o", str(tmp_path / "r.wzs"), "-q"]) == 1  # exists, no --force
