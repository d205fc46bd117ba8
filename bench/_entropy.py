"""Order-0 entropy bounds of a weights file, as a per-byte-plane order-0 coder sees it.

For every float tensor, each element word is rotated left by one bit (the sign moves to the
LSB, as ZipNN / DFloat11 do), so the top byte holds exponent bits (the full 8-bit exponent for
BF16 / FP32; 5 exponent + 3 mantissa bits for FP16).  The word is then split into byte planes
and each plane is charged its order-0 (Shannon) entropy.  Integer tensors are split into byte
planes without rotation.  Bytes that are not tensor data (safetensors header, pickle / zip
records of a .pt file) are charged at 8 bits/byte.

Three variants are reported (all ignore the cost of storing the frequency tables):
  per_tensor  a separate histogram per (tensor, byte plane) -- what a coder with one
              frequency table per tensor plane can reach;
  per_chunk   a separate histogram per 256 KiB chunk of each tensor and byte plane -- the
              bound for ZipNN-style coders (ZipNN Huffman-codes every 256 KiB chunk with its
              own tables), which can land *below* per_tensor on non-stationary tensors;
  global      one histogram per (dtype, byte plane) for the whole file.
Context modelling can beat all three.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench._common import ST_DTYPES, read_st_header

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_CHUNK_ELEMS = 1 << 24
ADAPTIVE_CHUNK = 256 * 1024  # bytes, ZipNN's default compression_chunk


def _entropy_bits(counts: np.ndarray) -> float:
    n = counts.sum()
    if n == 0:
        return 0.0
    p = counts[counts > 0] / n
    return float(-(counts[counts > 0] * np.log2(p)).sum())


def _plane_histograms(words: np.ndarray, itemsize: int, rotate: bool) -> np.ndarray:
    """(itemsize, 256) byte-plane histograms of `words` (unsigned ints)."""
    hist = np.zeros((itemsize, 256), dtype=np.int64)
    bits = itemsize * 8
    for s in range(0, words.size, _CHUNK_ELEMS):
        w = words[s:s + _CHUNK_ELEMS]
        if rotate and itemsize > 1:
            w = (w << w.dtype.type(1)) | (w >> w.dtype.type(bits - 1))
        planes = np.ascontiguousarray(w).view(np.uint8).reshape(-1, itemsize)
        for k in range(itemsize):
            hist[k] += np.bincount(planes[:, k], minlength=256)
    return hist


def _chunked_bits(words: np.ndarray, itemsize: int, rotate: bool) -> float:
    """Sum of order-0 plane entropies with fresh histograms every ADAPTIVE_CHUNK bytes."""
    step = ADAPTIVE_CHUNK // itemsize
    return sum(sum(_entropy_bits(h) for h in _plane_histograms(words[s:s + step], itemsize, rotate))
               for s in range(0, words.size, step))


def _tensors_safetensors(path: Path) -> Iterator[tuple[str, np.ndarray, int, bool]]:
    hdr = read_st_header(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    for t in hdr.tensors:
        itemsize, is_float, _ = ST_DTYPES.get(t.dtype, (1, False, None))
        raw = mm[t.begin:t.end]
        if raw.size % itemsize:
            itemsize, is_float = 1, False
        yield t.dtype, raw.view(_UINT[itemsize]), itemsize, is_float


def _tensors_torch(path: Path) -> Iterator[tuple[str, np.ndarray, int, bool]]:
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    seen: set[int] = set()
    stack = [obj]
    while stack:  # walk nested containers; count each storage once
        o = stack.pop()
        if isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif torch.is_tensor(o):
            st = o.untyped_storage()
            if st.data_ptr() in seen or st.nbytes() == 0:
                continue
            seen.add(st.data_ptr())
            itemsize = o.element_size()
            raw = torch.empty(0, dtype=torch.uint8).set_(st).numpy()
            yield str(o.dtype).removeprefix("torch."), raw.view(_UINT[itemsize]), itemsize, \
                o.is_floating_point()


def entropy_bound(path: Path) -> dict[str, float]:
    """Return the order-0 bounds in % of the original file size (and bits per element info)."""
    size = path.stat().st_size
    if path.suffix == ".safetensors":
        tensors = _tensors_safetensors(path)
    else:
        tensors = _tensors_torch(path)
    per_tensor_bits = 0.0
    per_chunk_bits = 0.0
    plain_bits = 0.0  # per-tensor, without the sign rotation (for reference)
    tensor_bytes = 0
    global_hist: dict[tuple[str, int], np.ndarray] = defaultdict(lambda: np.zeros(256, np.int64))
    for dtype, words, itemsize, is_float in tensors:
        hist = _plane_histograms(words, itemsize, rotate=is_float)
        per_tensor_bits += sum(_entropy_bits(h) for h in hist)
        per_chunk_bits += _chunked_bits(words, itemsize, rotate=is_float)
        if is_float and itemsize > 1:
            plain_bits += sum(_entropy_bits(h) for h in _plane_histograms(words, itemsize, False))
        else:
            plain_bits += sum(_entropy_bits(h) for h in hist)
        for k in range(itemsize):
            global_hist[(dtype, k)] += hist[k]
        tensor_bytes += words.size * itemsize
    other_bits = 8.0 * (size - tensor_bytes)
    global_bits = sum(_entropy_bits(h) for h in global_hist.values())
    pct = lambda bits: 100.0 * (bits + other_bits) / 8 / size  # noqa: E731
    return {
        "per_tensor_pct": pct(per_tensor_bits),
        "per_chunk_pct": pct(per_chunk_bits),
        "global_pct": pct(global_bits),
        "per_tensor_no_sign_move_pct": pct(plain_bits),
        "non_tensor_bytes": size - tensor_bytes,
    }
