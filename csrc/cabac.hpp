// DeepCABAC-style context-adaptive binary arithmetic coder for quantisation indices
// (docs/plans/checkpoint_series.md §3.3). Plain C++17, no Python; integer arithmetic only,
// so encoder and decoder agree bit for bit on every platform.
//
// Coder: LZMA-style binary range coder (32-bit range, carry propagation), 15-bit
// probabilities from two-rate adaptation (a fast and a slow estimate, averaged; both start
// at a running mean, then settle at shift 7 and 10, see cabac.cpp). Bypass bits go to a
// separate raw bit buffer (LSB first).
//
// Binarisation of each q (scan order; neighbours L = q[i-1], A = q[i-row]; nb = mean |L|,|A|):
//   sig  (q != 0)        ctx: min(2, [L≠0] + [A≠0]) + 3 · reference class (0..2)
//   sign (q < 0)         ctx: sign of L (0, +, -)
//   gt_j (|q| > j), j = 1..k_unary, stop at the first 0; ctx: j × (nb <, =, > j)
//   rem = |q| - k_unary - 1 if |q| > k_unary: Exp-Golomb of order g; prefix bins
//        context-coded (ctx: position × the neighbour's prefix length <, =, > position),
//        the suffix's top three bits context-coded (a binary tree per prefix position), the
//        rest bypass.
// k_unary (0..8) and g (0..20) are chosen per stream from the |q| histogram.
//
// Stream: u8 k_unary, u8 eg_order, varint arith_len, arith bytes, raw bypass bytes (the rest).
#pragma once
#include <cstdint>

#include "common.hpp"

namespace wz::cabac {

constexpr int32_t kMaxAbs = 1 << 30;  // |q| the coder accepts
constexpr int kMaxUnary = 8, kMaxEgOrder = 20;

struct Params {
  uint8_t k_unary = 4;
  uint8_t eg_order = 0;
};

// The parameters minimising an order-0 estimate of the coded size (plus a small cost per
// context-coded bin) for these values.
Params choose(const int32_t* q, size_t n);

// Append the stream for q[0, n) to out. cls: per element reference class 0..2 (nullptr: all 0);
// row: row length in elements (0: no row above). Throws std::invalid_argument if |q| > kMaxAbs.
void encode(const int32_t* q, size_t n, const uint8_t* cls, uint32_t row, const Params& p,
            Bytes& out);
void encode(const int32_t* q, size_t n, const uint8_t* cls, uint32_t row, Bytes& out);

// Decode exactly n values from in[0, len) (the whole stream). Malformed input throws
// FormatError; it never reads outside the buffer.
void decode(const uint8_t* in, size_t len, const uint8_t* cls, uint32_t row, int32_t* q, size_t n);

}  // namespace wz::cabac
