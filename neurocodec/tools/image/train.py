"""Training for the image codecs: random crops and flips, Adam, the entropy bottleneck's
auxiliary loss, per-image λ sampling (variable rate), periodic atomic checkpoints that hold
the config dataclass, resume, a tqdm bar and a log file."""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from neurocodec.runtime.registry import build_model
from neurocodec.runtime.torch_utils import restore, save_checkpoint, start_run
from neurocodec.runtime.image.io import list_images, read_image
from neurocodec.runtime.image.models import ImageCodecModel, ImageModelConfig

log = logging.getLogger("neurocodec.train")


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/image"
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
    threads: int = 0
    fixed_quality: int = -1  # >= 0: train one quality only (e.g. to measure the variable-rate cost)
    init: str = ""  # start from this checkpoint's weights (fresh optimiser and step count)
    model: dict = field(default_factory=dict)


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
    out = model(x, q)
    n_px = x.shape[2] * x.shape[3]
    bits = sum(lik.clamp_min(1e-9).log2().neg().flatten(1).sum(1) for lik in out["likelihoods"].values())
    bpp = bits / n_px  # [B]
    mse = (out["x_hat"] - x).pow(2).flatten(1).mean(1)  # [B]
    lmbda = torch.tensor(model.cfg.lmbdas, device=x.device)[q]
    loss = (lmbda * 255**2 * mse + bpp).mean()
    return loss, {"bpp": bpp.detach(), "mse": mse.detach()}


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    device, ckpt_path, state, init_state = start_run(cfg.out, cfg.threads, cfg.device, resume, cfg.init)
    if state or init_state:
        cfg.model = (state or init_state)["config"]["model"]
    mcfg = ImageModelConfig.from_dict(cfg.model)
    cfg.model = mcfg.to_dict()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + (state["step"] if state else 0))

    paths = list_images(cfg.data)
    n_val = max(1, int(len(paths) * cfg.val_fraction))
    val_paths, train_paths = paths[::len(paths) // n_val][:n_val], None
    train_paths = [p for p in paths if p not in val_paths]
    sampler = CropSampler(train_paths, cfg.crop, rng)
    val = CropSampler(val_paths, cfg.crop, np.random.default_rng(1234)).batch(len(val_paths) * 2)

    model = build_model(mcfg.arch, mcfg.to_dict()).to(device)
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    step, elapsed = restore(model, {"opt": opt, "aux_opt": aux_opt}, state, init_state)
    log.info("config %s", json.dumps(asdict(cfg)))
    log.info("device %s, threads %d, %d train / %d val images", device, torch.get_num_threads(),
             len(sampler.images), len(val_paths))

    def snapshot() -> dict:
        return {"config": {"train": asdict(cfg), "model": mcfg.to_dict()}, "model": model.state_dict(),
                "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(), "step": step, "elapsed": elapsed}

    Q = mcfg.qualities
    t0, last_ckpt = time.time() - elapsed, time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {mcfg.arch}", dynamic_ncols=True)
    ema = None
    while step < cfg.steps:
        elapsed = time.time() - t0
        frac = max(step / cfg.steps, elapsed / (cfg.time_budget_min * 60) if cfg.time_budget_min else 0)
        if frac >= 1.0:
            break
        lr = cfg.lr * (0.25 if frac >= cfg.lr_drop_at else 1.0)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        x = sampler.batch(cfg.batch).to(device)
        q = (torch.full((cfg.batch,), cfg.fixed_quality, device=device) if cfg.fixed_quality >= 0
             else torch.randint(0, Q, (cfg.batch,), device=device))
        loss, stats = rd_loss(model, x, q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(main_params, cfg.clip)
        opt.step()
        aux = model.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.3f}", bpp=f"{stats['bpp'].mean():.3f}", lr=f"{lr:.0e}")
        if step % 50 == 0:
            log.info("step %d loss %.4f ema %.4f bpp %.4f mse %.6f aux %.1f lr %.1e", step, loss.item(), ema,
                     stats["bpp"].mean(), stats["mse"].mean(), aux.item(), lr)
        if step % cfg.val_every == 0:
            log.info("val step %d %s", step, json.dumps(validate(model, val, device)))
        if time.time() - last_ckpt > cfg.ckpt_every_min * 60:
            elapsed = time.time() - t0
            save_checkpoint(ckpt_path, snapshot())
            last_ckpt = time.time()
    bar.close()
    elapsed = time.time() - t0
    save_checkpoint(ckpt_path, snapshot())
    log.info("done: step %d, %.1f min; val %s", step, elapsed / 60, json.dumps(validate(model, val, device)))
    return ckpt_path


@torch.no_grad()
def validate(model: ImageCodecModel, val: torch.Tensor, device: torch.device) -> dict:
    """Per quality: bpp and PSNR of the noisy-relaxed model on held-out crops."""
    model.eval()
    res = {}
    for q in range(model.cfg.qualities):
        bpps, mses = [], []
        for i in range(0, len(val), 8):
            x = val[i:i + 8].to(device)
            _, s = rd_loss(model, x, torch.full((len(x),), q, device=device))
            bpps.append(s["bpp"])
            mses.append(s["mse"])
        mse = torch.cat(mses).mean().item()
        res[q] = {"bpp": round(torch.cat(bpps).mean().item(), 4), "psnr": round(-10 * math.log10(max(mse, 1e-12)), 2)}
    model.train()
    return res
