"""Neural audio codec: a SEANet/DAC-style convolutional autoencoder around residual vector
quantization (rvq.py), for 24 kHz mono audio.

Encoder (DAC, Kumar et al. 2023): a k=7 stem, then per stride three residual units (dilations
1, 3, 9: a receptive field that grows 3x per unit) and a strided conv (kernel 2*stride) that
doubles the channels; a k=3 conv maps to the latent. The decoder mirrors it with transposed
convs and ends in tanh. Every conv is weight-normalised and every nonlinearity is Snake
(x + sin²(αx)/α, a periodic bias that suits audio) unless the config asks for ELU (EnCodec).

Padding is non-causal ("same"): for T a multiple of the hop, the encoder emits exactly
T / hop frames and the decoder returns exactly T samples. forward() pads other lengths on the
right and crops the output back; encode()/decode() work in whole frames, so a bitstream has
to store T.

Bitrate: a frame carries n_q codes of log2(codebook_size) bits; at 75 frames/s with 1024-entry
codebooks each codebook is 0.75 kbps, 8 are 6 kbps. Quantizer dropout trains one model for
every n_q in [1, n_codebooks].
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from neurocodec.runtime.audio.rvq import ResidualVectorQuantizer
from neurocodec.runtime.registry import register_model


@dataclass
class AudioModelConfig:
    sample_rate: int = 24000
    channels: int = 32  # width after the stem, doubled by each downsampling (32 -> 512)
    strides: tuple = (2, 4, 5, 8)  # hop 320 samples: 75 frames/s at 24 kHz
    # patch > 1: the stem is a strided conv (kernel 2*patch) straight from the waveform, and the
    # decoder ends in the mirrored transposed conv, so no residual unit runs at 24 kHz.
    patch: int = 1
    dilations: tuple = (1, 3, 9)  # residual units per block
    # EnCodec's 128 rather than DAC's full width (512 here): the codes live in codebook_dim
    # anyway, and a narrow latent keeps the RVQ projections and the decoder stem cheap.
    latent_dim: int = 128
    n_codebooks: int = 8
    codebook_size: int = 1024  # 10 bits per code
    codebook_dim: int = 8  # DAC's factorised codes: low-dim lookups keep codebooks in use
    activation: str = "snake"  # "snake" | "elu"
    quantizer_dropout: float = 0.5  # probability that a batch element trains a random n_q
    usage_decay: float = 0.99  # EMA decay of code usage, for dead-code restarts

    def __post_init__(self):
        self.strides = tuple(int(s) for s in self.strides)  # JSON gives lists
        self.dilations = tuple(int(d) for d in self.dilations)
        if self.patch < 1 or self.patch % 2 and self.patch != 1:
            raise ValueError("patch must be 1 or even")
        if self.activation not in ("snake", "elu"):
            raise ValueError(f"unknown activation {self.activation!r}")

    @property
    def hop_length(self) -> int:
        return self.patch * math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def kbps(self, n_q: int | None = None) -> float:
        n_q = self.n_codebooks if n_q is None else n_q
        return n_q * math.log2(self.codebook_size) * self.frame_rate / 1000

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AudioModelConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Snake(nn.Module):
    """x + sin²(αx)/α with a learnable α per channel (Ziyin et al. 2020; BigVGAN, DAC)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def act(kind: str, channels: int) -> nn.Module:
    return Snake(channels) if kind == "snake" else nn.ELU()


