"""Training for the audio codec: random segments of speech and music at 24 kHz (mono; stereo
files are down-mixed for training, the codec codes channels separately), random level,
quantizer dropout, multi-scale mel + multi-resolution STFT + waveform L1 losses (no
adversary: it does not pay off in CPU budgets), RVQ commitment/codebook losses, dead-code
restarts, cosine learning-rate decay, atomic checkpoints holding the config dataclasses,
resume, a tqdm bar and a log file."""
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
from neurocodec.runtime.audio.io import list_audio, read_audio
from neurocodec.tools.audio.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss, neg_si_sdr, waveform_l1
from neurocodec.runtime.audio.models import AudioCodecModel, AudioModelConfig

log = logging.getLogger("neurocodec.train")

# The shipped recipe: hop 320 (75 frames/s), 12 codebooks of 1024 (0.75 kbps each, 9 kbps in
# all; rate control picks how many a file uses), a strided patch stem so that no residual unit
# runs at 24 kHz (25x real time on 2 cores).
DEFAULT_MODEL = {"arch": "audio-rvq", "patch": 4, "channels": 32, "strides": [2, 5, 8], "n_codebooks": 12}


@dataclass
class AudioTrainConfig:
    data: list = field(default_factory=list)  # folders; files below them are used
    weights: list = field(default_factory=list)  # sampling share per folder (default: by duration)
    out: str = "runs/audio"
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
    sisdr_weight: float = 0.0  # -SI-SDR (dB): the only term that rewards the right phase
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
    threads: int = 0
    init: str = ""
    model: dict = field(default_factory=lambda: dict(DEFAULT_MODEL))


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

    def crop(self, clip: np.ndarray) -> np.ndarray:
        return crop(clip, self.seg, self.rng)

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
            out[i, 0] = self.level(self.crop(clips[self.rng.choice(len(clips), p=p)]), *level_db)
        return torch.from_numpy(out)


def losses(model: AudioCodecModel, fns: dict, x: torch.Tensor, cfg: AudioTrainConfig,
           n_q=None) -> tuple[torch.Tensor, dict]:
    out = model(x, n_q)
    parts = {"mel": fns["mel"](out["x_hat"], x), "stft": fns["stft"](out["x_hat"], x),
             "wave": waveform_l1(out["x_hat"], x), "commit": out["commit_loss"],
             "codebook": out["codebook_loss"]}
    w = {"mel": cfg.mel_weight, "stft": cfg.stft_weight, "wave": cfg.wave_weight,
         "commit": cfg.commit_weight, "codebook": cfg.codebook_weight}
    if cfg.sisdr_weight:
        parts["neg_sisdr"], w["neg_sisdr"] = neg_si_sdr(out["x_hat"], x), cfg.sisdr_weight
    return sum(w[k] * v for k, v in parts.items()), {k: v.detach() for k, v in parts.items()}


def train(cfg: AudioTrainConfig, resume: bool = True) -> Path:
    device, ckpt_path, state, init_state = start_run(cfg.out, cfg.threads, cfg.device, resume, cfg.init)
    if state or init_state:
        cfg.model = (state or init_state)["config"]["model"]
    mcfg = AudioModelConfig.from_dict(cfg.model)
    cfg.model = {"arch": cfg.model.get("arch", "audio-rvq"), **mcfg.to_dict()}
    torch.manual_seed(cfg.seed + (state["step"] if state else 0))
    rng = np.random.default_rng(cfg.seed + (state["step"] if state else 0))

    seg = cfg.segment_frames * mcfg.hop_length
    sampler = SegmentSampler([Path(d) for d in cfg.data], cfg.weights, mcfg.sample_rate, seg,
                             cfg.val_files, rng)
    vrng = np.random.default_rng(1234)
    val = torch.from_numpy(np.stack([crop(c, seg * 4, vrng) for c in sampler.val]))[:, None]  # [V, 1, 4 seg]

    model = build_model(cfg.model["arch"], mcfg.to_dict()).to(device)
    fns = {"mel": MultiScaleMelLoss(mcfg.sample_rate, mag_weight=0.0).to(device),
           "stft": MultiResolutionSTFTLoss().to(device)}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.8, 0.99))
    step, elapsed = restore(model, {"opt": opt}, state, init_state)
    log.info("config %s", json.dumps(asdict(cfg)))
    log.info("device %s, threads %d, %s train clips, %d val clips, shares %s", device, torch.get_num_threads(),
             [len(s[0]) for s in sampler.sets], len(sampler.val), np.round(sampler.shares, 3).tolist())

    def snapshot() -> dict:
        return {"config": {"train": asdict(cfg), "model": cfg.model}, "model": model.state_dict(),
                "opt": opt.state_dict(), "step": step, "elapsed": elapsed}

    t0, last_ckpt = time.time() - elapsed, time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="train audio", dynamic_ncols=True)
    ema = None
    while step < cfg.steps:
        elapsed = time.time() - t0
        frac = max(step / cfg.steps, elapsed / (cfg.time_budget_min * 60) if cfg.time_budget_min else 0)
        if frac >= 1.0:
            break
        lr = cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        x = sampler.batch(cfg.batch, cfg.level_db).to(device)
        loss, parts = losses(model, fns, x, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.3f}", mel=f"{parts['mel']:.3f}", lr=f"{lr:.0e}")
        if step % cfg.restart_every == 0:
            n = model.quantizer.restart_dead_codes(cfg.restart_threshold)
            _, frac_h = model.quantizer.usage_entropy()
            log.info("step %d restarted %s usage-entropy %s", step, n, np.round(frac_h.cpu().numpy(), 3).tolist())
        if step % 50 == 0:
            log.info("step %d loss %.4f ema %.4f %s lr %.1e", step, loss.item(), ema,
                     " ".join(f"{k} {v.item():.4f}" for k, v in parts.items()), lr)
        if step % cfg.val_every == 0:
            log.info("val step %d %s", step, json.dumps(validate(model, fns, val, cfg, device)))
        if time.time() - last_ckpt > cfg.ckpt_every_min * 60:
            elapsed = time.time() - t0
            save_checkpoint(ckpt_path, snapshot())
            last_ckpt = time.time()
    bar.close()
    elapsed = time.time() - t0
    save_checkpoint(ckpt_path, snapshot())
    log.info("done: step %d, %.1f min; val %s", step, elapsed / 60,
             json.dumps(validate(model, fns, val, cfg, device)))
    return ckpt_path


@torch.no_grad()
def validate(model: AudioCodecModel, fns: dict, val: torch.Tensor, cfg: AudioTrainConfig,
             device: torch.device) -> dict:
    """Mel loss and SNR (dB) of held-out clips at 2, 4, 8 and all codebooks."""
    model.eval()
    res = {}
    for n_q in sorted({2, 4, 8, model.cfg.n_codebooks}):
        if n_q > model.cfg.n_codebooks:
            continue
        mel, snr = [], []
        for i in range(0, len(val), 8):
            x = val[i:i + 8].to(device)
            x_hat = model(x, n_q)["x_hat"]
            mel.append(fns["mel"](x_hat, x).item())
            err = (x_hat - x).pow(2).sum((1, 2)) / x.pow(2).sum((1, 2)).clamp_min(1e-9)
            snr.append((-10 * err.log10()).mean().item())
        res[n_q] = {"mel": round(float(np.mean(mel)), 4), "snr_db": round(float(np.mean(snr)), 2)}
    model.train()
    return res
