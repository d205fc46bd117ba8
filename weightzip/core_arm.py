"""The fixed-point ARM latent coder (Cool-chic / C3 style), re-exported by :mod:`weightzip.core`.

A pyramid of integer latent grids (levels) is coded with one small MLP, the ARM: for each latent,
in raster order, it reads the latents at causal offsets ``(dy, dx)`` of the same grid (0 outside
the grid) and outputs the location ``mu`` and log2-scale ``ls`` of a discretised Laplace over the
alphabet ``[-A, A]`` (``A = alphabet <= 4096``). Everything is integer arithmetic in the C++ core
(csrc/arm.hpp; docs/arm_coder.md gives the reasons), so every decoder, on any machine and thread
count, computes the encoder's probabilities; the decode loop runs in C++ and needs no torch.

Fixed point (``x >> s`` is ``floor(x / 2**s)``, also for negative ``x``; ``round`` = nearest):

* weights ``W = round(w * 2**12)`` (:data:`ARM_FRAC_W` = 12), int32, shaped ``(out, in)`` like
  ``torch.nn.Linear.weight``; biases ``B = round(b * 2**20)`` (``ARM_FRAC_W + ARM_FRAC_A``), int32.
* activations have :data:`ARM_FRAC_A` = 8 fractional bits. Inputs: ``a0[j] = x_j * 2**8``.
* each layer: ``acc = B + W @ a`` (exact in int64); hidden layers
  ``a = clip((acc + 2**11) >> 12, 0, 2**31 - 1)`` (ReLU, round half up); the output layer (2 units)
  ``o = (acc + 2**11) >> 12``.
* ``mu = clip(o[0], -A * 2**8, A * 2**8)``: the Laplace location with 8 fractional bits;
  ``ls = clip(o[1], -2048, 3584)``: log2 of the Laplace scale ``b`` with 8 fractional bits, so
  ``b = 2 ** (ls / 256)`` in ``[1/256, 16384]``. Cool-chic's residual hidden layers
  ``relu(W a + b + a)`` fold into the weights as ``W + 2**12 * I``.
* limits: 1 to 64 context offsets, each causal (``dy < 0``, or ``dy == 0`` and ``dx < 0``) with
  ``|dy|, |dx| <= 16``; 0 to 8 hidden layers of 1 to 64 units; and for every unit
  ``sum(|W[i]|) * X + |B[i]| + 2**11 < 2**63`` with ``X = 2**20`` (first layer) or ``2**31 - 1``, so
  int64 accumulation never overflows.

Probabilities: 16-bit frequencies, every symbol at least 1, total exactly ``2**16``. With
``N = 2A + 1`` symbols (index ``k = latent + A``) and ``M = 2**16 - N``, the cumulative frequency is
``C(k) = k + Q(k)``, where ``Q`` is ``M`` times the Laplace CDF at the bin boundary ``k - A - 1/2``,
computed with fixed-point ``2**-u`` tables (:func:`arm_cdf` returns it; arm.hpp has the exact
integer formula). The mass beyond ``+-A`` goes to the edge symbols. The ideal cost of a latent is
``16 - log2(freq)`` bits (:func:`arm_params`); the payload adds ~4 bytes per non-empty level (the
rANS state) and a varint per level but the last (its length).

Errors: invalid nets, shapes, alphabets or latents outside ``[-A, A]`` raise ``ValueError``; wrong
types ``TypeError``; corrupt or truncated payloads :class:`~weightzip.errors.FormatError`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _C
from ._arrays import _I32, _int32

__all__ = ["ARM_CONTEXT_5X5", "ARM_FRAC_A", "ARM_FRAC_W", "ARM_LOG_SCALE_MAX", "ARM_LOG_SCALE_MIN",
           "ARM_MAX_ALPHABET", "ArmNet", "ArmParams", "arm_cdf", "arm_decode", "arm_encode",
           "arm_params", "SYNTH_CLAMP", "SYNTH_FRAC_A", "synth_decode", "synth_forward", "synth_upsample"]

#: Fractional bits of the weights (biases have ARM_FRAC_W + ARM_FRAC_A).
ARM_FRAC_W = 12
#: Fractional bits of activations, ``mu`` and the log2-scale ``ls``.
ARM_FRAC_A = 8
#: Largest alphabet bound A (latents in [-A, A]).
ARM_MAX_ALPHABET = 4096
#: Range of the log2-scale code ``ls`` (8 fractional bits): scales 2**-8 .. 2**14.
ARM_LOG_SCALE_MIN = -8 * 256
ARM_LOG_SCALE_MAX = 14 * 256
#: Fractional bits of the synthesis activations (:func:`synth_upsample`, :func:`synth_forward`).
SYNTH_FRAC_A = 12
#: Synthesis activations are clamped to [-SYNTH_CLAMP, SYNTH_CLAMP].
SYNTH_CLAMP = 1 << 30
#: The 12 causal positions of a 5x5 window, (dy, dx) in raster order.
ARM_CONTEXT_5X5 = ((-2, -2), (-2, -1), (-2, 0), (-2, 1), (-2, 2),
                   (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2), (0, -2), (0, -1))

def _ints(x: Any, name: str, ndim: int) -> np.ndarray:
    """x as a C-contiguous int32 array of `ndim` dimensions; integers only, in int32 range."""
    return _int32(x, name, ndim)


def _int_arg(v: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    v = int(v)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


@dataclass(frozen=True, eq=False)
class ArmNet:
    """A quantised ARM: ``context`` int32 ``[n_ctx, 2]`` rows ``(dy, dx)`` (input ``j`` is the
    latent at offset ``context[j]``); ``weights[l]`` int32 ``[out_l, in_l]`` and ``biases[l]``
    int32 ``[out_l]`` per layer, the last layer with 2 outputs (``mu``, ``ls``). Build it from
    integer arrays, from a mapping with those three keys (:meth:`of`), or from a float net
    (:meth:`quantize`). The C++ core checks the limits when the net is used."""

    context: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        ctx = _ints(self.context, "context", 2)
        if ctx.shape[1:] != (2,):
            raise ValueError(f"context must be (n_ctx, 2), got shape {ctx.shape}")
        if isinstance(self.weights, (str, bytes)) or isinstance(self.biases, (str, bytes)):
            raise TypeError("weights and biases must be sequences of arrays")
        w = tuple(_ints(x, f"weights[{i}]", 2) for i, x in enumerate(self.weights))
        b = tuple(_ints(x, f"biases[{i}]", 1) for i, x in enumerate(self.biases))
        if len(w) != len(b):
            raise ValueError(f"{len(w)} weight arrays for {len(b)} bias arrays")
        object.__setattr__(self, "context", ctx)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "biases", b)

    @classmethod
    def of(cls, net: ArmNet | Mapping[str, Any]) -> ArmNet:
        """``net`` itself, or the net of a mapping with keys context, weights, biases."""
        if isinstance(net, ArmNet):
            return net
        if isinstance(net, Mapping):
            return cls(net["context"], tuple(net["weights"]), tuple(net["biases"]))
        raise TypeError(f"net must be an ArmNet or a mapping, not {type(net).__name__}")

    @classmethod
    def quantize(cls, context: Any, weights: Sequence[Any], biases: Sequence[Any]) -> ArmNet:
        """A float net (weights ``[out, in]``, biases ``[out]``, as float arrays or tensors) in
        the fixed-point formats: ``round(w * 2**12)``, ``round(b * 2**20)`` (half to even).
        ``ValueError`` if a value does not fit int32."""
        def q(x: Any, bits: int, name: str) -> np.ndarray:
            if hasattr(x, "detach"):
                x = x.detach().cpu().numpy()
            a = np.rint(np.asarray(x, np.float64) * 2.0 ** bits)
            if not np.all(np.abs(a) <= _I32.max):
                raise ValueError(f"{name} does not fit the fixed-point format")
            return a.astype(np.int32)
        return cls(np.asarray(context),
                   tuple(q(w, ARM_FRAC_W, f"weights[{i}]") for i, w in enumerate(weights)),
                   tuple(q(b, ARM_FRAC_W + ARM_FRAC_A, f"biases[{i}]") for i, b in enumerate(biases)))

    def _args(self) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        return self.context, list(self.weights), list(self.biases)


class ArmParams(NamedTuple):
    """One level's model, as :func:`arm_params` returns it (int32 arrays of the level's shape):
    ``mu`` and ``log_scale`` after clamping (8 fractional bits), and ``freq``, the 16-bit
    frequency of each latent's value (its cost is ``16 - log2(freq)`` bits)."""

    mu: npt.NDArray[np.int32]
    log_scale: npt.NDArray[np.int32]
    freq: npt.NDArray[np.int32]

    def bits(self) -> float:
        """The ideal cost of the level in bits: ``sum(16 - log2(freq))``."""
        return float(np.sum(16.0 - np.log2(self.freq.astype(np.float64))))


