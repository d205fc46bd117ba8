"""Compressed modules in memory (NeuZip-style): weights stay entropy-coded between uses.

    import weightzip.torch as wzt
    wzt.compress_module(model)                     # lossless: outputs bit-identical
    wzt.compress_module(model, mantissa_bits=3)    # lossy, for inference
    y = model(x)                                   # each layer decodes its weights, then frees them
    wzt.decompress_module(model)                   # plain parameters again

Each floating-point parameter of at least MIN_NUMEL elements is coded like weightzip's `fast`
level (its exponent bytes rANS-coded, sign and mantissa bytes raw, or rANS-coded when they
carry fewer bits, as after rounding), in 1 MiB chunks, and its Parameter keeps an empty
tensor. A forward pre-hook on the owning module decodes the weights into a fresh tensor; the
forward hook frees it again, unless autograd will need it: in a training step (grad enabled)
the weights stay decoded through backward and the optimizer step, and
`recompress_module` (call it after `optimizer.step()`) codes the updated values and frees
them. `mantissa_bits=k` first rounds every mantissa to k bits (round to nearest even; values
that would round up to infinity are truncated instead, NaN and ±Inf are kept).

On a CUDA device the weights are coded as lanes (csrc/lanes.hpp) and stay on the device,
decoded there by csrc/cuda/lanes_kernel.cu (cuda_lanes.py); where that kernel cannot be built
they are coded in CPU memory and decoded on the CPU, then copied.

Limits: parameters only (buffers stay plain); `state_dict()` of a compressed module returns
the decoded weights, but `load_state_dict` needs `decompress_module` first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from . import _C, cuda_lanes
from .dtypes import from_torch
from .levels import LEVELS
from .torch_rounding import MANTISSA, calibrated_weights, round_mantissa

MIN_NUMEL = 4096  # smaller parameters (biases, norms) stay plain: little memory, many calls
CHUNK_BYTES = 1 << 20


@dataclass
class CodedTensor:
    """One parameter's coded bytes: chunk payloads and their table (offset, size, raw size, checksum)."""

    payload: np.ndarray
    table: np.ndarray
    dtype: torch.dtype
    shape: tuple[int, ...]
    itemsize: int
    transform: int

    @property
    def nbytes(self) -> int:
        return int(self.payload.nbytes + self.table.nbytes)


def encode_tensor(t: torch.Tensor, threads: int = 1) -> CodedTensor | cuda_lanes.LanesTensor:
    """Coded on the CPU; the weights of a CUDA tensor stay on its device, coded as lanes for
    the GPU decoder when it is available (cuda_lanes.py)."""
    if t.is_cuda and t.dtype in cuda_lanes.TRANSFORMS and cuda_lanes.library() is not None:
        return cuda_lanes.encode(t)
    dt = from_torch(t.dtype)
    if dt is None or t.dtype not in MANTISSA:
        raise ValueError(f"not a float16/bfloat16/float32 tensor: {t.dtype}")
    raw = t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
    row = int(t.shape[-1]) if t.dim() >= 2 else 0
    payload, tab = _C.encode_chunks(raw, dt.itemsize, dt.transform, CHUNK_BYTES, LEVELS["fast"], row, threads)
    offs = np.concatenate([[0], np.cumsum(tab[:, 0])[:-1]]).astype(np.uint64)
    table = np.ascontiguousarray(np.stack([offs, tab[:, 0], tab[:, 1], tab[:, 2]], axis=1).astype(np.uint64))
    # A copy of exactly the coded size: the coder's buffer is in 2 MiB huge pages, and a module
    # keeps hundreds of these for its lifetime (+0.6 MiB of RSS each otherwise).
    return CodedTensor(payload.copy(), table, t.dtype, tuple(t.shape), dt.itemsize, dt.transform)


