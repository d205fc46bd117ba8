"""Training for the image codecs: random crops and flips, Adam, the entropy bottleneck's
auxiliary loss, per-image λ sampling (variable rate) and a step learning-rate drop, on the
shared loop of neurocodec.tools.trainer (checkpoints, resume, progress bar, log file).

Speed (bench/train_speed.py, results in bench/results/train_speed.md): the convolutional
transforms (g_a, h_a, h_s, g_s) run under bfloat16 autocast where the device computes bf16
natively, with the entropy models, the gains, the loss, the weights and the optimisers in
float32 (precision "auto"); activations and conv weights are channels_last; Adam is fused.
Measured on a Zen 4 CPU (AVX512-BF16), one thread: 1.7-2.1x the fp32 steps per second (the
shipped hyperprior 128/192: 2.1x), the same rate-distortion per step, so better RD at equal
wall time. Checkpoints hold float32, contiguous weights whatever the settings, so runs
resume and export across them."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neurocodec.runtime.image.io import list_images, read_image
from neurocodec.runtime.image.models import ImageCodecModel, ImageModelConfig
from neurocodec.runtime.precision import bf16_native
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
    val_fraction: float = 0.05  # held out of data when val_data is not given
    val_data: str = ""  # a folder of validation images (e.g. a training pack's val/, split by photo)
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0 = torch's default
    fixed_quality: int = -1  # >= 0: train one quality only (e.g. to measure the variable-rate cost)
    init: str = ""  # start from this checkpoint's weights (fresh optimiser and step count)
    # Speed settings (bench/results/train_speed.md); none changes what a checkpoint holds.
    # "auto": bf16 where the device computes it natively (CPUs with AVX512-BF16/AMX, CUDA GPUs
    # with bf16), else fp32. "bf16": autocast of the transforms only (entropy models and loss
    # stay fp32): 1.4-1.9x fp32's speed on a Zen 4 CPU. "fp32": no autocast.
    precision: str = "auto"
    channels_last: bool = True  # activations and conv weights in NHWC: +14-20% with bf16 on CPU, +0-7% with fp32
    # torch.compile of the training forward + loss: +6-11% per step on CPU, after 15-100 s of
    # compiling per process (needs a C++ compiler); worth it for runs of hours
    compile: bool = False
    model: dict = field(default_factory=dict)  # ImageModelConfig fields; missing ones take its defaults

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision: bad value {self.precision!r} (one of {', '.join(PRECISIONS)})")
        for key in ("channels_last", "compile"):
            setattr(self, key, _flag(key, getattr(self, key)))


PRECISIONS = ("auto", "bf16", "fp32")


def _flag(key: str, value) -> bool:
    """A bool field from a bool, 0/1 or a CLI-style string (true/false, yes/no, on/off, 1/0)."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off"):
            return False
    elif isinstance(value, (bool, int)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"--{key.replace('_', '-')}: bad value {value!r} (true or false)")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the transforms for a TrainConfig.precision on device (None: fp32)."""
    if precision == "auto":
        precision = "bf16" if bf16_native(device) else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


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


TRANSFORMS = ("g_a", "h_a", "h_s", "g_s")  # the convolutional parts of ImageCodecModel


def autocast_transforms(model: ImageCodecModel, dtype: torch.dtype, device_type: str) -> None:
    """Run the model's transforms (g_a, h_a, h_s, g_s) under autocast to dtype when in
    training mode, their outputs cast back to float32: the entropy bottleneck (its matmuls and
    sigmoids would lose the likelihoods' precision in bf16, and its noise would be added to a
    bf16 z), the Gaussian conditional, the gains and the loss stay fp32, and so do the weights
    (autocast casts them per op). In eval mode (validation) the transforms run in fp32, as
    the exported codec does. The forward of each transform is wrapped in place (an instance
    attribute), so the model's own forward runs unchanged around it (nothing here restates
    ImageCodecModel.forward) and its state_dict keeps its keys."""
    for name in TRANSFORMS:
        module = getattr(model, name)
        module.forward = _autocast_forward(module, module.forward, dtype, device_type)


def _autocast_forward(module: torch.nn.Module, forward, dtype: torch.dtype, device_type: str):
    def run(*args):
        if not module.training:
            return forward(*args)
        with torch.autocast(device_type, dtype=dtype):
            out = forward(*args)
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()
    return run


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
        if cfg.val_data:  # held out by the data's maker (whole photos, not crops of training ones)
            val_paths = list_images(cfg.val_data)
        else:
            n_val = max(1, int(len(paths) * cfg.val_fraction))
            val_paths = paths[::len(paths) // n_val][:n_val]
        self.sampler = CropSampler([p for p in paths if p not in val_paths], cfg.crop, self.rng)
        self.n_val = len(val_paths)
        val = CropSampler(val_paths, cfg.crop, np.random.default_rng(1234))
        self.val = val.batch(2 * self.n_val)  # [2 n_val, 3, c, c]

        self.amp = autocast_dtype(cfg.precision, run.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = build_model(self.mcfg.arch, cfg.model).to(run.device, memory_format=self.memory_format)
        # Checkpoints hold contiguous fp32 weights whatever the memory format trained in
        # (load_state_dict copies them back into channels_last parameters).
        add_hook = getattr(self.model, "register_state_dict_post_hook", None) or self.model._register_state_dict_hook
        add_hook(_contiguous_state)
        if self.amp is not None:
            autocast_transforms(self.model, self.amp, run.device.type)
        aux = [p for n, p in self.model.named_parameters() if n.endswith(".quantiles")]
        main = [p for n, p in self.model.named_parameters() if not n.endswith(".quantiles")]
        self.optimizers = {"opt": _adam(main, cfg.lr), "aux_opt": _adam(aux, cfg.aux_lr)}
        self._loss = torch.compile(rd_loss) if cfg.compile else rd_loss

    def describe(self) -> str:
        amp = {None: "fp32", torch.bfloat16: "bf16 transforms"}[self.amp]
        layout = ", channels_last" if self.cfg.channels_last else ""
        return (f"{len(self.sampler.images)} train / {self.n_val} val images; {amp}{layout}"
                f"{', compiled' if self.cfg.compile else ''}")

    def lr_at(self, frac: float) -> float:
        return self.cfg.lr * (0.25 if frac >= self.cfg.lr_drop_at else 1.0)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n, q = self.cfg.batch, self.cfg.fixed_quality
        x = self.sampler.batch(n).to(self.device, memory_format=self.memory_format)  # [B, 3, c, c]
        q = (torch.full((n,), q, device=self.device) if q >= 0
             else torch.randint(0, self.mcfg.qualities, (n,), device=self.device))  # [B]
        return x, q

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return self._loss(self.model, *batch)

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
                x = self.val[i:i + 8].to(self.device, memory_format=self.memory_format)  # [b, 3, c, c]
                _, s = rd_loss(self.model, x, torch.full((len(x),), q, device=self.device))
                bpps.append(s["bpp"])
                mses.append(s["mse"])
            mse = torch.cat(mses).mean().item()
            res[q] = {"bpp": round(torch.cat(bpps).mean().item(), 4),
                      "psnr": round(-10 * math.log10(max(mse, 1e-12)), 2)}
        return res


def _adam(params: list, lr: float) -> torch.optim.Adam:
    """Adam, fused where torch has the kernel for the device (CPU since torch 2.4, CUDA): the same
    update in one pass over the parameters (1.7x-4x faster optimiser step on this CPU, a few %
    of a training step). Its state dict has the same entries either way."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:  # no fused kernel for this device / torch version
        return torch.optim.Adam(params, lr=lr)


def _contiguous_state(module: torch.nn.Module, state: dict, prefix: str, local_metadata: dict) -> None:
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and not v.is_contiguous():
            state[k] = v.contiguous()


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    """Train (or resume) the run in cfg.out; returns its checkpoint."""
    cfg.out = cfg.out or f"runs/{ImageModelConfig.from_dict(cfg.model).arch}"
    run = open_run(cfg, resume)
    return fit(ImageTask(cfg, run), run)
