"""Training for the image codecs: random crops and flips, Adam, the entropy bottleneck's
auxiliary loss, per-image λ sampling (variable rate) and a step learning-rate drop, on the
shared loop of neurocodec.tools.trainer (checkpoints, resume, progress bar, log file)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neurocodec.runtime.image.io import list_images, read_image
from neurocodec.runtime.image.models import ImageCodecModel, ImageModelConfig
from neurocodec.runtime.registry import build_model
from neurocodec.tools.trainer import Run, TrainTask, fit, open_run, split_options

KIND = "image"
ARCHS = ("hyperprior", "shallow")  # the registered image model names


@dataclass
class TrainConfig:
    data: str = ""  # one folder of images
    out: str = ""  # run folder; "" = runs/<arch>
    steps: int = 100_000
    time_budget_min: float = 0.0  # stop (and checkpoint) after this many minutes; 0 = none
    batch: int = 8
    crop: int = 256
    lr: float = 1e-4
    lr_drop_at: float = 0.85  # fraction of the run after which lr /= 4
    aux_lr: float = 1e-3
    clip: float = 1.0
    ckpt_every_min: float = 5.0
    val_every: int = 500
    val_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0 = torch's default
    fixed_quality: int = -1  # >= 0: train one quality only (e.g. to measure the variable-rate cost)
    init: str = ""  # start from this checkpoint's weights (fresh optimiser and step count)
    model: dict = field(default_factory=dict)  # ImageModelConfig fields; missing ones take its defaults


def make_config(arch: str, data: list[str], **opts) -> TrainConfig:
    """A TrainConfig from CLI-style options: TrainConfig fields, or ImageModelConfig fields
    (lmbdas, N, M, shallow_channels) for the model; None = the default."""
    if arch not in ARCHS:
        raise ValueError(f"{arch!r} is not an image model (image models: {', '.join(ARCHS)})")
    data = [data] if isinstance(data, (str, Path)) else list(data)
    if len(data) != 1:
        raise ValueError(f"image training takes one data folder, not {len(data)}")
    train, model = split_options(KIND, TrainConfig, ImageModelConfig, {"arch": arch}, opts)
    cfg = TrainConfig(data=str(data[0]), model=ImageModelConfig.from_dict(model).to_dict(), **train)
    cfg.out = cfg.out or f"runs/{arch}"
    return cfg


class CropSampler:
    """All training images decoded once into memory (uint8); random crops and flips."""

    def __init__(self, paths: list[Path], crop: int, rng: np.random.Generator):
        self.images = []
        for p in paths:
            img = read_image(p, warn_lost=False)[0]  # [H, W, 3] uint8, upright; alpha etc. dropped quietly
            if min(img.shape[:2]) >= crop:
                self.images.append(img)
        if not self.images:
            raise ValueError(f"no training image is at least {crop}x{crop}")
        self.crop, self.rng = crop, rng

    def batch(self, n: int) -> torch.Tensor:
        out = np.empty((n, self.crop, self.crop, 3), np.uint8)
        for i in range(n):
            img = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(img.shape[0] - self.crop + 1)
            x = self.rng.integers(img.shape[1] - self.crop + 1)
            c = img[y:y + self.crop, x:x + self.crop]
            if self.rng.random() < 0.5:
                c = c[:, ::-1]
            if self.rng.random() < 0.5:
                c = c[::-1]
            out[i] = c
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)  # [B, 3, c, c]


def rd_loss(model: ImageCodecModel, x: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mean of λ_q·255²·MSE + bpp over the batch; x [B, 3, H, W] in 0..1, q [B] quality indices."""
    out = model(x, q)
    n_px = x.shape[2] * x.shape[3]
    bits = sum(lik.clamp_min(1e-9).log2().neg().flatten(1).sum(1) for lik in out["likelihoods"].values())
    bpp = bits / n_px  # [B]
    mse = (out["x_hat"] - x).pow(2).flatten(1).mean(1)  # [B]
    lmbda = torch.tensor(model.cfg.lmbdas, device=x.device)[q]  # [B]
    loss = (lmbda * 255**2 * mse + bpp).mean()
    return loss, {"bpp": bpp.detach(), "mse": mse.detach()}


class ImageTask(TrainTask):
    shown = ("bpp",)

    def __init__(self, cfg: TrainConfig, run: Run):
        self.cfg, self.device = cfg, run.device
        self.mcfg = ImageModelConfig.from_dict(cfg.model)
        cfg.model = self.mcfg.to_dict()
        self.desc = f"train {self.mcfg.arch}"
        self.rng = np.random.default_rng(run.seed)

        paths = list_images(cfg.data)
        n_val = max(1, int(len(paths) * cfg.val_fraction))
        val_paths = paths[::len(paths) // n_val][:n_val]
        self.sampler = CropSampler([p for p in paths if p not in val_paths], cfg.crop, self.rng)
        self.n_val = len(val_paths)
        val = CropSampler(val_paths, cfg.crop, np.random.default_rng(1234))
        self.val = val.batch(2 * self.n_val)  # [2 n_val, 3, c, c]

        self.model = build_model(self.mcfg.arch, cfg.model).to(run.device)
        aux = [p for n, p in self.model.named_parameters() if n.endswith(".quantiles")]
        main = [p for n, p in self.model.named_parameters() if not n.endswith(".quantiles")]
        self.optimizers = {"opt": torch.optim.Adam(main, lr=cfg.lr),
                           "aux_opt": torch.optim.Adam(aux, lr=cfg.aux_lr)}

    def describe(self) -> str:
        return f"{len(self.sampler.images)} train / {self.n_val} val images"

    def lr_at(self, frac: float) -> float:
        return self.cfg.lr * (0.25 if frac >= self.cfg.lr_drop_at else 1.0)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n, q = self.cfg.batch, self.cfg.fixed_quality
        x = self.sampler.batch(n).to(self.device)  # [B, 3, c, c]
        q = (torch.full((n,), q, device=self.device) if q >= 0
             else torch.randint(0, self.mcfg.qualities, (n,), device=self.device))  # [B]
        return x, q

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return rd_loss(self.model, *batch)

    def after_step(self, step: int) -> dict:
        """One step of the entropy bottleneck's auxiliary loss (fits its quantiles)."""
        aux, opt = self.model.aux_loss(), self.optimizers["aux_opt"]
        opt.zero_grad(set_to_none=True)
        aux.backward()
        opt.step()
        return {"aux": aux.detach()}

    def validate(self) -> dict:
        """Per quality: bpp and PSNR of the noisy-relaxed model on held-out crops."""
        res = {}
        for q in range(self.mcfg.qualities):
            bpps, mses = [], []
            for i in range(0, len(self.val), 8):
                x = self.val[i:i + 8].to(self.device)  # [b, 3, c, c]
                _, s = rd_loss(self.model, x, torch.full((len(x),), q, device=self.device))
                bpps.append(s["bpp"])
                mses.append(s["mse"])
            mse = torch.cat(mses).mean().item()
            res[q] = {"bpp": round(torch.cat(bpps).mean().item(), 4),
                      "psnr": round(-10 * math.log10(max(mse, 1e-12)), 2)}
        return res


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    """Train (or resume) the run in cfg.out; returns its checkpoint."""
    cfg.out = cfg.out or f"runs/{ImageModelConfig.from_dict(cfg.model).arch}"
    run = open_run(cfg, resume)
    return fit(ImageTask(cfg, run), run)