def decode_tensor(c: CodedTensor | cuda_lanes.LanesTensor, threads: int = 1, device: Any = None) -> torch.Tensor:
    if isinstance(c, cuda_lanes.LanesTensor):
        return cuda_lanes.decode(c)
    out = torch.empty(c.shape, dtype=c.dtype)
    _C.decode_chunks(c.payload, c.table, c.itemsize, c.transform, out.reshape(-1).view(torch.uint8).numpy(),
                     threads, False)
    return out if device is None or torch.device(device).type == "cpu" else out.to(device)


class _Coded:
    """What compress_module attaches to a hooked module (a layer): the coded parameters of its
    subtree, by (owner module, parameter name), its hooks and settings."""

    def __init__(self, mantissa_bits: int | None, threads: int):
        self.params: dict[tuple[torch.nn.Module, str], CodedTensor | cuda_lanes.LanesTensor] = {}
        self.live: set[tuple[torch.nn.Module, str]] = set()  # kept decoded for backward and the step
        self.mantissa_bits, self.threads = mantissa_bits, threads
        self.handles: list[Any] = []


def _empty(p: torch.Tensor) -> torch.Tensor:
    return torch.empty(0, dtype=p.dtype, device=p.device)


def _inflate(unit: torch.nn.Module, _args: Any) -> None:
    st: _Coded = unit._wz_coded  # type: ignore[assignment]
    for (mod, name), c in st.params.items():
        p = mod._parameters[name]
        if p is not None and p.numel() == 0:
            p.data = decode_tensor(c, st.threads, p.device)


def _deflate(unit: torch.nn.Module, _args: Any, _out: Any) -> None:
    st: _Coded = unit._wz_coded  # type: ignore[assignment]
    for mod, name in st.params:
        p = mod._parameters[name]
        if p is None:
            continue
        if torch.is_grad_enabled() and p.requires_grad:
            st.live.add((mod, name))  # autograd and the optimizer need these values
        else:
            p.data = _empty(p)


def _state_dict_hook(unit: torch.nn.Module, state: dict, prefix: str, _meta: Any) -> None:
    st: _Coded = unit._wz_coded  # type: ignore[assignment]
    names = {id(m): n for n, m in unit.named_modules()}
    for (mod, name), c in st.params.items():
        key = prefix + (names[id(mod)] + "." if names.get(id(mod)) else "") + name
        p = mod._parameters[name]
        if p is not None and p.numel() == 0 and key in state:
            state[key] = decode_tensor(c, st.threads, p.device)


def _units(module: torch.nn.Module) -> list[tuple[torch.nn.Module, list[torch.nn.Module]]]:
    """The modules that decode weights for their forward: the layers (children of a ModuleList
    or Sequential, outermost ones), then every other module with parameters of its own. A
    layer's parent may read its weights directly (attention reading out_proj.weight); within a
    layer that is fine, as the whole layer is decoded. Returns (unit, modules whose parameters
    it decodes)."""
    layers: dict[str, torch.nn.Module] = {}
    for name, m in module.named_modules():
        if isinstance(m, (torch.nn.ModuleList, torch.nn.Sequential)):
            for cname, c in m.named_children():
                full = f"{name}.{cname}" if name else cname
                if not any(full.startswith(k + ".") for k in layers):
                    layers[full] = c
    covered = {id(m) for layer in layers.values() for m in layer.modules()}
    rest = [(m, [m]) for m in module.modules()
            if id(m) not in covered and any(True for _ in m.parameters(recurse=False))]
    return [(u, list(u.modules())) for u in layers.values()] + rest


def _eligible(p: torch.nn.Parameter | None) -> bool:
    return p is not None and p.dtype in MANTISSA and p.numel() >= MIN_NUMEL