def wn_conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1,
            padding: int | None = None) -> nn.Module:
    pad = dilation * (k - 1) // 2 if padding is None else padding  # "same" for odd k
    return weight_norm(nn.Conv1d(cin, cout, k, stride=stride, dilation=dilation, padding=pad))


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int, activation: str):
        super().__init__()
        self.block = nn.Sequential(act(activation, dim), wn_conv(dim, dim, 7, dilation=dilation),
                                   act(activation, dim), wn_conv(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def encoder_block(cin: int, cout: int, stride: int, activation: str,
                  dilations: tuple = (1, 3, 9)) -> nn.Sequential:
    # k = 2s, p = ceil(s/2) maps L -> L/s exactly for even and odd s.
    return nn.Sequential(*(ResidualUnit(cin, d, activation) for d in dilations), act(activation, cin),
                         wn_conv(cin, cout, 2 * stride, stride=stride, padding=math.ceil(stride / 2)))


def decoder_block(cin: int, cout: int, stride: int, activation: str,
                  dilations: tuple = (1, 3, 9)) -> nn.Sequential:
    # k = 2s, p = ceil(s/2), output_padding = s % 2 maps L -> s*L exactly.
    up = nn.ConvTranspose1d(cin, cout, 2 * stride, stride=stride, padding=math.ceil(stride / 2),
                            output_padding=stride % 2)
    return nn.Sequential(act(activation, cin), weight_norm(up),
                         *(ResidualUnit(cout, d, activation) for d in dilations))


def encoder(cfg: AudioModelConfig) -> nn.Sequential:
    C, a, P = cfg.channels, cfg.activation, cfg.patch
    stem = wn_conv(1, C, 7) if P == 1 else wn_conv(1, C, 2 * P, stride=P, padding=P // 2)
    layers: list[nn.Module] = [stem]
    for i, s in enumerate(cfg.strides):
        layers.append(encoder_block(C << i, C << (i + 1), s, a, cfg.dilations))
    top = C << len(cfg.strides)
    return nn.Sequential(*layers, act(a, top), wn_conv(top, cfg.latent_dim, 3))


def decoder(cfg: AudioModelConfig) -> nn.Sequential:
    C, a, n = cfg.channels, cfg.activation, len(cfg.strides)
    layers: list[nn.Module] = [wn_conv(cfg.latent_dim, C << n, 7)]
    for i, s in enumerate(reversed(cfg.strides)):
        layers.append(decoder_block(C << (n - i), C << (n - i - 1), s, a, cfg.dilations))
    P = cfg.patch
    head = wn_conv(C, 1, 7) if P == 1 else weight_norm(
        nn.ConvTranspose1d(C, 1, 2 * P, stride=P, padding=P // 2))
    return nn.Sequential(*layers, act(a, C), head, nn.Tanh())


class AudioCodecModel(nn.Module):
    """Waveform [B, 1, T] in [-1, 1] -> latent [B, latent_dim, T/hop] -> RVQ -> waveform.

    Training loss (DAC): reconstruction (losses.py) + adversarial/feature matching
    + 0.25 * commit_loss + 1.0 * codebook_loss; call quantizer.restart_dead_codes() now and then.
    """

    def __init__(self, cfg: AudioModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder(cfg)
        self.quantizer = ResidualVectorQuantizer(cfg.latent_dim, cfg.n_codebooks, cfg.codebook_size,
                                                 cfg.codebook_dim, cfg.quantizer_dropout, cfg.usage_decay)
        self.decoder = decoder(cfg)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, -x.shape[-1] % self.cfg.hop_length))  # [B, 1, F*hop]

    def forward(self, x: torch.Tensor, n_q: torch.Tensor | int | None = None) -> dict:
        """x: [B, 1, T]; n_q: codebooks per element ([B] or int), None = all (eval) or
        quantizer dropout (training). Returns x_hat [B, 1, T], z [B, D, F], z_q, codes
        [B, max n_q, F] (-1 where unused), n_q [B], commit_loss, codebook_loss."""
        T = x.shape[-1]
        z = self.encoder(self._pad(x))  # [B, D, F], F = ceil(T / hop)
        q = self.quantizer(z, n_q)
        x_hat = self.decoder(q["z_q"])[..., :T]  # [B, 1, T]
        return {"x_hat": x_hat, "z": z, **q}

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """x: [B, 1, T] -> codes [B, n_q, ceil(T / hop)] int64."""
        return self.quantizer.encode(self.encoder(self._pad(x)), n_q)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, F] -> x_hat [B, 1, F * hop]."""
        return self.decoder(self.quantizer.decode(codes))

    def macs_per_second(self) -> dict:
        return count_macs(self)


def count_macs(model: AudioCodecModel, seconds: float = 1.0) -> dict:
    """Multiply-accumulates per second of audio of the convolutions (Snake/ELU and the codebook
    lookup, K*codebook_dim per frame and stage, are left out), counted by forward hooks."""
    macs = {"encoder": 0, "quantizer": 0, "decoder": 0}

    def hook(name: str):
        def fn(mod, inp, out):
            k, per_out = mod.kernel_size[0], mod.in_channels * mod.out_channels // mod.groups
            n = inp[0].shape[-1] if isinstance(mod, nn.ConvTranspose1d) else out.shape[-1]
            macs[name] += n * k * per_out * out.shape[0]
        return fn

    handles = [m.register_forward_hook(hook(name))
               for name in macs for m in getattr(model, name).modules()
               if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
    cfg = model.cfg
    T = round(seconds * cfg.sample_rate / cfg.hop_length) * cfg.hop_length
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, T))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    sec = T / cfg.sample_rate
    return {k: v / sec for k, v in macs.items()} | {"total": sum(macs.values()) / sec}


@register_model("audio-rvq")
def audio_rvq(config: dict) -> AudioCodecModel:
    """SEANet/DAC-style encoder-decoder with residual vector quantization (24 kHz mono)."""
    return AudioCodecModel(AudioModelConfig.from_dict(config))