def _levels(levels: Any) -> list[np.ndarray]:
    if isinstance(levels, np.ndarray) or hasattr(levels, "detach") or isinstance(levels, (str, bytes)):
        raise TypeError("levels must be a sequence of 2-D arrays (one per level)")
    return [_ints(x, f"levels[{i}]", 2) for i, x in enumerate(levels)]


def arm_encode(levels: Sequence[Any], net: ArmNet | Mapping[str, Any], alphabet: int,
               threads: int = 1) -> bytes:
    """Code integer latent grids (each 2-D ``(h, w)``, values in ``[-alphabet, alphabet]``) with the
    ARM ``net``. Levels are independent rANS streams; up to ``threads`` workers (0: one per core)
    code them in parallel, and the bytes do not depend on it. The payload holds no shapes, net or
    alphabet: the decoder must be given the same ones."""
    n = ArmNet.of(net)
    a = _int_arg(alphabet, "alphabet", 0, ARM_MAX_ALPHABET)
    t = _int_arg(threads, "threads", 0, 1024)
    return _C.arm_encode(_levels(levels), *n._args(), a, t).tobytes()


def arm_decode(data: Any, shapes: Sequence[tuple[int, int]], net: ArmNet | Mapping[str, Any],
               alphabet: int, threads: int = 1) -> list[npt.NDArray[np.int32]]:
    """Inverse of :func:`arm_encode`: one int32 ``(h, w)`` array per shape. ``data``: bytes,
    bytearray, memoryview or a 1-D uint8 array. The output does not depend on ``threads``."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise TypeError(f"data must be bytes or uint8, not {data.dtype}")
        buf = np.ascontiguousarray(data).reshape(-1)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)  # TypeError if not bytes-like
    if isinstance(shapes, (str, bytes)):
        raise TypeError("shapes must be a sequence of (h, w) pairs")
    sh = []
    for i, s in enumerate(shapes):
        if len(s) != 2:
            raise ValueError(f"shapes[{i}] must be (h, w), got {s!r}")
        sh.append((_int_arg(s[0], f"shapes[{i}][0]", 0, 1 << 20), _int_arg(s[1], f"shapes[{i}][1]", 0, 1 << 20)))
    n = ArmNet.of(net)
    a = _int_arg(alphabet, "alphabet", 0, ARM_MAX_ALPHABET)
    t = _int_arg(threads, "threads", 0, 1024)
    return list(_C.arm_decode(buf, sh, *n._args(), a, t))


def arm_params(levels: Sequence[Any], net: ArmNet | Mapping[str, Any], alphabet: int) -> list[ArmParams]:
    """The exact model of every latent of every level (what the coder uses): one
    :class:`ArmParams` per level. The payload of :func:`arm_encode` is within a few bytes per
    level of ``sum(p.bits() for p in arm_params(...)) / 8``."""
    n = ArmNet.of(net)
    a = _int_arg(alphabet, "alphabet", 0, ARM_MAX_ALPHABET)
    return [ArmParams(*_C.arm_params(x, *n._args(), a)) for x in _levels(levels)]


def arm_cdf(mu: Any, log_scale: Any, alphabet: int) -> npt.NDArray[np.int32]:
    """The cumulative frequencies ``C(0) .. C(2A+1)`` (``0`` .. ``2**16``, strictly increasing) of
    the discretised Laplace of each ``(mu, log_scale)`` pair (same shape, any; clamped as the
    network's outputs are): int32 ``[*shape, 2A + 2]``. Symbol ``s`` has frequency
    ``C[..., s + A + 1] - C[..., s + A]``."""
    m = _ints(mu, "mu", np.ndim(mu))
    s = _ints(log_scale, "log_scale", np.ndim(log_scale))
    if m.shape != s.shape:
        raise ValueError(f"mu {m.shape} and log_scale {s.shape} must have the same shape")
    a = _int_arg(alphabet, "alphabet", 0, ARM_MAX_ALPHABET)
    out = _C.arm_cdf(m.reshape(-1), s.reshape(-1), a)
    return out.reshape(*m.shape, 2 * a + 2)


# -- upsampler and synthesis of overfitted image decoders (csrc/synthesis.hpp) -------------------
# Exact fixed point with SYNTH_FRAC_A fractional bits; neurocodec/runtime/coolchic/decoder.py has
# the numpy reference (same bits). Limits: |latent| <= 2**18; |tap|, |weight|, |bias| <= 2**12;
# shifts k_up, k_syn in [0, 30]; odd kernels with in * k**2 <= 1024; ValueError otherwise.
SynthLayer = tuple[Any, Any, int]  # weights int [out, in, k, k], biases int [out], flags


def _taps(taps: Any, k_up: Any) -> tuple[np.ndarray, int]:
    t = _ints(taps, "taps", 1)
    if t.shape != (4,):
        raise ValueError(f"taps must hold 4 integers, got shape {t.shape}")
    return t, _int_arg(k_up, "k_up", 0, 30)


def _synth_layers(layers: Sequence[SynthLayer]) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    if isinstance(layers, (str, bytes)) or not len(layers):
        raise ValueError("layers must be a non-empty sequence of (weights, biases, flags)")
    ws, bs, fl = [], [], []
    for i, layer in enumerate(layers):
        if len(layer) != 3:
            raise ValueError(f"layers[{i}] must be (weights, biases, flags)")
        w, b, f = layer
        ws.append(_ints(w, f"layers[{i}] weights", 4))
        bs.append(_ints(b, f"layers[{i}] biases", 1))
        fl.append(_int_arg(f, f"layers[{i}] flags", 0, 3))
    return ws, bs, fl


def synth_upsample(levels: Sequence[Any], taps: Any, k_up: int) -> npt.NDArray[np.int32]:
    """Integer latent levels (2-D, finest first, each at most twice the size of the next) ->
    the synthesis input, int32 ``[L, h0, w0]``, coarsest level first: each level ``<< 12``, then
    doubled (width, then height; 4 ``taps``, ``k_up`` fractional bits, edges repeated) up to
    the finest level's size."""
    t, k = _taps(taps, k_up)
    return _C.synth_upsample(_levels(levels), t, k)


def synth_forward(x: Any, layers: Sequence[SynthLayer], k_syn: int) -> npt.NDArray[np.int32]:
    """The synthesis of ``x`` (int ``[L, H, W]``, ``|x| <= 2**30``): the last layer's activations,
    int32 ``[planes, H, W]``. ``layers``: ``(weights [out, in, k, k], biases [out], flags)`` with
    flags bit 0 ReLU, bit 1 residual (``out == in``); ``k_syn`` fractional bits of the
    parameters."""
    ws, bs, fl = _synth_layers(layers)
    return _C.synth_forward(_ints(x, "x", 3), ws, bs, fl, _int_arg(k_syn, "k_syn", 0, 30))


def synth_decode(levels: Sequence[Any], taps: Any, k_up: int, layers: Sequence[SynthLayer],
                 k_syn: int) -> npt.NDArray[np.uint8]:
    """:func:`synth_upsample`, :func:`synth_forward` and the pixel conversion
    ``clip((a * 255 + 2**11) >> 12, 0, 255)`` in one call: uint8 ``[h0, w0, planes]``."""
    t, k = _taps(taps, k_up)
    ws, bs, fl = _synth_layers(layers)
    return _C.synth_decode(_levels(levels), t, k, ws, bs, fl, _int_arg(k_syn, "k_syn", 0, 30))
