"""The streams of a coolchic .nc file (inside the container of bitstream.py, whose shape is
(H, W, channels) and whose quality is the index of the λ the encoder used). numpy only.

Three streams:

0. **header** (version 1), bytes:

   ===========  ==========================================================================
   u8           version (1)
   u8           levels L (1..8); level i is ceil(H / 2^i) x ceil(W / 2^i)
   varint       latent alphabet A (0..4096): latents are integers in [-A, A]
   u8, 2 x i8   ARM context: count (1..64), then (dy, dx) per input (causal, |d| <= 16)
   u8, u8 ...   ARM hidden widths: count (0..8), then each (1..64)
   u8           k_arm (2..12): ARM weights and biases are integers times 2^-k_arm
   u8           k_up (0..12): the 4 upsampler taps are integers times 2^-k_up
   u8, 3 x u8   synthesis layers: count (1..8), then per layer out (1..64), kernel (1 or 3),
                flags (bit 0 ReLU, bit 1 residual: out += in, needs out == in); the last
                layer's out is the number of image planes (1 for gray sources, else 3)
   u8           k_syn (0..12): synthesis weights and biases are integers times 2^-k_syn
   ===========  ==========================================================================

1. **parameters**: the integers of five groups, in this order: ARM weights (layer by layer,
   torch Linear layout [out, in]), ARM biases, upsampler taps, synthesis weights (layer by
   layer, torch Conv2d layout [out, in, k, k]), synthesis biases. Each group is coded with the
   core's fixed-point ARM coder (weightzip.core.arm_encode) as one 1 x n grid under a
   context-free discretised Laplace (zero weights, location 0, log2-scale ls): per group a
   varint A_g (<= 4096), a varint ls_g + 2048 (0..5632) and a varint payload length, then
   the five payloads back to back. The counts n come from the architecture in the header.
2. **latents**: arm_encode of the L levels with the ARM of stream 1 and alphabet A.

Every count is bounded before anything is allocated; the image size is bounded by the image
kind's limits (limits.py), so the latent and parameter counts are too.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neurocodec.runtime.image.limits import ImageNcError
from weightzip.core import ARM_MAX_ALPHABET, FormatError, VarintError, arm_decode, arm_encode, read_varint, write_varint

VERSION = 1
MAX_LEVELS = 8
MAX_WIDTH = 64
MAX_LAYERS = 8
MAX_CTX = 64
UP_TAPS = 4
F_A = 12  # fractional bits of the upsampler's and the synthesis' activations
CLAMP = 1 << 30  # every activation is clamped to [-CLAMP, CLAMP]: int64 never overflows
LS_MIN, LS_MAX = -2048, 3584
GROUPS = ("arm_w", "arm_b", "up", "syn_w", "syn_b")


class CoolChicNcError(ImageNcError):
    """A coolchic .nc file that cannot be decoded (an NcFormatError, a ValueError)."""


@dataclass(frozen=True)
class Header:
    levels: int
    alphabet: int
    context: tuple[tuple[int, int], ...]
    arm_hidden: tuple[int, ...]
    k_arm: int
    k_up: int
    syn: tuple[tuple[int, int, int], ...]  # (out, kernel, flags)
    k_syn: int

    # -- shapes derived from the architecture --------------------------------------------
    def level_shapes(self, h: int, w: int) -> list[tuple[int, int]]:
        return [(-(-h // (1 << i)), -(-w // (1 << i))) for i in range(self.levels)]

    def arm_layers(self) -> list[tuple[int, int]]:
        """(out, in) of each ARM layer."""
        dims = [len(self.context), *self.arm_hidden, 2]
        return [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]

    def syn_layers(self) -> list[tuple[int, int, int, int]]:
        """(out, in, kernel, flags) of each synthesis layer."""
        out, c = [], self.levels
        for o, k, f in self.syn:
            out.append((o, c, k, f))
            c = o
        return out

    def group_sizes(self) -> dict[str, int]:
        return {"arm_w": sum(o * i for o, i in self.arm_layers()), "arm_b": sum(o for o, _ in self.arm_layers()),
                "up": UP_TAPS, "syn_w": sum(o * i * k * k for o, i, k, _ in self.syn_layers()),
                "syn_b": sum(o for o, *_ in self.syn_layers())}

    def n_params(self) -> int:
        return sum(self.group_sizes().values())

    def macs(self, h: int, w: int) -> dict[str, float]:
        """Decoder multiply-accumulates per pixel: ARM (per latent, all levels), upsampler,
        synthesis."""
        shapes = self.level_shapes(h, w)
        arm = sum(o * i for o, i in self.arm_layers()) * sum(a * b for a, b in shapes)
        up = 0
        for lvl in range(self.levels - 2, -1, -1):  # channels above level lvl, upsampled x2 in 2 passes
            ch, (lh, lw) = self.levels - 1 - lvl, shapes[lvl + 1]
            up += ch * UP_TAPS * (lh * 2 * lw + 4 * lh * lw)
        syn = sum(o * i * k * k for o, i, k, _ in self.syn_layers()) * h * w
        px = h * w
        return {"arm": arm / px, "upsampler": up / px, "synthesis": syn / px, "total": (arm + up + syn) / px}

    def check(self, channels: int) -> str | None:
        """Why this header cannot be decoded for an image of `channels`, or None."""
        if not 1 <= self.levels <= MAX_LEVELS or not 0 <= self.alphabet <= ARM_MAX_ALPHABET:
            return "levels or alphabet"
        if not 1 <= len(self.context) <= MAX_CTX or any(
                not (dy < 0 or (dy == 0 and dx < 0)) or abs(dy) > 16 or abs(dx) > 16 for dy, dx in self.context):
            return "ARM context"
        if len(self.arm_hidden) > 8 or any(not 1 <= v <= MAX_WIDTH for v in self.arm_hidden):
            return "ARM widths"
        if not 2 <= self.k_arm <= 12 or not 0 <= self.k_up <= 12 or not 0 <= self.k_syn <= 12:
            return "quantisation steps"
        if not 1 <= len(self.syn) <= MAX_LAYERS:
            return "synthesis depth"
        for o, i, k, f in self.syn_layers():
            if not 1 <= o <= MAX_WIDTH or k not in (1, 3) or f > 3 or (f & 2 and o != i):
                return "synthesis layer"
        if self.syn[-1][0] != (1 if channels == 1 else 3):
            return "synthesis output planes"
        return None

    # -- bytes --------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        out = bytearray([VERSION, self.levels]) + write_varint(self.alphabet)
        out += bytes([len(self.context)]) + b"".join(int(v).to_bytes(1, "little", signed=True)
                                                     for p in self.context for v in p)
        out += bytes([len(self.arm_hidden), *self.arm_hidden, self.k_arm, self.k_up, len(self.syn)])
        out += b"".join(bytes(layer) for layer in self.syn) + bytes([self.k_syn])
        return bytes(out)

    @classmethod
    def from_bytes(cls, buf: bytes, channels: int) -> Header:
        r = _Reader(buf)
        if r.u8() != VERSION:
            raise CoolChicNcError("coolchic header version is not 1 (newer file or corrupt)")
        levels = r.u8()
        alphabet = r.varint(ARM_MAX_ALPHABET)
        ctx = tuple((r.i8(), r.i8()) for _ in range(r.u8()))
        hidden = tuple(r.u8() for _ in range(r.u8()))
        k_arm, k_up = r.u8(), r.u8()
        syn = tuple((r.u8(), r.u8(), r.u8()) for _ in range(r.u8()))
        hd = cls(levels, alphabet, ctx, hidden, k_arm, k_up, syn, r.u8())
        if r.pos != len(buf):
            raise CoolChicNcError("corrupt coolchic header (trailing bytes)")
        problem = hd.check(channels)
        if problem:
            raise CoolChicNcError(f"corrupt coolchic header ({problem})")
        return hd


class _Reader:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise CoolChicNcError("truncated coolchic header")
        self.pos += 1
        return self.buf[self.pos - 1]

    def i8(self) -> int:
        v = self.u8()
        return v - 256 if v > 127 else v

    def varint(self, bound: int) -> int:
        try:
            v, self.pos = read_varint(self.buf, self.pos, bound)
        except VarintError as e:
            raise CoolChicNcError(f"corrupt coolchic stream ({e})") from None
        return v


# -- parameter groups ------------------------------------------------------------------------
_CTX1 = np.array([[0, -1]], np.int32)


def _flat_net(ls: int) -> dict:
    """A context-free Laplace(0, 2^(ls/256)) as an ARM: zero weights, biases (0, ls)."""
    return {"context": _CTX1, "weights": [np.zeros((2, 1), np.int32)],
            "biases": [np.array([0, ls << 12], np.int32)]}


def laplace_ls(v: np.ndarray) -> int:
    """The log2-scale code (8 fractional bits) of the maximum-likelihood Laplace of v."""
    b = float(np.mean(np.abs(v))) if v.size else 1.0
    return int(np.clip(round(256 * np.log2(max(b, 2.0 ** -8))), LS_MIN, LS_MAX))


def encode_params(groups: dict[str, np.ndarray]) -> bytes:
    """The parameter stream of the five integer groups (each flattened; |v| <= 4096)."""
    head, payloads = bytearray(), []
    for g in GROUPS:
        v = np.asarray(groups[g], np.int64).reshape(1, -1)
        a = int(np.abs(v).max()) if v.size else 0
        if a > ARM_MAX_ALPHABET:
            raise ValueError(f"parameter group {g} has a value beyond ±{ARM_MAX_ALPHABET}")
        ls = laplace_ls(v)
        p = arm_encode([v.astype(np.int32)], _flat_net(ls), a) if v.size else b""
        head += write_varint(a) + write_varint(ls - LS_MIN) + write_varint(len(p))
        payloads.append(p)
    return bytes(head) + b"".join(payloads)


def decode_params(buf: bytes, hd: Header) -> dict[str, np.ndarray]:
    """-> the five groups as int64 vectors; CoolChicNcError if the stream is bad."""
    r, sizes = _Reader(buf), hd.group_sizes()
    meta = [(r.varint(ARM_MAX_ALPHABET), r.varint(LS_MAX - LS_MIN) + LS_MIN, r.varint(len(buf))) for _ in GROUPS]
    if r.pos + sum(m[2] for m in meta) != len(buf):
        raise CoolChicNcError("corrupt coolchic parameter stream (lengths)")
    out, pos = {}, r.pos
    for g, (a, ls, n) in zip(GROUPS, meta):
        try:
            v = arm_decode(buf[pos:pos + n], [(1, sizes[g])], _flat_net(ls), a)[0] if sizes[g] else \
                np.zeros((1, 0), np.int32)
        except (FormatError, ValueError) as e:
            raise CoolChicNcError(f"corrupt coolchic parameter stream ({e})") from None
        out[g] = v.reshape(-1).astype(np.int64)
        pos += n
    return out


def split_layers(flat: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """A flat group -> one array per shape, in order."""
    out, pos = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(flat[pos:pos + n].reshape(s))
        pos += n
    return out


def arm_net(hd: Header, groups: dict[str, np.ndarray]) -> dict:
    """The fixed-point ArmNet of the decoded ARM groups (weights << (12 - k), biases << (20 - k))."""
    layers = hd.arm_layers()
    ws = split_layers(groups["arm_w"], layers)
    bs = split_layers(groups["arm_b"], [(o,) for o, _ in layers])
    return {"context": np.array(hd.context, np.int32).reshape(-1, 2),
            "weights": [(w << (12 - hd.k_arm)).astype(np.int32) for w in ws],
            "biases": [(b << (20 - hd.k_arm)).astype(np.int32) for b in bs]}
