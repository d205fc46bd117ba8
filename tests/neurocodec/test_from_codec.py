"""Training checkpoints made from codecs (neurocodec.tools.from_codec): the training model they
give computes what the codec's model computes (image: its likelihood-based rate and distortion
match the codec's real encode; audio: the weight-norm model's output equals the folded one's),
they load with load_checkpoint, and `--init` starts training from them."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurocodec.runtime.registry import build_model, load_codec  # noqa: E402
from neurocodec.tools.checkpoints import load_checkpoint  # noqa: E402
from neurocodec.tools.from_codec import (  # noqa: E402
    TABLE_BUFFERS,
    assign_folded,
    checkpoint_from_codec,
    main,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Gradients, an edge and texture: something a codec treats like a photo (uint8 [h, w, 3])."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 80 * np.sin(xx / (7 + c) + yy / (11 + 2 * c)) for c in range(3)], axis=2)
    img[h // 3:, : w // 2] *= 0.5
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def tone(seconds: float, sr: int = 24000, seed: int = 0) -> torch.Tensor:
    """A chirp plus noise, [1, 1, T]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.02 * rng.standard_normal(len(t))
    return torch.from_numpy(x.astype(np.float32))[None, None]


def training_model(ck: dict) -> torch.nn.Module:
    model = build_model(ck["config"]["model"]["arch"], ck["config"]["model"])
    model.load_state_dict(ck["model"])  # strict: the keys and shapes of a training model
    return model.eval()


# ---- image --------------------------------------------------------------------------------------

def test_image_checkpoint_is_the_codec_model(tiny_image_codec):
    ck = checkpoint_from_codec(tiny_image_codec)
    assert set(ck) >= {"config", "model", "step", "elapsed"} and ck["from_codec"]["id"] == 900
    assert ck["config"]["model"]["arch"] == "hyperprior" and isinstance(ck["config"]["train"], dict)
    codec = load_codec(tiny_image_codec)
    src = codec.model.state_dict()
    for k, v in ck["model"].items():
        if k.rsplit(".", 1)[-1] in TABLE_BUFFERS:
            assert v.numel() == 0, k  # a training model's tables are empty (export fills them)
        else:
            assert v.dtype == src[k].dtype and torch.equal(v, src[k]), k
            assert not v.is_floating_point() or v.dtype == torch.float32
    model = training_model(ck)
    x = torch.from_numpy(natural_image(64, 64)).permute(2, 0, 1)[None].float() / 255
    q = torch.tensor([1])
    with torch.no_grad():
        assert torch.equal(model(x, q)["x_hat"], codec.model(x, q)["x_hat"])