def compress_module(module: torch.nn.Module, mantissa_bits: int | None = None, threads: int = 1,
                    calibrate: Callable[[torch.nn.Module], Any] | None = None,
                    correct_drift: bool = False) -> torch.nn.Module:
    """Code every float parameter (≥ MIN_NUMEL elements) of module in place; returns module.
    mantissa_bits=None is lossless; an int keeps that many mantissa bits (inference).
    calibrate (with mantissa_bits): a function that runs module on sample inputs, e.g.
    `lambda m: m(**batch)`; nn.Linear weights are then rounded to keep the layers' outputs on
    them (torch_rounding.py, GPTQ) rather than each weight to its nearest value.
    correct_drift (with calibrate): each layer also undoes the error of the layers before it
    (aims at the original model's outputs); helps deep plain stacks, hurts MiniLM
    (torch_rounding.py), and costs a second calibration run per layer."""
    if any(hasattr(m, "_wz_coded") for m in module.modules()):
        raise ValueError("this module is compressed already (decompress_module first)")
    if calibrate is not None and mantissa_bits is None:
        raise ValueError("calibrate applies to lossy coding only: give mantissa_bits too")
    units = _units(module)
    if correct_drift and calibrate is None:
        raise ValueError("correct_drift needs calibrate")
    rounded = {} if calibrate is None else calibrated_weights(units, module, calibrate, int(mantissa_bits),  # type: ignore[arg-type]
                                                               _eligible, correct_drift)
    coded: dict[int, CodedTensor | cuda_lanes.LanesTensor] = {}  # by Parameter: tied parameters are coded once
    for unit, owners in units:
        st = _Coded(mantissa_bits, threads)
        for mod in owners:
            for n, p in mod._parameters.items():
                if not _eligible(p):
                    continue
                assert p is not None
                if id(p) not in coded:
                    data = p.detach() if mantissa_bits is None else rounded.pop(id(p), None)
                    if data is None:
                        data = round_mantissa(p.detach(), mantissa_bits)  # type: ignore[arg-type]
                    coded[id(p)] = encode_tensor(data, threads)
                st.params[(mod, n)] = coded[id(p)]
        if not st.params:
            continue
        unit._wz_coded = st  # type: ignore[assignment]
        st.handles = [unit.register_forward_pre_hook(_inflate), unit.register_forward_hook(_deflate),
                      unit._register_state_dict_hook(_state_dict_hook)]
    for mod in module.modules():  # emptied only now: a tied parameter is read once, by its first owner
        for p in mod._parameters.values():
            if p is not None and id(p) in coded:
                p.data = _empty(p)
    return module


def _coded_units(module: torch.nn.Module) -> list[_Coded]:
    return [m._wz_coded for m in module.modules() if hasattr(m, "_wz_coded")]  # type: ignore[misc]


def recompress_module(module: torch.nn.Module) -> None:
    """After an optimizer step: code the updated values of weights a training step kept decoded
    (rounded again if the module is lossy), and free them."""
    fresh: dict[int, CodedTensor | cuda_lanes.LanesTensor] = {}  # by Parameter: tied parameters are coded once
    for st in _coded_units(module):
        for mod, n in sorted(st.live, key=lambda k: k[1]):
            p = mod._parameters[n]
            if p is not None and p.numel():
                data = p.detach() if st.mantissa_bits is None else round_mantissa(p.detach(), st.mantissa_bits)
                fresh[id(p)] = encode_tensor(data, st.threads)
                p.data = _empty(p)
        st.live.clear()
    for st in _coded_units(module):
        for key in st.params:
            st.params[key] = fresh.get(id(key[0]._parameters[key[1]]), st.params[key])


def decompress_module(module: torch.nn.Module) -> torch.nn.Module:
    """Plain parameters again (the decoded values), hooks removed; returns module."""
    for m in list(module.modules()):
        st = getattr(m, "_wz_coded", None)
        if st is None:
            continue
        _inflate(m, ())
        for h in st.handles:
            h.remove()
        del m._wz_coded
    return module


def coded_bytes(module: torch.nn.Module) -> int:
    """Bytes the coded parameters hold (each tied parameter once)."""
    return sum({id(c): c.nbytes for st in _coded_units(module) for c in st.params.values()}.values())
