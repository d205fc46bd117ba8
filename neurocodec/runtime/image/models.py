"""Image codec models, built on CompressAI's EntropyBottleneck, GaussianConditional and GDN.

Both architectures are mean-scale hyperpriors (Minnen et al. 2018, without the
autoregressive context model). They differ in the synthesis transform:

- ``hyperprior``: four GDN/transposed-conv stages (Ballé et al.), the usual decoder.
- ``shallow``: a stronger analysis transform and a 2-layer "JPEG-like" synthesis (Yang &
  Mandt 2023), about 1/6 of the decoder MACs; encoder-side latent refinement (refine.py)
  buys back rate-distortion at no decode cost.

Variable rate: one model covers every quality through per-quality channel gains on the
latent y (Cui et al. 2021, "asymmetric gained"). Quality q scales y by gain[q] before
quantisation and ŷ by igain[q] after it; the hyper-latent z is computed from the un-gained
y, so its prior is shared by all qualities, and the hyper-synthesis output (means and
scales of y) is multiplied by gain[q]. Training samples one λ per image, so every step
trains every rate point.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from neurocodec.runtime.image._compressai import GDN, EntropyBottleneck, GaussianConditional, ResidualBlock
from neurocodec.runtime.registry import register_model

# CompressAI's scale table: 64 log-spaced scales in [0.11, 256].
SCALES_MIN, SCALES_MAX, SCALES_LEVELS = 0.11, 256.0, 64


def scale_table() -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), SCALES_LEVELS))


@dataclass
class ImageModelConfig:
    arch: str = "hyperprior"  # "hyperprior" | "shallow"
    N: int = 128  # channels of the transforms
    M: int = 192  # channels of the latent y
    shallow_channels: int = 48  # hidden channels of the 2-layer synthesis
    # One λ per quality index, in the CompressAI convention: loss = λ·255²·MSE + bpp.
    lmbdas: list = field(default_factory=lambda: [0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483])

    @property
    def qualities(self) -> int:
        return len(self.lmbdas)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ImageModelConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def conv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=s, padding=k // 2, output_padding=s - 1)


def analysis(cfg: ImageModelConfig) -> nn.Sequential:
    N, M = cfg.N, cfg.M
    layers = [conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N)]
    if cfg.arch == "shallow":
        # The "stronger analysis": residual blocks where they are cheap (1/8 and 1/16 scale).
        layers += [ResidualBlock(N, N), ResidualBlock(N, N), conv(N, M)]
    else:
        layers += [conv(N, M)]
    return nn.Sequential(*layers)


def synthesis(cfg: ImageModelConfig) -> nn.Sequential:
    N, M = cfg.N, cfg.M
    if cfg.arch == "shallow":
        C = cfg.shallow_channels
        # ConvT(k=12, s=8, p=2) maps h -> 8h; ConvT(k=6, s=2, p=2) maps h -> 2h.
        return nn.Sequential(
            nn.ConvTranspose2d(M, C, 12, stride=8, padding=2),
            GDN(C, inverse=True),
            nn.ConvTranspose2d(C, 3, 6, stride=2, padding=2),
        )
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
    )


class HyperSynthesis(nn.Module):
    """ẑ -> (means, scales) of y. ReLU and plain convs only, so that it can be run in
    exact integer arithmetic at coding time (int_hyper.py)."""

    def __init__(self, N: int, M: int):
        super().__init__()
        # Narrower than Minnen's (N, not M..3M/2 channels): it ships in 10 MB per family.
        self.layers = nn.ModuleList([deconv(N, N), deconv(N, N), conv(N, 2 * M, 3, 1)])

    def forward(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = z_hat
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        means, scales = h.chunk(2, dim=1)  # [B, M, h/16, w/16] each
        return means, scales


class ImageCodecModel(nn.Module):
    """Variable-rate mean-scale hyperprior. forward() is the training path (noise
    quantisation); coding goes through codec.py with integer hyper-synthesis."""

    stride = 64  # total downsampling of z: images are padded to a multiple of this

    def __init__(self, cfg: ImageModelConfig):
        super().__init__()
        self.cfg = cfg
        N, M = cfg.N, cfg.M
        self.g_a = analysis(cfg)
        self.g_s = synthesis(cfg)
        self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N))
        self.h_s = HyperSynthesis(N, M)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        # Quantisation step ~ 1/gain, and the MSE-optimal step scales like λ^-1/2.
        lm = torch.tensor(cfg.lmbdas, dtype=torch.float32)
        init = 0.5 * torch.log(lm / lm.log().mean().exp())
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M))  # [Q, M]
        self.log_igain = nn.Parameter(-init[:, None].repeat(1, M))  # [Q, M]

    def gains(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.log_gain[q].exp()[:, :, None, None]  # [B, M, 1, 1]
        ig = self.log_igain[q].exp()[:, :, None, None]
        return g, ig

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> dict:
        """x: [B, 3, H, W] in [0, 1]; q: [B] quality indices."""
        y = self.g_a(x)  # [B, M, H/16, W/16]
        z = self.h_a(y)  # [B, N, H/64, W/64]
        z_hat, z_lik = self.entropy_bottleneck(z)
        means, scales = self.h_s(z_hat)
        g, ig = self.gains(q)
        y_hat, y_lik = self.gaussian_conditional(y * g, scales * g, means=means * g)
        x_hat = self.g_s(y_hat * ig)  # [B, 3, H, W]
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    def update_tables(self) -> None:
        """Freeze the entropy models' CDF tables (stored as buffers: the decoder loads them
        instead of recomputing floats, which is what makes CompressAI models drift)."""
        self.entropy_bottleneck.update(force=True)
        self.gaussian_conditional.update_scale_table(scale_table(), force=True)

    def macs_per_pixel(self) -> dict:
        """Decoder multiply-accumulates per image pixel (h_s and g_s), counted by hooks."""
        return count_decoder_macs(self)


def count_decoder_macs(model: ImageCodecModel, size: int = 256) -> dict:
    macs = {"h_s": 0, "g_s": 0}

    def hook(name):
        def fn(mod, inp, out):
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                k = mod.kernel_size[0] * mod.kernel_size[1]
                n_in = inp[0].shape[2] * inp[0].shape[3]
                n_out = out.shape[2] * out.shape[3]
                if isinstance(mod, nn.Conv2d):
                    macs[name] += n_out * k * mod.in_channels * mod.out_channels
                else:
                    macs[name] += n_in * k * mod.in_channels * mod.out_channels
            elif isinstance(mod, GDN):
                macs[name] += out.shape[1] ** 2 * out.shape[2] * out.shape[3]
        return fn

    handles = []
    for name, part in (("h_s", model.h_s), ("g_s", model.g_s)):
        for m in part.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, GDN)):
                handles.append(m.register_forward_hook(hook(name)))
    cfg = model.cfg
    with torch.no_grad():
        z = torch.zeros(1, cfg.N, size // 64, size // 64)
        model.h_s(z)
        model.g_s(torch.zeros(1, cfg.M, size // 16, size // 16))
    for h in handles:
        h.remove()
    px = size * size
    return {k: v / px for k, v in macs.items()} | {"total": sum(macs.values()) / px}


@register_model("hyperprior")
def hyperprior(config: dict) -> ImageCodecModel:
    """Mean-scale hyperprior (Minnen et al. 2018, no context model)."""
    return ImageCodecModel(ImageModelConfig.from_dict({**config, "arch": "hyperprior"}))


@register_model("shallow")
def shallow(config: dict) -> ImageCodecModel:
    """Shallow 2-layer synthesis with a residual analysis (Yang & Mandt 2023)."""
    return ImageCodecModel(ImageModelConfig.from_dict({**config, "arch": "shallow"}))