def likelihood_rd(model, img: np.ndarray, q: int) -> tuple[float, float]:
    """(bpp, PSNR) of the eval-mode training model: likelihoods and rounded latents."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model(x, torch.tensor([q]))
    bits = sum(-lik.clamp_min(1e-9).log2().sum().item() for lik in out["likelihoods"].values())
    mse = (out["x_hat"].clamp(0, 1) * 255 - x * 255).pow(2).mean().item()
    return bits / (img.shape[0] * img.shape[1]), 10 * math.log10(255**2 / mse)


@pytest.mark.shipped_codecs
@pytest.mark.parametrize("name", ["hyperprior", "shallow"])
def test_shipped_image_checkpoint_matches_the_real_encode(name):
    codec = load_codec(name)
    model = training_model(checkpoint_from_codec(name))
    img = natural_image(192, 256, seed=1)
    for q in (1, 4):
        data = codec.encode(img, quality=q)
        rec = codec.decode(data).astype(np.float64)
        bpp_real = len(data) * 8 / (img.shape[0] * img.shape[1])
        psnr_real = 10 * math.log10(255**2 / np.mean((rec - img) ** 2))
        bpp, psnr = likelihood_rd(model, img, q)
        # the file is a little larger than the likelihoods say (header, quantised CDFs): 2-3 %
        assert 0 <= bpp_real - bpp < 0.005 + 0.04 * bpp_real, (q, bpp, bpp_real)
        assert abs(psnr - psnr_real) < 0.05, (q, psnr, psnr_real)


# ---- audio --------------------------------------------------------------------------------------

def outputs(model, x: torch.Tensor, n_q: int) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x, n_q)["x_hat"]


def test_audio_checkpoint_computes_what_the_codec_computes(tiny_audio_codec):
    ck = checkpoint_from_codec(tiny_audio_codec)
    assert any(".parametrizations.weight.original1" in k for k in ck["model"])  # weight norm, unfolded
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())
    codec = load_codec(tiny_audio_codec)
    x = tone(0.5)
    for n_q in (1, 4):
        torch.testing.assert_close(outputs(training_model(ck), x, n_q), outputs(codec.model, x, n_q),
                                   rtol=1e-5, atol=1e-6)


def test_folded_weights_go_through_the_parametrization(tiny_audio_codec):
    """A folded model (plain weights) loads into a weight-norm model: g = |w|, v = w."""
    codec = load_codec(tiny_audio_codec)
    ck = checkpoint_from_codec(tiny_audio_codec)
    model = build_model("audio-rvq", ck["config"]["model"])
    assign_folded(model, codec.model)
    conv = model.encoder[0]
    w = codec.model.encoder[0].weight
    assert torch.equal(conv.parametrizations.weight.original1, w)
    torch.testing.assert_close(conv.parametrizations.weight.original0, w.norm(dim=(1, 2), keepdim=True))
    x = tone(0.5, seed=2)
    torch.testing.assert_close(outputs(model, x, 4), outputs(codec.model, x, 4), rtol=1e-5, atol=1e-6)
    # the same function as the exported (g, v) the checkpoint holds
    torch.testing.assert_close(outputs(model, x, 2), outputs(training_model(ck), x, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.shipped_codecs
def test_shipped_audio_checkpoint_computes_what_the_codec_computes():
    ck = checkpoint_from_codec("audio-rvq")
    codec = load_codec("audio-rvq")
    x = tone(0.4, seed=1)
    torch.testing.assert_close(outputs(training_model(ck), x, 8), outputs(codec.model, x, 8),
                               rtol=1e-4, atol=1e-5)


# ---- the file and --init ------------------------------------------------------------------------

def test_cli_writes_a_loadable_checkpoint(tiny_image_codec, tmp_path, capsys):
    out = tmp_path / "init.pt"
    assert main([tiny_image_codec, str(out)]) == 0
    state = load_checkpoint(out)
    assert state["config"]["model"]["arch"] == "hyperprior" and state["from_codec"]["name"] == "tiny-test"
    assert main([tiny_image_codec, str(out)]) == 1  # never over an existing file...
    assert "exists" in capsys.readouterr().err
    assert main([tiny_image_codec, str(out), "--force"]) == 0  # ...unless asked
    assert main(["no-such-codec", str(tmp_path / "x.pt")]) == 1
    assert not (tmp_path / "x.pt").exists()


def test_init_starts_image_training_from_the_codec(tiny_image_codec, tmp_path):
    from PIL import Image

    from neurocodec.tools.image.train import make_config, train

    init = tmp_path / "init.pt"
    assert main([tiny_image_codec, str(init)]) == 0
    data = tmp_path / "images"
    data.mkdir()
    for i in range(3):
        Image.fromarray(natural_image(72, 80, seed=i)).save(data / f"{i}.png")
    cfg = make_config("hyperprior", [str(data)], out=str(tmp_path / "run"), init=str(init), steps=0,
                      crop=64, batch=2, device="cpu", threads=1)
    got = load_checkpoint(train(cfg))
    want = load_checkpoint(init)
    assert got["config"]["model"] == want["config"]["model"]
    assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items())


def test_init_starts_audio_training_from_the_codec(tiny_audio_codec, tmp_path):
    import soundfile as sf

    from neurocodec.tools.audio.train import make_config, train

    init = tmp_path / "init.pt"
    assert main([tiny_audio_codec, str(init)]) == 0
    data = tmp_path / "speech"
    data.mkdir()
    for i in range(3):
        sf.write(str(data / f"{i}.wav"), tone(1.0, seed=i)[0, 0].numpy(), 24000)
    cfg = make_config("audio-rvq", [str(data)], out=str(tmp_path / "run"), init=str(init), steps=0,
                      batch=2, device="cpu", threads=1)
    got = load_checkpoint(train(cfg))
    want = load_checkpoint(init)
    assert got["config"]["model"]["n_codebooks"] == 4  # the codec's model, not the default one
    assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items())


def test_exporting_the_checkpoint_gives_the_codec_back(tiny_image_codec, tmp_path):
    """codec -> checkpoint -> export: the same tensors (float16 weights, integer h_s, gains,
    CDF tables), so a codec that training did not improve can ship again unchanged."""
    import weightzip
    from neurocodec.tools.image.export import export

    assert main([tiny_image_codec, str(tmp_path / "ck.pt")]) == 0
    folder = export(tmp_path / "ck.pt", tmp_path / "again", "tiny-test", 900)
    want = weightzip.load(f"{tiny_image_codec}/weights.wz", framework="numpy")
    got = weightzip.load(folder / "weights.wz", framework="numpy")
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k
