"""Residual vector quantization as in DAC (Kumar et al. 2023, "High-Fidelity Audio
Compression with Improved RVQGAN"), with quantizer dropout and dead-code restarts.

Stage i quantizes the residual r that stages 0..i-1 left:

    z_e = in_proj(r)                    latent_dim -> codebook_dim, weight-normed 1x1 conv
    k   = argmax_j cos(z_e, c_j)        lookup on L2-normalised vectors ("factorised codes")
    r   = r - out_proj(c_k)

The lookup compares directions only; with a small codebook_dim this is what keeps the
codebooks in use. As in DAC, the value passed on is the raw code c_k, whose scale the codebook
loss fits to z_e. Gradients reach the encoder through the straight-through estimator.

Losses per stage (summed over stages, each masked by quantizer dropout): commitment
||z_e - sg(c_k)||² pulls the encoder to the codes, codebook ||sg(z_e) - c_k||² pulls the codes
to the encoder; DAC weighs them 0.25 and 1.

Quantizer dropout (training only): each batch element, with probability p, uses only the first
n ~ U{1..N} stages, so every prefix of the codes decodes well (one model, every bitrate).

Dead codes: a code that never wins the lookup gets no gradient and stays dead. The module
keeps a bias-corrected EMA of each code's share of assignments and the last training batch's
projected residuals; restart_dead_codes() moves rarely used codes onto those residuals.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

RECENT_MAX = 4096  # projected residuals kept per stage as restart candidates


def wn_conv1x1(cin: int, cout: int) -> nn.Module:
    return weight_norm(nn.Conv1d(cin, cout, 1))


class VectorQuantizer(nn.Module):
    """One RVQ stage: projection, cosine lookup, straight-through, projection back."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_proj = wn_conv1x1(input_dim, codebook_dim)
        self.out_proj = wn_conv1x1(codebook_dim, input_dim)
        self.codebook = nn.Parameter(torch.randn(codebook_size, codebook_dim))  # [K, d]

    def lookup(self, z_e: torch.Tensor) -> torch.Tensor:
        e = F.normalize(z_e.transpose(1, 2), dim=-1)  # [B, F, d]
        c = F.normalize(self.codebook, dim=-1)  # [K, d]
        # For unit vectors the nearest code in L2 is the one of highest cosine similarity.
        return (e @ c.t()).argmax(-1)  # [B, F] int64

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.codebook).transpose(1, 2).contiguous()  # [B, d, F]

    def forward(self, r: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z_e = self.in_proj(r)  # [B, d, F]
        idx = self.lookup(z_e)  # [B, F]
        c = self.embed(idx)  # [B, d, F]
        commit = F.mse_loss(z_e, c.detach(), reduction="none").mean((1, 2))  # [B]
        codebook = F.mse_loss(c, z_e.detach(), reduction="none").mean((1, 2))  # [B]
        # Straight-through: the value is exactly c (x - x == 0), the gradient goes to z_e.
        z_q = self.out_proj(c.detach() + (z_e - z_e.detach()))  # [B, D, F]
        return z_q, idx, commit, codebook, z_e


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, input_dim: int, n_codebooks: int = 8, codebook_size: int = 1024,
                 codebook_dim: int = 8, quantizer_dropout: float = 0.5, usage_decay: float = 0.99):
        super().__init__()
        self.n_codebooks, self.codebook_size = n_codebooks, codebook_size
        self.quantizer_dropout, self.usage_decay = quantizer_dropout, usage_decay
        self.quantizers = nn.ModuleList(
            VectorQuantizer(input_dim, codebook_size, codebook_dim) for _ in range(n_codebooks))
        # EMA of each code's share of assignments, scaled by K (1.0 = uniform share), and the
        # number of EMA updates per stage for Adam-style bias correction (no warm-up bias).
        self.register_buffer("usage", torch.zeros(n_codebooks, codebook_size))
        self.register_buffer("usage_steps", torch.zeros(n_codebooks))
        self._recent: list[torch.Tensor | None] = [None] * n_codebooks  # [N, d] per stage

    def _n_q(self, n_q: torch.Tensor | int | None, B: int, device: torch.device) -> torch.Tensor:
        N = self.n_codebooks
        if n_q is None:
            n = torch.full((B,), N, dtype=torch.long, device=device)
            if self.training and self.quantizer_dropout > 0:
                drop = torch.rand(B, device=device) < self.quantizer_dropout
                n = torch.where(drop, torch.randint(1, N + 1, (B,), device=device), n)
            return n
        n = torch.as_tensor(n_q, dtype=torch.long, device=device).expand(B).clone()  # [B]
        if int(n.min()) < 1 or int(n.max()) > N:
            raise ValueError(f"n_q must be in [1, {N}], got {n.tolist()}")
        return n

    def forward(self, z: torch.Tensor, n_q: torch.Tensor | int | None = None) -> dict:
        """z: [B, D, F]. n_q: stages per batch element ([B] or int); None = all in eval mode,
        quantizer dropout in training. Codes of stages an element does not use are -1."""
        B = z.shape[0]
        n = self._n_q(n_q, B, z.device)  # [B]
        residual, z_q = z, torch.zeros_like(z)
        commit = codebook = z.new_zeros(())
        codes = []
        for i, vq in enumerate(self.quantizers[: int(n.max())]):
            zq_i, idx, commit_i, codebook_i, z_e = vq(residual)
            mask = i < n  # [B]: whether each element uses stage i
            z_q = z_q + zq_i * mask[:, None, None]
            residual = residual - zq_i
            commit = commit + (commit_i * mask).mean()
            codebook = codebook + (codebook_i * mask).mean()
            codes.append(torch.where(mask[:, None], idx, -1))
            if self.training:
                self._track(i, idx[mask], z_e.detach().transpose(1, 2)[mask])
        return {"z_q": z_q, "codes": torch.stack(codes, 1),  # [B, D, F], [B, max n_q, F]
                "n_q": n, "commit_loss": commit, "codebook_loss": codebook}

    @torch.no_grad()
    def _track(self, i: int, idx: torch.Tensor, z_e: torch.Tensor) -> None:
        """idx: [b, F] codes and z_e: [b, F, d] projected residuals of the elements using stage i."""
        if idx.numel() == 0:
            return
        K, decay = self.codebook_size, self.usage_decay
        share = torch.bincount(idx.reshape(-1), minlength=K).float() * (K / idx.numel())  # [K]
        self.usage[i].mul_(decay).add_(share, alpha=1 - decay)
        self.usage_steps[i] += 1
        e = z_e.reshape(-1, z_e.shape[-1])  # [b*F, d]
        if len(e) > RECENT_MAX:
            e = e[torch.randperm(len(e), device=e.device)[:RECENT_MAX]]
        self._recent[i] = e

    def code_usage(self) -> torch.Tensor:
        """[n_codebooks, K] bias-corrected usage EMA, 1.0 = uniform share. A stage with no
        statistics yet reads as uniform."""
        corr = 1 - self.usage_decay ** self.usage_steps  # [n_codebooks]
        u = self.usage / corr.clamp_min(1e-12)[:, None]
        return torch.where(self.usage_steps[:, None] > 0, u, torch.ones_like(u))

    @torch.no_grad()
    def restart_dead_codes(self, threshold: float = 0.1) -> list[int]:
        """Move every code whose usage (1.0 = uniform share) is below threshold onto a distinct
        random projected residual of the last training batch. The raw residual (not its unit
        vector) is used: the lookup only sees its direction, and its norm is the right scale for
        the code's value. Returns how many codes were restarted per stage. The optimizer's
        moments for restarted rows are stale; Adam forgets them within ~1/(1-beta2) steps."""
        usage, restarted = self.code_usage(), []
        for i, vq in enumerate(self.quantizers):
            dead = (usage[i] < threshold).nonzero().squeeze(1)
            recent = self._recent[i]
            if len(dead) == 0 or recent is None:
                restarted.append(0)
                continue
            if len(recent) >= len(dead):  # distinct candidates, else duplicates stay dead
                pick = torch.randperm(len(recent), device=recent.device)[: len(dead)]
            else:
                pick = torch.randint(len(recent), (len(dead),), device=recent.device)
            vq.codebook[dead] = recent[pick].to(vq.codebook)
            # Grace period: a restarted code counts as uniformly used until new statistics say otherwise.
            self.usage[i, dead] = 1 - self.usage_decay ** self.usage_steps[i]
            restarted.append(len(dead))
        return restarted

    def usage_entropy(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-codebook entropy of the usage EMA in bits [n_codebooks], and as a fraction of
        log2(codebook_size) (a healthy codebook is at 0.9 or more)."""
        p = self.code_usage()
        p = p / p.sum(1, keepdim=True)
        bits = -(p * p.clamp_min(1e-30).log2()).sum(1)
        return bits, bits / math.log2(self.codebook_size)

    def encode(self, z: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """z: [B, D, F] -> codes [B, n_q, F] int64 (no dropout, no usage statistics)."""
        residual, codes = z, []
        for vq in self.quantizers[: self.n_codebooks if n_q is None else int(n_q)]:
            idx = vq.lookup(vq.in_proj(residual))  # [B, F]
            residual = residual - vq.out_proj(vq.embed(idx))
            codes.append(idx)
        return torch.stack(codes, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, F] (-1 = stage unused) -> z_q [B, D, F], the sum of the stages."""
        z_q = 0
        for i in range(codes.shape[1]):
            vq, idx = self.quantizers[i], codes[:, i]
            valid = (idx >= 0).to(vq.codebook.dtype)[:, None, :]  # [B, 1, F]
            z_q = z_q + vq.out_proj(vq.embed(idx.clamp_min(0))) * valid
        return z_q
