"""The phase-aware terms of audio training (issue 15): the complex-STFT loss sees phase where the
magnitude losses do not, the discriminators and GAN losses have gradients, and a run with the
adversarial stage trains, checkpoints its discriminators and resumes them."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")
from tiny_codec import tone  # noqa: E402

from neurocodec.tools.audio import discriminators as disc  # noqa: E402
from neurocodec.tools.audio.losses import ComplexSTFTLoss, MultiResolutionSTFTLoss  # noqa: E402
from neurocodec.tools.audio.train import make_config, train  # noqa: E402


def chirp(n: int = 8192, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(tone(24000, n / 24000, seed=seed)[:n].astype(np.float32))[None, None]  # [1, 1, n]


def test_complex_loss_sees_phase_that_magnitudes_miss():
    x = chirp()
    mag, cpx = MultiResolutionSTFTLoss(), ComplexSTFTLoss()
    assert cpx(x, x).item() == 0
    assert mag(-x, x).item() < 1e-6  # a sign flip leaves every magnitude as it was
    assert cpx(-x, x).item() > 1.0
    shifted = torch.roll(x, 7, -1)  # a 7-sample delay turns most bins' phase
    assert cpx(shifted, x).item() > 0.25 * cpx(-x, x).item()


def test_discriminators_and_gan_losses_have_gradients():
    d = disc.Discriminators(width=4)
    x, x_hat = chirp(6000), chirp(6000, seed=1).requires_grad_(True)
    real, fake = d(x), d(x_hat)
    assert len(real) == 8 and all(logits.shape[0] == 1 and len(fm) >= 5 for logits, fm in real)
    loss = disc.g_loss(fake) + disc.feature_matching(real, fake)
    loss.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    dl = disc.d_loss(d(x), d(x_hat.detach()))
    dl.backward()
    assert all(p.grad is not None for p in d.parameters())
    assert torch.isfinite(dl)


def test_adversarial_run_checkpoints_and_resumes_its_discriminators(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        sf.write(str(data / f"s{i}.flac"), tone(24000, 1.5, seed=i), 24000)
    opts = {"steps": 2, "batch": 2, "threads": 1, "adv_weight": 0.5, "adv_start": 1, "complex_weight": 1.0,
            "disc_width": 4, "val_every": 1000, "val_files": 1, "out": str(tmp_path / "run")}
    ckpt = train(make_config("audio-rvq", [data], **opts))
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 2 and "module:disc" in state and "disc" in state
    first = {k: v.clone() for k, v in state["module:disc"].items()}
    ckpt = train(make_config("audio-rvq", [data], **{**opts, "steps": 3}))  # resumes
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3
    changed = [k for k in first if not torch.equal(first[k], state["module:disc"][k])]
    assert changed, "the discriminators did not train after the resume"
