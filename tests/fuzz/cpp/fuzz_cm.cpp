// libFuzzer harness: wz::cm::decode, the context-mixing arithmetic decoder (level "max").
// Frame: u16 n (at most kMaxCm), u8 flags (bit 0: n side bytes follow), then the stream.
//
// Oracle: FormatError, or a reproducible output (two decodes into differently pre-filled
// buffers agree) that re-encodes (with the stream's row context) to a stream decoding to it.
#include <cstring>

#include "../../../csrc/cm.hpp"
#include "frames.hpp"
#include "fuzz_common.hpp"

namespace {

using fz::Bytes;

bool decode(const uint8_t* st, size_t len, const uint8_t* side, size_t n, uint8_t fill, Bytes& out) {
  out.assign(n + 1, fill);
  try {
    wz::cm::decode(st, len, side, out.data(), n);
  } catch (const wz::FormatError&) {
    return false;
  }
  out.resize(n);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < fz::kCmHead) return -1;
  const size_t n = fz::u16_at(data);
  const bool has_side = data[2] & 1;
  if (n > fz::kMaxCm || size < fz::kCmHead + (has_side ? n : 0)) return -1;
  const uint8_t* side = has_side ? data + fz::kCmHead : nullptr;
  const uint8_t* st = data + fz::kCmHead + (has_side ? n : 0);
  const size_t len = size - size_t(st - data);
  Bytes a, b;
  const bool ok = decode(st, len, side, n, fz::kFillA, a);
  if (decode(st, len, side, n, fz::kFillB, b) != ok || (ok && a != b))
    fz::finding("cm decode is not reproducible");
  if (!ok) return 0;
  Bytes enc;
  const uint32_t row = fz::u32_at(st + 1);  // the stream's row context (ignored unless flagged)
  if (!wz::cm::encode(a.data(), n, side, (st[0] & 2) ? row : 0, enc, SIZE_MAX))
    fz::finding("cm output does not re-encode");
  if (!decode(enc.data(), enc.size(), side, n, fz::kFillB, b) || b != a)
    fz::finding("re-encoded cm stream decodes differently");
  return 0;
}

// Structure-aware: the 5-byte stream header (flags, row) and the arithmetic code are mutated
// separately; n / flags / side bytes sometimes; plain mutations too.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned seed) {
  fz::Rng rng(seed);
  const uint32_t r = rng.below(100);
  if (size < fz::kCmHead || r < 20) return LLVMFuzzerMutate(data, size, max_size);
  const size_t at = fz::kCmHead + ((data[2] & 1) ? fz::u16_at(data) : 0);
  if (r < 30 || at + 5 > size) return fz::mutate_region(data, size, max_size, 0, std::min(at, size));
  if (r < 45) return fz::mutate_region(data, size, max_size, at, at + 5);
  return fz::mutate_region(data, size, max_size, at + 5, size);
}
