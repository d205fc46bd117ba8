"""A tiny randomly initialised image codec folder for fast tests (no shipped weights needed)."""
from __future__ import annotations

from pathlib import Path

TINY_ID = 900
TINY_LMBDAS = [0.004, 0.016, 0.064]


def make_tiny_codec(root: Path, qualities: int = len(TINY_LMBDAS)) -> Path:
    """Export a random N=16/M=24 hyperprior to root/tiny as codec "tiny-test" (id 900)."""
    import torch

    from neurocodec.runtime.image.models import ImageCodecModel, ImageModelConfig
    from neurocodec.tools.image.export import export

    torch.manual_seed(0)
    cfg = ImageModelConfig(arch="hyperprior", N=16, M=24, lmbdas=TINY_LMBDAS[:qualities])
    model = ImageCodecModel(cfg)
    ckpt = root / "ckpt.pt"
    torch.save({"config": {"model": cfg.to_dict(), "train": {}}, "model": model.state_dict(),
                "step": 0, "elapsed": 0.0}, ckpt)
    return export(ckpt, root / "tiny", "tiny-test", TINY_ID)


TINY_AUDIO_ID = 901
TINY_AUDIO_MODEL = {"patch": 4, "channels": 4, "strides": [2, 5, 8], "dilations": [1], "latent_dim": 16,
                    "n_codebooks": 4, "codebook_size": 64, "codebook_dim": 4}


def tone(sr: int, seconds: float, channels: int = 1, seed: int = 0):
    """A chirp plus noise, float32 [T] (mono) or [T, C]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)[:, None] + 0.02 * rng.standard_normal((len(t), channels))
    x = x.astype(np.float32)
    return x[:, 0] if channels == 1 else x


def make_tiny_audio_codec(root: Path) -> Path:
    """Export a random tiny audio-rvq (hop 320, 4 codebooks of 64: 1.875 kbps at most) to
    root/tiny-audio as codec "tiny-audio" (id 901), priors fitted on synthetic clips."""
    import soundfile as sf
    import torch

    from neurocodec.runtime.audio.models import AudioCodecModel, AudioModelConfig
    from neurocodec.tools.audio.export import export

    torch.manual_seed(0)
    cfg = AudioModelConfig(**TINY_AUDIO_MODEL)
    model = AudioCodecModel(cfg)
    ckpt = root / "audio_ckpt.pt"
    torch.save({"config": {"model": {"arch": "audio-rvq", **cfg.to_dict()}, "train": {}},
                "model": model.state_dict(), "step": 0, "elapsed": 0.0}, ckpt)
    data = root / "prior_data"
    data.mkdir(exist_ok=True)
    for i in range(3):
        sf.write(str(data / f"clip{i}.wav"), tone(16000, 2.0, seed=i), 16000)
    return export(ckpt, root / "tiny-audio", "tiny-audio", TINY_AUDIO_ID, [str(data)], default_kbps=1.5)
