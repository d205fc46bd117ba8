"""A small char-level GPT trained on the CPU: the real training run behind bench/series.py.

The text is tinyshakespeare (public domain) read from the karpathy/char-rnn snapshot that the
search tool's `fetch` brings to ../.mirror (never downloaded at run time, never committed).
Batches are a pure function of (seed, step), so a run resumed from a checkpoint at step s sees
exactly the batches the original run saw after s: the exact resume reproduces the original
loss curve, and any gap after a lossy resume is the checkpoint's doing.
"""
from __future__ import annotations

import math
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_REPO = "karpathy/char-rnn"
TEXT_COMMIT = "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e"
TEXT_PATH = "data/tinyshakespeare/input.txt"


def load_text(mirror: Path | None = None) -> str:
    """The text, from the bare snapshot ../.mirror/karpathy+char-rnn/repo at TEXT_COMMIT."""
    mirror = mirror or REPO_ROOT.parent / ".mirror"
    git_dir = mirror / TEXT_REPO.replace("/", "+") / "repo"
    if not git_dir.exists():
        raise FileNotFoundError(f"{git_dir} is absent: bring {TEXT_REPO} with the search tool's fetch")
    out = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "blob", f"{TEXT_COMMIT}:{TEXT_PATH}"],
                         check=True, capture_output=True)
    return out.stdout.decode("utf-8")


@dataclass
class GPTConfig:
    vocab: int = 65
    block: int = 128  # context length
    layers: int = 4
    heads: int = 4
    dim: int = 128


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)
        self.mlp = nn.Sequential(nn.Linear(c.dim, 4 * c.dim), nn.GELU(), nn.Linear(4 * c.dim, c.dim))
        self.heads = c.heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape  # [B, T, D]
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))  # [B, H, T, D/H]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.cfg = c
        self.tok = nn.Embedding(c.vocab, c.dim)
        self.pos = nn.Embedding(c.block, c.dim)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.layers)])
        self.ln = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.vocab, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t))  # [B, T, D]
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.ln(x))  # [B, T, V]
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


@dataclass
class RunConfig:
    steps: int = 3000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    seed: int = 1234
    gpt: GPTConfig | None = None

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        g = (step - self.warmup) / max(1, self.steps - self.warmup)
        return 0.1 * self.lr + 0.9 * self.lr * 0.5 * (1 + math.cos(math.pi * min(g, 1.0)))


class Corpus:
    """Characters as int64 ids, split 90/10 into train and validation."""

    def __init__(self, text: str):
        chars = sorted(set(text))
        self.vocab = len(chars)
        ids = np.frombuffer(text.encode("utf-8"), np.uint8) if len(chars) < 256 else None
        lut = np.zeros(256, np.int64)
        lut[[ord(ch) for ch in chars]] = np.arange(len(chars))
        data = lut[ids] if ids is not None else np.array([chars.index(ch) for ch in text], np.int64)
        n = int(0.9 * len(data))
        self.train, self.val = data[:n], data[n:]

    def batch(self, split: str, seed: int, step: int, b: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.train if split == "train" else self.val
        rng = np.random.default_rng([seed, step, split == "val"])  # a pure function of (seed, step)
        ix = rng.integers(0, len(data) - t - 1, b)
        x = np.stack([data[i:i + t] for i in ix])
        y = np.stack([data[i + 1:i + 1 + t] for i in ix])
        return torch.from_numpy(x), torch.from_numpy(y)


def make(run: RunConfig, vocab: int) -> tuple[CharGPT, torch.optim.Optimizer]:
    torch.manual_seed(run.seed)
    model = CharGPT(run.gpt or GPTConfig(vocab=vocab))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": run.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=run.lr, betas=(0.9, 0.99))
    return model, opt


def train_step(model: CharGPT, opt: torch.optim.Optimizer, corpus: Corpus, run: RunConfig, step: int) -> float:
    x, y = corpus.batch("train", run.seed, step, run.batch, model.cfg.block)
    for g in opt.param_groups:
        g["lr"] = run.lr_at(step)
    loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


@torch.no_grad()
def val_loss(model: CharGPT, corpus: Corpus, run: RunConfig, batches: int = 8) -> float:
    model.eval()
    out = [float(model(*corpus.batch("val", run.seed, i, run.batch, model.cfg.block))) for i in range(batches)]
    model.train()
    return float(np.mean(out))


def config_dict(run: RunConfig, vocab: int) -> dict:
    return {**asdict(run), "gpt": asdict(run.gpt or GPTConfig(vocab=vocab))}
