// "Indexed CDF" rANS coder for learned codecs (factorized / Gaussian-conditional entropy
// models). Plain C++17, no Python. The conventions are CompressAI's, so the buffers
// `_quantized_cdf`, `_cdf_length` and `_offset` of compressai.entropy_models.EntropyBottleneck
// and GaussianConditional can be passed as they are.
//
// Tables: cdfs is int32[n_cdfs][max_len]; row k is a CDF quantized to kPrecision = 16 bits
// with len_k = lengths[k] entries (3 <= len_k <= max_len, the rest of the row is ignored):
// cdf[0] = 0, strictly increasing (every symbol has frequency >= 1), cdf[len_k - 1] = 1 << 16.
// Row k has len_k - 1 symbols; the last one (len_k - 2) is the escape symbol.
//
// Symbol i uses table k = indexes[i]; v = symbols[i] - offsets[k] (computed in 64 bits).
// If 0 <= v < len_k - 2, v is coded with table k. Otherwise the escape symbol is coded,
// followed by the value in "bypass" mode: uniform 4-bit digits coded through the same rANS
// state with frequency 1 out of 1 << 4 (as CompressAI does):
//   raw = v < 0 ? -2v - 1 : 2 (v - (len_k - 2))         (raw < 2^33 for any int32 inputs)
//   one digit: nd = the number of 4-bit digits of raw (0 if raw = 0; at most 9)
//   nd digits: raw's 4-bit digits, least significant first (the top one is nonzero)
// The decoder rejects nd > kMaxBypassDigits, non-minimal digit strings and values outside
// int32 with FormatError, so a corrupt stream can never start long or unbounded loops.
//
// Coder: rANS with 64-bit states in [L, L << 32), L = 2^31, 32-bit renormalization (ryg's
// rans64, as used by CompressAI). The "coding operations" (symbols, digit counts, digits) are
// numbered 0, 1, 2, ... in decoding order; operation j uses state j % lanes.
//
// Byte layout of a payload (little-endian), for n symbols:
//   lanes x u64   final encoder states = initial decoder states, state 0 first
//   m x u32       renormalization words, in the order the decoder reads them
// lanes = 1 if n < kInterleaveMin, else kLanes (the decoder derives it from n, which it knows
// from the indexes). With one lane (and for n = 0: the 8 bytes of the initial state) the
// payload is byte for byte what compressai.ans.RansEncoder.encode_with_indexes produces, and
// each decoder reads the other's streams (CompressAI computes the escape value in int32, so
// only for |symbol - offset| well below 2^30; its encoder does not terminate near 2^30).
//
// Decoding checks every read against the payload's end, requires a whole number of words,
// starting states in [L, L << 32), and after the last symbol that every word was consumed and
// every state is back at L; any violation throws wz::FormatError. Bad tables, index arrays or
// sizes throw std::invalid_argument (ValueError in Python).
#pragma once
#include <cstddef>
#include <cstdint>

#include "common.hpp"

namespace wz::rans_indexed {

constexpr int kPrecision = 16;         // CDF precision (CompressAI's)
constexpr int kBypassBits = 4;         // bits per bypass digit (CompressAI's)
constexpr int kMaxBypassDigits = 9;    // raw < 2^36: covers every |v| < 2^33
constexpr int kLanes = 4;              // interleaved states for long streams
constexpr size_t kInterleaveMin = size_t(1) << 16;  // n at which kLanes states are used

// Non-owning view of the tables. All pointers are to C-contiguous int32 arrays.
struct Tables {
  const int32_t* cdfs = nullptr;     // [n_cdfs][max_len]
  const int32_t* lengths = nullptr;  // [n_cdfs]
  const int32_t* offsets = nullptr;  // [n_cdfs]
  size_t n_cdfs = 0;
  size_t max_len = 0;
};

// Throws std::invalid_argument unless every table satisfies the rules above.
void validate(const Tables& t);

// Number of interleaved states a stream of n symbols uses.
inline int lanes_for(size_t n) { return n < kInterleaveMin ? 1 : kLanes; }

// Encodes n symbols. Validates the tables and indexes (std::invalid_argument).
Bytes encode(const int32_t* symbols, const int32_t* indexes, size_t n, const Tables& t);

// Decodes n symbols into out[0..n). Validates the tables and indexes (std::invalid_argument);
// corrupt or truncated data throws FormatError. Never reads outside data[0..size).
void decode(const uint8_t* data, size_t size, const int32_t* indexes, size_t n,
            const Tables& t, int32_t* out);

}  // namespace wz::rans_indexed
