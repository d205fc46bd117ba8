# Type stub of weightzip._C, the private C++ extension (csrc/bindings.cpp over the csrc core).
# Use the weightzip package instead: its API is the stable one.
#
# Buffers (`_Buffer`) are any C-contiguous objects with the buffer protocol (bytes, bytearray,
# memoryview, numpy arrays, ...), read as raw bytes without a copy; the GIL is released while
# coding. Errors: invalid arguments raise ValueError; malformed data raises
# weightzip.errors.FormatError, checksum mismatches weightzip.errors.ChecksumError (a
# FormatError); a read-only `out` raises BufferError; arguments of the wrong type TypeError.
#
# Integer arguments take anything with __index__ (int, numpy integers). Integer codes:
# `transform` is the byte-plane transform (0 bytes, 1 bf16, 2 fp16, 3 fp32, 4 fp64, 5 fp8;
# weightzip.dtypes), `level` 0 fast, 1 default, 2 max, `force_method` -1 (choose) or a stream
# method (0 raw, 1 const, 2 rans, 3 zstd, 4 cm).
from collections.abc import Sequence
from typing import Any
from typing import SupportsIndex as _Int

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer, TypeAlias

# numpy < 2 does not declare ndarray a Buffer (its stubs lack __buffer__): name it as well.
_Buffer: TypeAlias = Buffer | npt.NDArray[Any]

# (payload, table) = encode_chunks(...): `data` (whole elements of `itemsize` bytes) split into
# chunks of `chunk_bytes` (a positive multiple of itemsize, at most 2**30; the last chunk may
# be shorter), each coded on its own, with up to `threads` workers (0: one per core); the
# output does not depend on `threads`. `row` is the row length in elements (0: unknown), a
# context for level 2. payload: uint8[total], the chunks back to back (owned by the array, no
# copy); table: uint64[n, 3] with columns csize, rsize, checksum (the low 32 bits of xxh64 of
# the raw chunk). ValueError for bad chunk_bytes, level, force_method, data not whole
# elements, or a forced method that cannot code a stream; FormatError for a transform that
# is unknown or does not match itemsize. `ref` (the same entry of a reference checkpoint)
# lets chunk i be coded against ref's chunk i if ref has the size of data, else lets every
# chunk be a zstd frame with the whole ref as its dictionary (0xFE chunks, docs/format.md);
# `predictor` -1 chooses, 0 codes independently, 1-3 forces XOR/SUB/SUBLEN (measurements).
def encode_chunks(
    data: _Buffer,
    itemsize: _Int,
    transform: _Int,
    chunk_bytes: _Int,
    level: _Int,
    row: _Int = 0,
    threads: _Int = 0,
    force_method: _Int = -1,
    ref: _Buffer | None = None,
    predictor: _Int = -1,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint64]]: ...

# (payload, table) = encode_segments(...): many entries in one call. Entry i is parts[i] (whole
# elements), coded as encode_chunks(parts[i], itemsize, transform, chunk_bytes, level, row)
# would code it, with specs[i] = (itemsize, transform, row) (uint64[len(parts), 3]); the table
# holds every entry's chunks in order. The parts are read with the GIL released: they must not
# change during the call. ValueError for a part that is not whole elements or a bad spec;
# otherwise as encode_chunks.
def encode_segments(
    parts: Sequence[_Buffer],
    specs: npt.ArrayLike,
    level: _Int,
    chunk_bytes: _Int,
    threads: _Int = 0,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint64]]: ...

# Decodes the chunks `table` describes into `out` (writable; its size must be the sum of the
# rsizes), chunk after chunk, with up to `threads` workers. table: uint64[n, 4] with columns
# offset into `payload`, csize, rsize, checksum (other integer arrays and Fortran order are
# converted). Every row is checked before anything is decoded (FormatError: chunk outside
# the payload, bad chunk size, sizes not adding up); with `verify`, each chunk's checksum
# (ChecksumError). ValueError unless table is (n, 4). `ref`: the reference the chunks were
# coded against (aligned if it has the size of out, else their dictionary), as encode_chunks
# took it; a 0xFE chunk without it is a FormatError.
def decode_chunks(
    payload: _Buffer,
    table: npt.ArrayLike,
    itemsize: _Int,
    transform: _Int,
    out: _Buffer,
    threads: _Int = 0,
    verify: bool = True,
    ref: _Buffer | None = None,
) -> None: ...

