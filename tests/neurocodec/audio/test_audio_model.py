"""Audio codec groundwork: model shapes, RVQ behaviour, losses, config and registry. Tiny
configs on one thread, so the file runs in seconds."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from neurocodec.runtime.audio.models import AudioCodecModel, AudioModelConfig
from neurocodec.runtime.audio.rvq import ResidualVectorQuantizer
from neurocodec.runtime.registry import build_model, model_names
from neurocodec.tools.audio import losses

TINY = {"channels": 4, "strides": (2, 2), "latent_dim": 8, "n_codebooks": 4, "codebook_size": 16,
        "codebook_dim": 4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(**kw) -> AudioCodecModel:
    return AudioCodecModel(AudioModelConfig(**{**TINY, **kw}))


def signal(B: int, T: int, sr: int = 24000, seed: int = 0) -> torch.Tensor:
    """Two tones and some noise, [B, 1, T]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / sr
    f = 200 + 300 * torch.rand(B, 1, 1, generator=g)
    x = 0.4 * torch.sin(2 * math.pi * f * t) + 0.2 * torch.sin(2 * math.pi * 3.1 * f * t)
    return x + 0.02 * torch.randn(B, 1, T, generator=g)


def fit(q: ResidualVectorQuantizer, z: torch.Tensor, steps: int) -> None:
    """A short fit of the quantizer alone to z, with the DAC loss weights."""
    opt = torch.optim.Adam(q.parameters(), lr=1e-2)
    q.train()
    for _ in range(steps):
        out = q(z)
        loss = (out["z_q"] - z).pow(2).mean() + 0.25 * out["commit_loss"] + out["codebook_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_config_rates_and_dict():
    cfg = AudioModelConfig()
    assert (cfg.hop_length, cfg.frame_rate) == (320, 75.0)
    assert (cfg.kbps(8), cfg.kbps(4), cfg.kbps(2), cfg.kbps()) == (6.0, 3.0, 1.5, 6.0)
    d = cfg.to_dict()
    d["strides"] = list(d["strides"])  # as JSON returns it
    assert AudioModelConfig.from_dict({**d, "unknown": 1}) == cfg
    with pytest.raises(ValueError):
        AudioModelConfig(activation="relu")


@pytest.mark.parametrize("activation", ["snake", "elu"])
def test_shapes_and_frame_counts(activation):
    m = tiny_model(activation=activation).eval()
    for T in (64, 66):  # a multiple of the hop (4), and not
        out = m(signal(2, T))
        F = math.ceil(T / 4)
        assert out["x_hat"].shape == (2, 1, T)
        assert out["z"].shape == (2, 8, F)
        assert out["codes"].shape == (2, 4, F) and out["codes"].dtype == torch.int64
        assert out["commit_loss"].shape == () and out["codebook_loss"].shape == ()
    assert m.encoder(signal(1, 64)).shape[-1] == 16  # exactly T / hop without padding


def test_default_config_frames():
    m = AudioCodecModel(AudioModelConfig()).eval()  # strides 2, 4, 5 (odd), 8
    with torch.no_grad():
        codes = m.encode(signal(1, 640))
        assert codes.shape == (1, 8, 2)
        assert m.decode(codes).shape == (1, 1, 640)
        assert m.encode(signal(1, 640), n_q=2).shape == (1, 2, 2)


def test_encode_decode_matches_forward():
    m = tiny_model().eval()
    x = signal(2, 64)
    with torch.no_grad():
        for n_q in (1, 3, 4):
            out = m(x, n_q=n_q)
            codes = m.encode(x, n_q=n_q)
            assert torch.equal(codes, out["codes"])
            assert torch.allclose(m.decode(codes), out["x_hat"], atol=1e-6)


def test_rvq_error_non_increasing_in_n_q():
    # At random initialisation extra stages can add error; what RVQ training (with quantizer
    # dropout training every prefix) buys is that every stage refines the previous ones.
    q = ResidualVectorQuantizer(8, n_codebooks=4, codebook_size=16, codebook_dim=4)
    z = torch.randn(4, 8, 32)  # a fixed random latent [B, D, F]
    fit(q, z, 100)
    q.eval()
    with torch.no_grad():
        errs = [z.pow(2).mean().item()]
        errs += [(q.decode(q.encode(z, n)) - z).pow(2).mean().item() for n in range(1, 5)]
    assert all(b <= a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.5 * errs[0], errs


def test_straight_through_gradients_reach_encoder():
    m = tiny_model().train()
    x = signal(2, 64)
    out = m(x, n_q=4)
    (out["x_hat"] - x).pow(2).mean().backward()  # reconstruction only: no commitment loss
    stem = m.encoder[0].parametrizations.weight
    for g in (stem.original0.grad, stem.original1.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert m.quantizer.quantizers[0].in_proj.parametrizations.weight.original1.grad.abs().sum() > 0


def test_quantizer_dropout():
    m = tiny_model().train()
    x = signal(32, 16)
    out = m(x)
    n = out["n_q"]
    assert (n < 4).any() and (n == 4).any() and n.min() >= 1
    used = out["codes"] >= 0  # [B, max n_q, F]
    assert torch.equal(used.all(-1).sum(1), n) and torch.equal(used.any(-1).sum(1), n)
    m.eval()
    out = m(x)
    assert (out["n_q"] == 4).all() and (out["codes"] >= 0).all()
    assert torch.equal(m.train()(x, n_q=2)["n_q"], torch.full((32,), 2))  # explicit n_q: no dropout


def test_dead_code_restart():
    q = ResidualVectorQuantizer(8, n_codebooks=2, codebook_size=16, codebook_dim=4)
    with torch.no_grad():
        q.quantizers[0].codebook[:] = torch.randn(4)  # collapsed: the lookup always picks code 0
    z = torch.randn(4, 8, 32)
    q.train()
    q(z, n_q=2)  # usage statistics and restart candidates
    before = q.encode(z)[:, 0].unique()
    _bits0, frac0 = q.usage_entropy()
    assert before.tolist() == [0] and frac0[0] == 0
    restarted = q.restart_dead_codes(threshold=0.1)
    assert restarted[0] == 15
    after = q.encode(z)[:, 0]
    assert len(after.unique()) > 8  # most restarted codes win some frames
    hist = torch.bincount(after.reshape(-1), minlength=16).float()
    p = hist / hist.sum()
    assert -(p[p > 0] * p[p > 0].log2()).sum() / 4 > 0.7  # entropy fraction of the fresh codes
    q(z, n_q=2)
    assert q.usage_entropy()[1][0] > 0.5


def test_losses_zero_for_identical_positive_otherwise():
    x = signal(2, 4096)
    y = (x + 0.05 * torch.randn_like(x)).requires_grad_()
    for loss in (losses.MultiScaleMelLoss(), losses.MultiResolutionSTFTLoss(), losses.waveform_l1):
        assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
        v = loss(y, x)
        assert torch.isfinite(v) and v.item() > 0
        (g,) = torch.autograd.grad(v, y)
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_mel_filterbank_triangles_cover_band():
    sr, n_fft, n_mels, fmin, fmax = 24000, 512, 40, 50.0, 11000.0
    fb = losses.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and (fb >= 0).all()
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1)
    peaks = fb.argmax(1)
    assert (peaks.diff() >= 0).all()  # centres rise with the row index
    for row, k in zip(fb, peaks):  # one triangle: rises to its peak, then falls, zero outside
        nz = row.nonzero().squeeze(1)
        assert len(nz) > 0 and torch.equal(nz, torch.arange(int(nz[0]), int(nz[-1]) + 1))
        assert (row[: k + 1].diff() >= 0).all() and (row[k:].diff() <= 0).all()
    inside = (freqs > fmin) & (freqs < fmax)
    assert (fb.sum(0)[inside] > 0).all() and (fb.sum(0)[~inside] == 0).all()
    # Without area normalisation the triangles form a partition of unity between the outer peaks.
    raw = losses.mel_filterbank(sr, n_fft, n_mels, fmin, fmax, norm=None)
    mid = (freqs >= freqs[peaks[0]]) & (freqs <= freqs[peaks[-1]])
    assert torch.allclose(raw.sum(0)[mid], torch.ones(int(mid.sum())), atol=1e-5)
    # Slaney normalisation: unit area in Hz, so 2 / (bandwidth) times the raw triangle.
    edges = losses.mel_to_hz(torch.linspace(*losses.hz_to_mel(torch.tensor([fmin, fmax])).tolist(), n_mels + 2))
    assert torch.allclose(fb, raw * (2 / (edges[2:] - edges[:-2]))[:, None], rtol=1e-4)


def test_mel_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels in ((24000, 2048, 320), (24000, 512, 80), (16000, 400, 40)):
        want = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
        got = losses.mel_filterbank(sr, n_fft, n_mels).numpy()
        assert abs(got - want).max() < 1e-5 * max(1.0, abs(want).max())


def test_registered_as_audio_rvq():
    import neurocodec.runtime.audio.models  # noqa: F401  (registry._import_models imports image models only)
    assert "audio-rvq" in model_names()
    m = build_model("audio-rvq", {**TINY, "strides": [2, 2], "activation": "elu"})
    assert isinstance(m, AudioCodecModel) and m.cfg.strides == (2, 2) and m.cfg.activation == "elu"


def test_neg_si_sdr_is_scale_invariant_and_ignores_silent_references():
    from neurocodec.tools.audio.losses import neg_si_sdr

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 4000, generator=g)
    noisy = x + 0.1 * torch.randn(2, 1, 4000, generator=g)
    assert neg_si_sdr(noisy, x).item() == pytest.approx(-20, abs=0.5)
    assert neg_si_sdr(3 * noisy, x).item() == pytest.approx(neg_si_sdr(noisy, x).item(), abs=1e-3)
    silent = torch.zeros(1, 1, 4000)
    both = neg_si_sdr(torch.cat([noisy[:1], torch.randn(1, 1, 4000, generator=g)]), torch.cat([x[:1], silent]))
    assert both.item() == pytest.approx(neg_si_sdr(noisy[:1], x[:1]).item(), abs=1e-4)
    y = torch.randn(2, 1, 4000, requires_grad=True)
    neg_si_sdr(y, x).backward()
    assert torch.isfinite(y.grad).all()
