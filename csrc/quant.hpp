// Quantiser with a guaranteed per-element error bound (docs/plans/checkpoint_series.md §3.1,
// §3.5, §3.6). Plain C++17, no Python.
//
// Linear domain:  q = round((x - p) / step),  x̂ = cast(p + q·step)
// Sqrt domain:    s = √x, p = √pred, r = p + q·step,
//                 ŝ = r            if r > 0
//                   = (r + step)/2 if r ≤ 0 < r + step  (the bin centre: s > 0 never gives 0)
//                   = 0            otherwise,           x̂ = cast(ŝ·ŝ) ≥ 0
// p is the reconstructed reference (0 without one; a non-finite or, in the sqrt domain,
// non-positive reference element counts as 0). Reconstruction is part of the format: IEEE
// double multiply and add (compiled without FMA contraction), then a round-to-nearest-even
// cast straight from double (hand-written for F16/BF16, no double rounding through float).
//
// The encoder checks every element after the cast: |x̂ - x| ≤ bound (sqrt domain:
// |√x̂ - √x| ≤ bound, and x > 0 must not give x̂ = 0). Elements that fail (after trying the
// two neighbouring levels), NaN/±Inf, negative values in the sqrt domain and indices beyond
// ±kMaxQ become exceptions: q = 0 and the element's bits are stored exactly. The rounding
// offset theta (0.5: uniform, < 0.5: dead zone; linear domain only) is encoder-only.
#pragma once
#include <cstdint>
#include <vector>

#include "common.hpp"

namespace wz::quant {

// Stored in payloads: never renumber.
enum class DType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2, kF64 = 3 };
enum class Domain : uint8_t { kLinear = 0, kSqrt = 1 };

constexpr int32_t kMaxQ = 1 << 30;  // |q| above this is an exception

int itemsize(DType d);

struct Spec {
  DType dtype = DType::kF32;
  Domain domain = Domain::kLinear;
  double step = 0;     // Δ ≥ 0 (0: every element must equal its prediction)
  double bound = 0;    // B ≥ 0, checked per element by the encoder
  double theta = 0.5;  // rounding offset in [0, 0.5]: q = sgn(t)·⌊|t| + theta⌋
};

struct Exception {
  uint64_t index;  // element index
  uint64_t bits;   // the element's raw bits (little-endian, itemsize bytes)
};

// Throws std::invalid_argument for a bad step, bound or theta.
void check_spec(const Spec& s);

// Quantise n elements (x, and pred if not null: raw little-endian elements of s.dtype).
// Writes q[n], recon[n·itemsize] (the decoder's output, exceptions included), and appends the
// exceptions (index + base) to exc.
void quantise(const Spec& s, const uint8_t* x, const uint8_t* pred, size_t n, int32_t* q,
              uint8_t* recon, std::vector<Exception>& exc, uint64_t base = 0);

// The decoder's half: recon from q and pred (exceptions are patched in by the caller).
void reconstruct(const Spec& s, const int32_t* q, const uint8_t* pred, size_t n, uint8_t* out);

// Context class 0..2 of each reference element: |p| < step/2, |p| < 4·step, larger.
void pred_classes(const Spec& s, const uint8_t* pred, size_t n, uint8_t* cls);

// Round-to-nearest-even casts straight from double (exposed for the tests).
uint16_t double_to_f16(double d);
uint16_t double_to_bf16(double d);
double f16_to_double(uint16_t h);
double bf16_to_double(uint16_t h);

}  // namespace wz::quant
