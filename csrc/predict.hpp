// Predictors for coding a chunk against the same chunk of a reference (an earlier checkpoint):
// the residual of x given ref, and back. Plain C++17, no Python. Stored in files: never
// renumber. See docs/format.md, "version 2: references".
//
//   kXor     r = x ^ ref (bytewise); the dtype's transform then splits r into planes
//   kSub     d = x - ref modulo 2^(8 * itemsize) on the little-endian bit patterns read as
//            unsigned integers, r = zigzag(d as signed); planes of r most significant first
//   kSubLen  as kSub, then per element L = bit length of r (stream 0) and the L - 1 bits of r
//            below its leading one, packed LSB first (stream 1)
//
// All three are exact bijections for any bit patterns (floats of any kind, ints, NaNs).
#pragma once
#include <cstddef>
#include <cstdint>

#include "common.hpp"

namespace wz {

enum class Predictor : uint8_t { kNone = 0, kXor = 1, kSub = 2, kSubLen = 3 };
constexpr int kNumPredictors = 4;

// Whether kSub/kSubLen support this item size (1, 2, 4 or 8 bytes).
inline bool sub_supported(int itemsize) {
  return itemsize == 1 || itemsize == 2 || itemsize == 4 || itemsize == 8;
}

// kXor and kSub on n elements of itemsize bytes: out gets n * itemsize bytes (for kSub the
// zigzag residuals as little-endian words).
void predict(Predictor p, int itemsize, const uint8_t* x, const uint8_t* ref, size_t n,
             uint8_t* out);
void unpredict(Predictor p, int itemsize, const uint8_t* res, const uint8_t* ref, size_t n,
               uint8_t* out);

// kSubLen's split of n zigzag residuals (little-endian words, as predict(kSub) makes):
// lens gets n bytes; bits gets the packed low bits, resized to exactly bitlen_bytes(lens).
void bitlen_split(int itemsize, const uint8_t* zz, size_t n, uint8_t* lens, Bytes& bits);
// Bytes of the packed low bits that lens describe; FormatError for a length > 8 * itemsize.
size_t bitlen_bytes(int itemsize, const uint8_t* lens, size_t n);
// Inverse of bitlen_split: zz gets n words. bits must hold bitlen_bytes(lens) bytes.
void bitlen_merge(int itemsize, const uint8_t* lens, const uint8_t* bits, size_t nbits_bytes,
                  size_t n, uint8_t* zz);

}  // namespace wz
