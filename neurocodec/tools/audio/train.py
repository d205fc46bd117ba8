"""Training for the audio codec: random segments of speech and music at 24 kHz (mono; stereo
files are down-mixed for training, the codec codes channels separately), random level,
quantizer dropout, multi-scale mel + multi-resolution STFT + waveform L1 losses (no
adversary: it does not pay off in CPU budgets), RVQ commitment/codebook losses, dead-code
restarts and cosine learning-rate decay, on the shared loop of neurocodec.tools.trainer
(checkpoints, resume, progress bar, log file)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neurocodec.runtime.audio.io import list_audio, read_audio
from neurocodec.runtime.audio.models import AudioCodecModel, AudioModelConfig
from neurocodec.runtime.registry import build_model
from neurocodec.tools.audio import discriminators as disc
from neurocodec.tools.audio.losses import (
    ComplexSTFTLoss,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    neg_si_sdr,
    waveform_l1,
)
from neurocodec.tools.parallel import average_across_ranks, broadcast_from_rank0
from neurocodec.tools.trainer import Run, TrainTask, fit, open_run, split_options

log = logging.getLogger("neurocodec.train")

KIND = "audio"
ARCHS = ("audio-rvq",)  # the registered audio model names

# The shipped recipe: hop 320 (75 frames/s), 12 codebooks of 1024 (0.75 kbps each, 9 kbps in
# all; rate control picks how many a file uses), a strided patch stem so that no residual unit
# runs at 24 kHz (25x real time on 2 cores). AudioModelConfig's defaults fill in the rest.
DEFAULT_MODEL = {"arch": "audio-rvq", "patch": 4, "channels": 32, "strides": [2, 5, 8], "n_codebooks": 12}


@dataclass
class AudioTrainConfig:
    data: list = field(default_factory=list)  # folders; files below them are used
    weights: list = field(default_factory=list)  # sampling share per folder (default: by duration)
    out: str = ""  # run folder; "" = runs/<arch>
    steps: int = 100_000
    time_budget_min: float = 0.0  # stop (and checkpoint) after this many minutes; 0 = none
    batch: int = 16
    segment_frames: int = 40  # 40 * 320 samples = 0.53 s
    lr: float = 6e-4
    lr_final: float = 0.1  # cosine decay to lr * lr_final over the run
    clip: float = 10.0
    mel_weight: float = 15.0
    stft_weight: float = 1.0
    wave_weight: float = 5.0
    sisdr_weight: float = 0.0  # -SI-SDR (dB): a waveform term that rewards the right phase
    complex_weight: float = 0.0  # multi-resolution complex-STFT L1 (phase-aware)
    adv_weight: float = 0.0  # > 0: adversarial stage (multi-period + STFT discriminators, LSGAN)
    fm_weight: float = 2.0  # feature matching, with the adversarial stage
    adv_start: int = 0  # reconstruction-only warm-up: the adversarial stage starts at this step
    disc_lr: float = 2e-4
    disc_width: int = 16  # discriminator channel width (HiFi-GAN's MPD starts at 32)
    commit_weight: float = 0.25
    codebook_weight: float = 1.0
    restart_every: int = 100
    restart_threshold: float = 0.05  # usage below this share of uniform is dead
    level_db: tuple = (-35.0, -12.0)  # random RMS level of a training segment (dBFS)
    ckpt_every_min: float = 5.0
    val_every: int = 500
    val_files: int = 6  # per folder, held out
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0 = torch's default
    init: str = ""  # start from this checkpoint's weights (fresh optimiser and step count)
    model: dict = field(default_factory=lambda: dict(DEFAULT_MODEL))


TrainConfig = AudioTrainConfig


def make_config(arch: str, data: list[str], **opts) -> AudioTrainConfig:
    """An AudioTrainConfig from CLI-style options: AudioTrainConfig fields, or AudioModelConfig
    fields over DEFAULT_MODEL for the model; None = the default."""
    if arch not in ARCHS:
        raise ValueError(f"{arch!r} is not an audio model (audio models: {', '.join(ARCHS)})")
    data = [str(d) for d in ([data] if isinstance(data, (str, Path)) else data)]
    if not data:
        raise ValueError("audio training takes one or more data folders")
    train, model = split_options(KIND, AudioTrainConfig, AudioModelConfig, DEFAULT_MODEL, opts)
    if train.get("weights") and len(train["weights"]) != len(data):
        raise ValueError(f"--weights: {len(train['weights'])} shares for {len(data)} data folders")
    cfg = AudioTrainConfig(data=data, model={"arch": arch, **AudioModelConfig.from_dict(model).to_dict()}, **train)
    cfg.out = cfg.out or f"runs/{arch}"
    return cfg


def crop(clip: np.ndarray, seg: int, rng: np.random.Generator) -> np.ndarray:
    """A random seg-sample window of clip (zero-padded when the clip is shorter)."""
    if len(clip) <= seg:
        return np.pad(clip, (0, seg - len(clip)))
    s = rng.integers(0, len(clip) - seg + 1)
    return clip[s:s + seg]


class SegmentSampler:
    """All files of each folder resampled once to the model rate (mono float32, in memory)."""

    def __init__(self, folders: list[Path], shares: list[float], sr: int, seg: int,
                 n_val: int, rng: np.random.Generator):
        self.seg, self.rng = seg, rng
        self.sets, self.val = [], []
        for folder in folders:
            clips = [read_audio(p, sr)[0].mean(0) for p in list_audio(folder)]  # [T] each
            if not clips:
                raise ValueError(f"no audio files in {folder}")
            n = min(n_val, (len(clips) - 1) // 2)  # at most a third held out, at least one kept
            held = set(range(0, len(clips), max(1, len(clips) // max(1, n)))[:n]) if n else set()
            self.val += [c for i, c in enumerate(clips) if i in held] or clips[:1]
            keep = [c for i, c in enumerate(clips) if i not in held]
            lens = np.array([len(c) for c in keep], np.float64)
            self.sets.append((keep, lens / lens.sum()))
        dur = np.array([sum(len(c) for c in s[0]) for s in self.sets], np.float64)
        w = np.asarray(shares, np.float64) if shares else dur
        self.shares = w / w.sum()

    def level(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        rms = math.sqrt(float(np.mean(x * x)))
        if rms < 1e-4:
            return x
        x = x * (10 ** (self.rng.uniform(lo, hi) / 20) / rms)
        return np.clip(x, -1, 1)

    def batch(self, n: int, level_db: tuple) -> torch.Tensor:
        out = np.empty((n, 1, self.seg), np.float32)
        for i in range(n):
            clips, p = self.sets[self.rng.choice(len(self.sets), p=self.shares)]
            clip = clips[self.rng.choice(len(clips), p=p)]
            out[i, 0] = self.level(crop(clip, self.seg, self.rng), *level_db)
        return torch.from_numpy(out)  # [B, 1, seg]


def losses(model: AudioCodecModel, fns: dict, x: torch.Tensor, cfg: AudioTrainConfig,
           n_q=None, adversary=None) -> tuple[torch.Tensor, dict]:
    """The weighted sum of the reconstruction and RVQ losses of x [B, 1, T], and its parts.
    adversary: (discriminators, their optimiser) in the adversarial stage: they take one step
    on (x, x_hat) first, then the generator's loss adds theirs and feature matching."""
    out = model(x, n_q)
    parts = {"mel": fns["mel"](out["x_hat"], x), "stft": fns["stft"](out["x_hat"], x),
             "wave": waveform_l1(out["x_hat"], x), "commit": out["commit_loss"],
             "codebook": out["codebook_loss"]}
    w = {"mel": cfg.mel_weight, "stft": cfg.stft_weight, "wave": cfg.wave_weight,
         "commit": cfg.commit_weight, "codebook": cfg.codebook_weight}
    if cfg.sisdr_weight:
        parts["neg_sisdr"], w["neg_sisdr"] = neg_si_sdr(out["x_hat"], x), cfg.sisdr_weight
    if cfg.complex_weight:
        parts["complex"], w["complex"] = fns["complex"](out["x_hat"], x), cfg.complex_weight
    stats = {}
    if adversary is not None:
        d, opt_d = adversary
        d_loss = disc.d_loss(d(x), d(out["x_hat"].detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        stats["disc"] = d_loss.detach()  # logged; minimised by its own optimiser
        real, fake = d(x), d(out["x_hat"])
        parts["adv"], w["adv"] = disc.g_loss(fake), cfg.adv_weight
        parts["fm"], w["fm"] = disc.feature_matching(real, fake), cfg.fm_weight
    return sum(w[k] * v for k, v in parts.items()), {**{k: v.detach() for k, v in parts.items()}, **stats}


class AudioTask(TrainTask):
    desc = "train audio"
    shown = ("mel",)

    def __init__(self, cfg: AudioTrainConfig, run: Run):
        self.cfg, self.device = cfg, run.device
        self.mcfg = AudioModelConfig.from_dict(cfg.model)
        cfg.model = {"arch": cfg.model.get("arch", ARCHS[0]), **self.mcfg.to_dict()}
        self.rng = np.random.default_rng(run.seed)

        seg = cfg.segment_frames * self.mcfg.hop_length
        self.sampler = SegmentSampler([Path(d) for d in cfg.data], cfg.weights, self.mcfg.sample_rate, seg,
                                      cfg.val_files, self.rng)
        vrng = np.random.default_rng(1234)
        val = np.stack([crop(c, seg * 4, vrng) for c in self.sampler.val])  # [V, 4 seg]
        self.val = torch.from_numpy(val)[:, None]  # [V, 1, 4 seg]

        self.model = build_model(cfg.model["arch"], self.mcfg.to_dict()).to(run.device)
        self.fns = {"mel": MultiScaleMelLoss(self.mcfg.sample_rate, mag_weight=0.0).to(run.device),
                    "stft": MultiResolutionSTFTLoss().to(run.device), "complex": ComplexSTFTLoss().to(run.device)}
        self.optimizers = {"opt": torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(0.8, 0.99))}
        if cfg.adv_weight:
            self.disc = disc.Discriminators(width=cfg.disc_width).to(run.device)
            self.aux_modules = {"disc": self.disc}
            self.optimizers["disc"] = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.8, 0.99))

    def describe(self) -> str:
        s = self.sampler
        return (f"{[len(c) for c, _ in s.sets]} train clips, {len(s.val)} val clips, "
                f"shares {np.round(s.shares, 3).tolist()}")

    def lr_at(self, frac: float) -> float:
        cos = 0.5 * (1 + math.cos(math.pi * frac))  # 1 -> 0
        return self.cfg.lr * (self.cfg.lr_final + (1 - self.cfg.lr_final) * cos)

    def batch(self) -> torch.Tensor:
        return self.sampler.batch(self.cfg.batch, self.cfg.level_db).to(self.device)  # [B, 1, seg]

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        adversary = None
        if self.cfg.adv_weight and self.step >= self.cfg.adv_start:
            adversary = (self.disc, self.optimizers["disc"])
        return losses(self.model, self.fns, x, self.cfg, adversary=adversary)

    def after_step(self, step: int) -> dict:
        """Every restart_every steps: codes used too little restart on recent encoder outputs.
        Several processes: the usage EMAs are averaged first (the EMA being linear, that is the
        EMA of the mean usage), and the restarted codes (each process draws them from its own
        batch) are rank 0's everywhere."""
        if step % self.cfg.restart_every == 0:
            rvq = self.model.quantizer
            average_across_ranks([rvq.usage, rvq.usage_steps])
            n = rvq.restart_dead_codes(self.cfg.restart_threshold)
            broadcast_from_rank0([*rvq.parameters(), *rvq.buffers()])
            _, frac_h = rvq.usage_entropy()  # [n_codebooks]
            log.info("step %d restarted %s usage-entropy %s", step, n, np.round(frac_h.cpu().numpy(), 3).tolist())
        return {}

    def validate(self) -> dict:
        """Mel loss and SNR (dB) of held-out clips at 2, 4, 8 and all codebooks."""
        res = {}
        for n_q in sorted({2, 4, 8, self.mcfg.n_codebooks}):
            if n_q > self.mcfg.n_codebooks:
                continue
            mel, snr = [], []
            for i in range(0, len(self.val), 8):
                x = self.val[i:i + 8].to(self.device)  # [b, 1, 4 seg]
                x_hat = self.model(x, n_q)["x_hat"]  # [b, 1, 4 seg]
                mel.append(self.fns["mel"](x_hat, x).item())
                err = (x_hat - x).pow(2).sum((1, 2)) / x.pow(2).sum((1, 2)).clamp_min(1e-9)  # [b]
                snr.append((-10 * err.log10()).mean().item())
            res[n_q] = {"mel": round(float(np.mean(mel)), 4), "snr_db": round(float(np.mean(snr)), 2)}
        return res


def train(cfg: AudioTrainConfig, resume: bool = True) -> Path:
    """Train (or resume) the run in cfg.out; returns its checkpoint."""
    cfg.out = cfg.out or f"runs/{cfg.model.get('arch', ARCHS[0])}"
    run = open_run(cfg, resume)
    return fit(AudioTask(cfg, run), run)