# XXH64 (seed 0) of the buffer's bytes.
# Decodes chunks of any entries into `out` (writable) in one call: table is uint64[n, 7] with
# columns offset into `payload`, csize, rsize, checksum, offset in `out`, itemsize, transform.
# Every row is checked first (FormatError: chunk outside the payload or out, bad size or spec);
# with `verify` each chunk's checksum (ChecksumError). Chunks coded against a reference are a
# FormatError; rows must not overlap in out.
def decode_segments(
    payload: _Buffer,
    table: npt.ArrayLike,
    out: _Buffer,
    threads: _Int = 0,
    verify: bool = True,
) -> None: ...

def xxh64(data: _Buffer) -> int: ...

# The parts' bytes back to back in one new bytes object (pages asked for as huge pages).
def join_bytes(parts: Sequence[_Buffer]) -> bytes: ...
def lanes_encode(data: _Buffer, transform: int) -> tuple[
    npt.NDArray[np.uint16], npt.NDArray[np.uint32], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]: ...
def lanes_decode(freqs: npt.NDArray[np.uint16], offsets: npt.NDArray[np.uint32], bytes: _Buffer, raw: _Buffer,
                 transform: int, out: _Buffer, threads: int = 1) -> None: ...

# Whether the system's libzstd could be loaded (without it the encoder never picks zstd, and
# decoding a zstd stream raises FormatError).
def zstd_available() -> bool: ...

# Number of byte streams (the item size) a transform codes; FormatError if the transform is
# unknown or does not match itemsize.
def stream_count(transform: _Int, itemsize: _Int) -> int: ...

# rANS-encode int32 symbols with CompressAI-style indexed CDF tables (csrc/rans_indexed.hpp):
# symbol i uses the table indexes[i]. symbols and indexes: int32 arrays of the same size
# (other integer arrays are cast); cdfs: int32[n_cdfs, max_len]; cdf_lengths, offsets:
# int32[n_cdfs]. Returns the payload, uint8[m] (no copy). ValueError for bad tables, shapes
# or indexes.
def indexed_encode(
    symbols: npt.ArrayLike,
    indexes: npt.ArrayLike,
    cdfs: npt.ArrayLike,
    cdf_lengths: npt.ArrayLike,
    offsets: npt.ArrayLike,
) -> npt.NDArray[np.uint8]: ...

# Inverse of indexed_encode: int32[indexes.size] symbols. ValueError for bad tables, shapes
# or indexes; FormatError for a corrupt or truncated payload.
def indexed_decode(
    payload: _Buffer,
    indexes: npt.ArrayLike,
    cdfs: npt.ArrayLike,
    cdf_lengths: npt.ArrayLike,
    offsets: npt.ArrayLike,
) -> npt.NDArray[np.int32]: ...

# ARM latent coder (csrc/arm.hpp; weightzip.core_arm is the public API). A net is passed as
# context int32[n_ctx, 2] ((dy, dx) rows), weights [int32[out, in], ...] and biases
# [int32[out], ...] (other integer arrays are cast); alphabet is A (latents in [-A, A]).
# ValueError for bad nets, shapes, alphabets or latents; FormatError for corrupt payloads.

# Codes 2-D int32 latent grids (one rANS stream per level, up to `threads` in parallel; the
# bytes do not depend on it) -> the payload, uint8[m] (no copy).
def arm_encode(
    levels: Sequence[npt.ArrayLike],
    context: npt.ArrayLike,
    weights: Sequence[npt.ArrayLike],
    biases: Sequence[npt.ArrayLike],
    alphabet: _Int,
    threads: _Int = 1,
) -> npt.NDArray[np.uint8]: ...

# Inverse of arm_encode: one int32[h, w] array per (h, w) in shapes.
def arm_decode(
    payload: _Buffer,
    shapes: Sequence[tuple[int, int]],
    context: npt.ArrayLike,
    weights: Sequence[npt.ArrayLike],
    biases: Sequence[npt.ArrayLike],
    alphabet: _Int,
    threads: _Int = 1,
) -> list[npt.NDArray[np.int32]]: ...

# (mu, log_scale, freq) of every latent of one 2-D level: int32 arrays of its shape.
def arm_params(
    level: npt.ArrayLike,
    context: npt.ArrayLike,
    weights: Sequence[npt.ArrayLike],
    biases: Sequence[npt.ArrayLike],
    alphabet: _Int,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32]]: ...

