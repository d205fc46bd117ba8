"""A tiny randomly initialised image codec folder for fast tests (no shipped weights needed)."""
from __future__ import annotations

from pathlib import Path

TINY_ID = 900
TINY_LMBDAS = [0.004, 0.016, 0.064]


def make_tiny_codec(root: Path, qualities: int = len(TINY_LMBDAS)) -> Path:
    """Export a random N=16/M=24 hyperprior to root/tiny as codec "tiny-test" (id 900)."""
    import torch

    from neurocodec.image.export import export
    from neurocodec.image.models import ImageCodecModel, ImageModelConfig

    torch.manual_seed(0)
    cfg = ImageModelConfig(arch="hyperprior", N=16, M=24, lmbdas=TINY_LMBDAS[:qualities])
    model = ImageCodecModel(cfg)
    ckpt = root / "ckpt.pt"
    torch.save({"config": {"model": cfg.to_dict(), "train": {}}, "model": model.state_dict(),
                "step": 0, "elapsed": 0.0}, ckpt)
    return export(ckpt, root / "tiny", "tiny-test", TINY_ID)
