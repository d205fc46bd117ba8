// libFuzzer harness: wz::rans_indexed::decode, the indexed-CDF rANS decoder of the learned
// codecs (.nc image streams), with tables built from the input (frames.hpp: parse_indexed).
//
// Oracle: FormatError; std::invalid_argument only for the frames that ask for invalid
// tables or indexes (mode bits 1 and 4); on success a reproducible output whose re-encoding
// decodes to the same symbols.
#include <cstring>
#include <stdexcept>

#include "../../../csrc/rans_indexed.hpp"
#include "frames.hpp"
#include "fuzz_common.hpp"

namespace {

namespace ri = wz::rans_indexed;

ri::Tables tables(const fz::IndexedFrame& f) {
  ri::Tables t;
  t.cdfs = f.cdfs.data();
  t.lengths = f.lengths.data();
  t.offsets = f.offsets.data();
  t.n_cdfs = f.n_cdfs;
  t.max_len = f.max_len;
  return t;
}

// 1 decoded, 0 FormatError, -1 invalid_argument.
int decode(const fz::IndexedFrame& f, const uint8_t* p, size_t len, int32_t fill,
           std::vector<int32_t>& out) {
  out.assign(f.n + 1, fill);
  try {
    ri::decode(p, len, f.indexes.data(), f.n, tables(f), out.data());
  } catch (const wz::FormatError&) {
    return 0;
  } catch (const std::invalid_argument&) {
    return -1;
  }
  out.resize(f.n);
  return 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fz::IndexedFrame f;
  if (!fz::parse_indexed(data, size, f)) return -1;
  std::vector<int32_t> a, b;
  const int r = decode(f, f.payload, f.len, 0x5A5A5A5A, a);
  if (r < 0 && !f.bad_args()) fz::finding("invalid_argument for valid tables and indexes");
  if (r <= 0) return 0;
  if (decode(f, f.payload, f.len, -0x5A5A5A5B, b) != 1 || a != b)
    fz::finding("indexed rANS decode is not reproducible");
  const wz::Bytes enc = ri::encode(a.data(), f.indexes.data(), f.n, tables(f));
  if (decode(f, enc.data(), enc.size(), 0, b) != 1 || a != b)
    fz::finding("re-encoded indexed rANS stream decodes differently");
  return 0;
}

// Structure-aware: the payload alone (tables and indexes kept valid) most of the time, the
// table bytes alone, or anywhere.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned seed) {
  fz::Rng rng(seed);
  const uint32_t r = rng.below(100);
  fz::IndexedFrame f;
  if (r < 25 || !fz::parse_indexed(data, size, f)) return LLVMFuzzerMutate(data, size, max_size);
  if (r < 40) {
    if (rng.below(3) == 0) {  // a mode bit
      data[0] ^= uint8_t(1u << rng.below(4));
      return size;
    }
    return fz::mutate_region(data, size, max_size, 0, f.head);
  }
  return fz::mutate_region(data, size, max_size, f.head, size);
}
