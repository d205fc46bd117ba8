// Encoder-side modelling for rans: statistics, the choice of context and frequencies, and
// the bit-packed stream header and tables shared with the decoder.
#pragma once
#include <cstdint>

#include "rans.hpp"

namespace wz::rans {

// What kind of context may help a stream (the decoder only sees the resulting Context).
enum class Family {
  kNone,      // order 0 only
  kLowZeros,  // previous symbol of the state, by its trailing zero bits (low mantissa bytes
              // of values stored at a reduced precision)
  kSide,      // the side byte, by value (sign/mantissa given the exponent)
  kPosition,  // segments of the stream (exponents drifting across the tensors of a chunk)
};

// The histograms a model choice needs, from one pass over the stream: symbols by fine
// class (of their reference byte, or of their segment) and, summed, order 0.
struct Stats {
  static constexpr int kFine = 9;
  Family family;
  int lo = 0;  // kSide: side values lo + f are fine class f (clamped to 0..7)
  int fs = 0;  // kPosition: fine class f holds symbols [f << fs, (f + 1) << fs)
  uint32_t hist[256];
  uint32_t fine[kFine][256];
};
// side/side_hist (the side stream and its histogram) are read only for kSide.
void gather_stats(const uint8_t* in, size_t n, Family family, const uint8_t* side,
                  const uint32_t side_hist[256], Stats& st);

// Choose contexts and frequencies; returns the estimated coded size in bytes.
size_t choose_model(const Stats& st, Model& m);

// The stream header and frequency tables (rans_table.cpp). get_model validates everything
// the decoder relies on and throws FormatError otherwise.
void put_model(const Model& m, Bytes& out);
void get_model(Reader& r, Model& m);
// Size in bits of one table (frequencies f, grouping g) as put_model writes it.
size_t table_bits(const uint32_t f[256], int g);

}  // namespace wz::rans
