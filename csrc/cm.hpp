// Adaptive context-mixing binary arithmetic coder for byte streams (level="max").
//
// Each byte is coded MSB-first through a 255-node binary tree. Every enabled context gives
// a bit prediction from an adaptive counter; a small gated linear mixer in the logistic
// domain combines them. Everything is integer arithmetic, so encoder and decoder agree
// bit for bit on every platform.
//
// Contexts (chosen by measurement, see docs/design.md):
//   order-0, previous byte, byte one row above (same column), and an optional side byte
//   supplied per symbol (for the sign/mantissa stream: the exponent of the same value).
//
// Stream layout: u8 flags, u32 row (0 = no row context), then arithmetic-coded bytes.
#pragma once
#include <cstdint>

#include "common.hpp"

namespace wz::cm {

// Encode n bytes; returns false if the output would exceed cap bytes.
// side may be nullptr; row is the row length in elements (0 if unknown).
bool encode(const uint8_t* in, size_t n, const uint8_t* side, uint32_t row, Bytes& out,
            size_t cap);

// Decode exactly n bytes; side must be the same side stream the encoder saw.
void decode(const uint8_t* in, size_t len, const uint8_t* side, uint8_t* out, size_t n);

}  // namespace wz::cm
