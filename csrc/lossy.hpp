// Lossy payload: one self-contained, bound-checked coding of a float tensor (or chunk of one):
// quant.hpp quantises, cabac.hpp codes the indices, exceptions are stored exactly. This is
// the body of the container's quantised chunk form (0xFD, docs/plans/checkpoint_series.md
// §3.2). Plain C++17, no Python.
//
// Format (version 1; little-endian, varint = LEB128):
//   u8     version = 1
//   u8     dtype | domain << 2 | predicted << 3   (dtype: 0 F32, 1 F16, 2 BF16, 3 F64;
//                                                  domain: 0 linear, 1 sqrt; other bits 0)
//   u8     seg_log2: segments of 2^seg_log2 elements (8..30), each coded on its own
//   f64    step Δ (finite, >= 0)
//   varint n (elements), varint row (row length for the "above" context, 0: none)
//   varint seg_len × nseg                         nseg = ceil(n / 2^seg_log2)
//   nseg cabac streams (cabac.hpp), back to back
//   varint n_exc, then n_exc × (varint gap, raw element bytes)
//          index = previous index + 1 + gap (previous = -1 before the first)
// Decoding: q from the cabac streams, x̂ = quant::reconstruct(q, reference), then every
// exception's bytes are written at its index. The output does not depend on threads.
#pragma once
#include <cstdint>

#include "common.hpp"
#include "quant.hpp"

namespace wz::lossy {

constexpr int kDefaultSegLog2 = 18;  // 256 Ki elements: 1 MiB of FP32

struct Info {
  quant::DType dtype;
  quant::Domain domain;
  bool predicted;
  double step;
  uint64_t n;
  uint32_t row;
  uint64_t exceptions;
};

// Quantise and code x[n] (raw elements of spec.dtype; pred: the reconstructed reference, or
// nullptr) and write the reconstruction to recon (n · itemsize bytes). Segments are coded by
// up to `threads` workers (0: one per core). std::invalid_argument for a bad spec or seg_log2.
Bytes encode(const uint8_t* x, size_t n, const uint8_t* pred, const quant::Spec& spec,
             uint32_t row, int threads, uint8_t* recon, int seg_log2 = kDefaultSegLog2);

// The header and exception count of a payload (FormatError if malformed).
Info info(const uint8_t* p, size_t len);

// Decode a payload of n elements of dtype into out (n · itemsize bytes). pred must be given
// exactly when the payload is predicted. FormatError for a malformed payload, or one whose
// n, dtype or prediction does not match.
void decode(const uint8_t* p, size_t len, size_t n, quant::DType dtype, const uint8_t* pred,
            uint8_t* out, int threads);

}  // namespace wz::lossy