# int32[n, 2A + 2]: the cumulative frequencies C(0) .. C(2A + 1) of each (mu, log_scale) pair
# (1-D int32 arrays of the same length).
def arm_cdf(mu: npt.ArrayLike, log_scale: npt.ArrayLike, alphabet: _Int) -> npt.NDArray[np.int32]: ...

# The tables RECIP, EXP_HI, EXP_LO of arm.hpp, uint64[256] each (copies).
def arm_tables() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]: ...

# Upsampler and synthesis of overfitted image decoders (csrc/synthesis.hpp; weightzip.core_arm
# is the public API), bit-exact fixed point. Levels: 2-D int32 grids, finest first; taps:
# int32[4]; a synthesis layer is weights int32[out, in, k, k], biases int32[out] and flags
# (bit 0 ReLU, bit 1 residual). ValueError for bad shapes, layers or out-of-range values.

# The synthesis input, int32[L, h_0, w_0] (coarsest level first).
def synth_upsample(levels: Sequence[npt.ArrayLike], taps: npt.ArrayLike, k_up: _Int) -> npt.NDArray[np.int32]: ...

# The synthesis of int32[L, H, W]: the last layer's activations, int32[planes, H, W].
def synth_forward(
    x: npt.ArrayLike,
    weights: Sequence[npt.ArrayLike],
    biases: Sequence[npt.ArrayLike],
    flags: Sequence[_Int],
    k_syn: _Int,
) -> npt.NDArray[np.int32]: ...

# Levels to pixels: upsample, synthesis and conversion, uint8[h_0, w_0, planes].
def synth_decode(
    levels: Sequence[npt.ArrayLike],
    taps: npt.ArrayLike,
    k_up: _Int,
    weights: Sequence[npt.ArrayLike],
    biases: Sequence[npt.ArrayLike],
    flags: Sequence[_Int],
    k_syn: _Int,
) -> npt.NDArray[np.uint8]: ...

# The synthesis kernels in use: "avx512", "avx2" or "generic" (WEIGHTZIP_SIMD caps them).
def synth_kernel() -> str: ...

# Lossy core (csrc/lossy.hpp, quant.hpp, cabac.hpp; weightzip.lossy is the Python API). dtype:
# "F32", "F16", "BF16", "F64" (or the numpy names); domain: "linear" or "sqrt" (√x is coded,
# for Adam's exp_avg_sq). Buffers are read as raw little-endian elements.

# (payload, recon) = lossy_encode(...): quantise data with `step` (Δ >= 0), check every
# element against `bound` (|x̂ − x| <= bound; sqrt domain: |√x̂ − √x| <= bound; failures,
# NaN/±Inf are stored exactly) and code the indices with the context-adaptive binary coder.
# pred: the reconstructed reference (same size as data) for closed-loop deltas; row: the row
# length for the "above" context (0: none); theta: the rounding offset (0.5 uniform, < 0.5 a
# dead zone); threads: workers over 256 Ki-element segments (the bytes do not depend on it).
# payload and recon are uint8 arrays (recon: the decoder's output, data's size). ValueError
# for a bad dtype, domain, step, bound, theta, data not whole elements or a pred of another size.
def encode_chunks_lossy(
    data: _Buffer, itemsize: _Int, transform: _Int, chunk_bytes: _Int, row: _Int, threads: _Int,
    step: float, bound: float, domain: str = "linear", pred: _Buffer | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    """The lossy form of encode_chunks: quantised (0xFD) chunks within `bound` of data (pred:
    the reference's reconstruction), or raw where that is smaller -> (payload, table,
    reconstruction). decode_chunks reads them (with ref= when predicted)."""
    ...


def lossy_encode(
    data: _Buffer,
    dtype: str,
    step: float,
    bound: float,
    domain: str = "linear",
    pred: _Buffer | None = None,
    row: _Int = 0,
    threads: _Int = 1,
    theta: float = 0.5,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]: ...

# The reconstruction (uint8[n · itemsize]) of a lossy_encode payload of n elements of dtype;
# pred: the same reference (required exactly when the payload is predicted). FormatError for a
# malformed payload or one whose n, dtype or prediction does not match.
def lossy_decode(
    payload: _Buffer,
    n: _Int,
    dtype: str,
    pred: _Buffer | None = None,
    threads: _Int = 1,
) -> npt.NDArray[np.uint8]: ...

# A payload's header: {"dtype", "domain", "predicted", "step", "n", "row", "exceptions"}.
def lossy_info(payload: _Buffer) -> dict[str, Any]: ...
