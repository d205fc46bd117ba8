// Static order-0 rANS over bytes, 8 interleaved 64-bit states, 32-bit renormalisation.
//
// Why rANS and not Huffman: exponent streams of trained weights have a dominant symbol
// (p ~ 0.25-0.4) and a long tail; Huffman loses 0.02-0.1 bit/symbol there, rANS stays
// within ~0.01% of the order-0 entropy, and an 8-way interleaved table-driven decoder is
// as fast as a Huffman table decoder (docs/design.md has the measurements).
//
// Stream layout (all little-endian):
//   u8  scale_bits (10..15)
//   u8  number of present symbols minus one
//   present symbols: u8 each, ascending
//   varint freq for each present symbol (they sum to 1 << scale_bits)
//   8 x u64 final encoder states
//   u32 words, in decoder order
#pragma once
#include <cstdint>

#include "common.hpp"

namespace wz::rans {

constexpr int kMinScale = 10;
constexpr int kMaxScale = 15;

// 256-bin histogram; 4 sub-histograms hide store-to-load latency on repeated symbols.
void histogram(const uint8_t* in, size_t n, uint32_t hist[256]);

// Scale counts to frequencies summing to 1 << scale, every present symbol >= 1,
// spending the rounding error where it costs the fewest bits.
void normalize(const uint32_t hist[256], size_t n, int scale, uint32_t freq[256]);

// Exact size in bytes that encode() would produce for these frequencies (+- 4 bytes of
// final flush), computed from the histogram without encoding.
size_t estimate_size(const uint32_t hist[256], const uint32_t freq[256], int scale);

// Pick the scale (from a few candidates) giving the smallest estimated size.
int best_scale(const uint32_t hist[256], size_t n, uint32_t freq_out[256], size_t* size_out);

// Encode n symbols. Returns false (out unspecified) if the result would exceed cap bytes.
bool encode(const uint8_t* in, size_t n, const uint32_t freq[256], int scale, Bytes& out, size_t cap);

// Decode exactly n symbols from [in, in+len). Throws FormatError on any inconsistency.
void decode(const uint8_t* in, size_t len, uint8_t* out, size_t n);

}  // namespace wz::rans
