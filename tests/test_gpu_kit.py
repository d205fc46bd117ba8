"""The GPU kit (bench/gpu) in its CPU dry-run mode: train_all.sh converts the three shipped
codecs into training checkpoints, trains each for a few seconds on tiny packs made here (an
image pack with train/ and val/, a flat speech folder the kit splits itself, a music pack),
validates before and after, and leaves at most 8 files of at most 16 MiB under --out (what the
GPU machine can send back), whose checkpoints load, and export. Slow: about 2 minutes on 2 cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from common import REPO

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")
Image = pytest.importorskip("PIL.Image")


def natural_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 80 * np.sin(xx / (7 + c + seed) + yy / (11 + 2 * c)) for c in range(3)], axis=2)
    img[h // 3:, : w // 2] *= 0.5
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def clip(seconds: float, seed: int, sr: int = 24000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 150 + 50 * seed
    x = 0.3 * np.sin(2 * np.pi * (f0 + 200 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def packs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packs")
    for split, n in (("train", 4), ("val", 2)):
        d = root / "images" / split
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(natural_image(144, 176, seed=i + 10 * (split == "val"))).save(d / f"{i}.png")
    speech = root / "speech"  # flat: the kit holds out files itself
    speech.mkdir()
    for i in range(5):
        sf.write(str(speech / f"s{i}.wav"), clip(1.5, i), 24000)
    for split, n in (("train", 2), ("val", 1)):
        d = root / "music" / split
        d.mkdir(parents=True)
        for i in range(n):
            sf.write(str(d / f"m{i}.flac"), clip(1.5, 7 + i + 3 * (split == "val")), 24000)
    return root


def test_dry_run_on_the_cpu(packs, tmp_path):
    out = tmp_path / "out"
    cmd = ["bash", str(REPO / "bench" / "gpu" / "train_all.sh"), "--device", "cpu", "--budget-s", "15",
           "--out", str(out), "--work", str(tmp_path / "work"), "--images", str(packs / "images"),
           "--speech", str(packs / "speech"), "--music", str(packs / "music"), "--set", "audio-rvq:batch=2",
           "--val-seconds", "0.5"]
    env = {**os.environ, "PYTHON": sys.executable}
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    wall = time.time() - t
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]

    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in files), files
    assert {p.name for p in files} == {"install.log", "train_all.log", "train_all.json",
                                       "hyperprior.pt", "shallow.pt", "audio-rvq.pt"}
    assert "install: skipped (importable)" in (out / "install.log").read_text()

    res = json.loads((out / "train_all.json").read_text())
    assert res["env"]["device"] == "cpu" and res["total_s"] < wall + 1
    for name, r_ in res["codecs"].items():
        assert "error" not in r_, (name, r_["error"])
        assert r_["train"]["steps"] >= 1 and r_["train"]["steps_per_s"] > 0
        assert "improved" in r_["verdict"]
        for when in ("before", "after"):
            m = r_[when]["model"]
            if name == "audio-rvq":
                assert set(m["per_set"]) == {"speech", "music"} and m["mel_mean"] > 0
            else:
                assert len(m["per_quality"]) == 6 and m["rd_mean"] > 0
                assert len(r_[when]["real"]["per_quality"]) == 6  # the codec's real files
    assert res["codecs"]["audio-rvq"]["val_data"] == {"speech": 1, "music": 1}
    log = (out / "train_all.log").read_text()
    for name in ("hyperprior", "shallow", "audio-rvq"):
        assert f"{name} before:" in log and f"{name} after:" in log and f"---- {name}:" in log

    # what comes back is a training checkpoint: it loads, and the image ones (float16 tensors) export
    from neurocodec.tools.checkpoints import load_checkpoint
    from neurocodec.tools.image.export import export

    for name in ("hyperprior", "shallow", "audio-rvq"):
        st = load_checkpoint(out / f"{name}.pt")
        assert st["from_codec"]["name"] == name and st["step"] == res["codecs"][name]["train"]["steps"]
        assert st["gpu_kit"]["float16_tensors"] == (name != "audio-rvq")  # image: 20+ MiB in float32
    # the data recorded is the packs' (not the kit's split links): audio export fits its priors on it
    data = load_checkpoint(out / "audio-rvq.pt")["config"]["train"]["data"]
    assert data == [str((packs / "speech").resolve()), str((packs / "music" / "train").resolve())]
    folder = export(out / "hyperprior.pt", tmp_path / "exported", "hp-gpu", 64999)
    assert (folder / "weights.wz").stat().st_size > 2**20
    print(f"dry run: {wall:.0f} s")
