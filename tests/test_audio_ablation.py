"""bench/audio_ablation.py's learning-curve reader: the validation points of a train.log, in
minutes since the run's config line, the final validation counted once per step."""
from __future__ import annotations

import json

import pytest
from common import REPO  # noqa: F401  (puts the repository on sys.path)

from bench.audio_ablation import VARIANTS, curve


def test_curve_reads_the_validation_lines_of_a_train_log(tmp_path):
    val = {"2": {"mel": 0.9, "snr_db": -3.0}, "8": {"mel": 0.5, "snr_db": 1.25}}
    lines = ["2026-12-02 08:00:00,000 random states reseeded",
             "2026-12-02 08:00:30,000 config {}",
             "2026-12-02 08:01:00,500 step 50 loss 1.0 ema 1.0 mel 0.5 lr 2.0e-04",
             f"2026-12-02 08:02:30,000 val step 50 {json.dumps(val)}",
             f"2026-12-02 08:05:30,000 val step 100 {json.dumps({'8': {'mel': 0.4, 'snr_db': 2.5}})}",
             f"2026-12-02 08:05:31,000 done: step 100, 5.0 min; val {json.dumps({'8': {'mel': 0.4, 'snr_db': 2.5}})}"]
    (tmp_path / "train.log").write_text("\n".join(lines) + "\n")
    pts = curve(tmp_path / "train.log")
    assert [p["step"] for p in pts] == [50, 100]
    assert pts[0]["minutes"] == 2.0 and pts[0]["snr_db"] == 1.25 and pts[0]["mel"] == 0.5
    assert abs(pts[1]["minutes"] - (5 * 60 + 1) / 60) < 1e-9 and pts[1]["snr_db"] == 2.5


def test_every_variant_changes_only_loss_weights_of_the_training_config():
    from dataclasses import fields

    pytest.importorskip("torch")

    from neurocodec.tools.audio.train import AudioTrainConfig

    names = {f.name for f in fields(AudioTrainConfig)}
    assert VARIANTS["recon"] == {}
    for opts in VARIANTS.values():
        assert set(opts) <= names and all(k.endswith("_weight") for k in opts)
