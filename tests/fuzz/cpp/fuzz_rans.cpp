// libFuzzer harness: wz::rans::Decoder (stream header and bit-packed tables, the SIMD group
// kernels and the scalar tail). Frame: u16 n, u8 split, n side bytes, the stream.
//
// Differential oracle: the stream is decoded three ways, which must agree on success or
// failure and, on success, on every byte:
//   whole   one call: the SIMD kernel (AVX-512, or AVX2 with WEIGHTZIP_SIMD=avx2) then the tail
//   scalar  one symbol, then the rest: off the group alignment, everything takes the scalar path
//   pieces  random piece sizes (seeded by `split`), multiples of 32 and ragged ones mixed
// A successful decode must also re-encode (with the stream's own model) to a stream that
// decodes to the same bytes.
#include <cstring>

#include "../../../csrc/rans.hpp"
#include "../../../csrc/rans_model.hpp"
#include "frames.hpp"
#include "fuzz_common.hpp"

namespace {

using fz::Bytes;

enum class How { kWhole, kScalar, kPieces };

bool run(const uint8_t* st, size_t len, const uint8_t* side, size_t n, How how, uint8_t split,
         Bytes& out) {
  out.assign(n + 1, fz::kFillA);  // + 1: never a null pointer
  try {
    wz::rans::Decoder d(st, len);
    size_t i = 0;
    fz::Rng rng(split);
    while (i < n) {
      size_t c = n - i;
      if (how == How::kScalar && i == 0) c = 1;
      if (how == How::kPieces) {
        const uint32_t r = rng.below(4);
        c = std::min(c, size_t(r == 0 ? 1 + rng.below(40) : r == 1 ? 32 * (1 + rng.below(8)) : c));
      }
      d.decode(out.data() + i, c, side + i);
      i += c;
    }
    d.finish();
  } catch (const wz::FormatError&) {
    return false;
  }
  out.resize(n);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < fz::kRansHead) return -1;
  const size_t n = fz::u16_at(data);
  const uint8_t split = data[2];
  if (size < fz::kRansHead + n) return -1;
  const uint8_t* side = data + fz::kRansHead;
  const uint8_t* st = side + n;
  const size_t len = size - fz::kRansHead - n;
  Bytes a, b, c;
  const bool ok = run(st, len, side, n, How::kWhole, split, a);
  if (run(st, len, side, n, How::kScalar, split, b) != ok ||
      run(st, len, side, n, How::kPieces, split, c) != ok)
    fz::finding("SIMD, scalar and piecewise rANS decoding disagree on accepting the stream");
  if (!ok) return 0;
  if (a != b || a != c) fz::finding("SIMD, scalar and piecewise rANS decoding disagree on the bytes");
  wz::Reader r(st, len);
  wz::rans::Model m;
  wz::rans::get_model(r, m);
  Bytes enc;
  if (!wz::rans::encode(a.data(), n, side, m, enc, SIZE_MAX))
    fz::finding("decoded symbols do not re-encode with the stream's model");
  if (!run(enc.data(), enc.size(), side, n, How::kWhole, split, b) || b != a)
    fz::finding("re-encoded rANS stream decodes differently");
  return 0;
}

// Structure-aware: the stream's regions are the header and tables (as get_model reads them),
// the 32 states and the words; mutations aim at one region at a time (tables intact and
// garbage words drive the kernels deep), or at n / split / side bytes, or anywhere.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned seed) {
  fz::Rng rng(seed);
  const uint32_t r = rng.below(100);
  if (size < fz::kRansHead || r < 20) return LLVMFuzzerMutate(data, size, max_size);
  const size_t n = fz::u16_at(data);
  if (r < 30 || size < fz::kRansHead + n) {  // n, the split seed, or the side bytes
    if (rng.below(2)) {
      fz::put16(data, uint32_t(std::min<size_t>(size - fz::kRansHead, n + rng.below(65) - 32)));
      return size;
    }
    return fz::mutate_region(data, size, max_size, 0, std::min(size, fz::kRansHead + n));
  }
  const size_t at = fz::kRansHead + n, len = size - at;
  size_t tables = len;
  try {
    wz::Reader rd(data + at, len);
    wz::rans::Model m;
    wz::rans::get_model(rd, m);
    tables = len - rd.left();
  } catch (const wz::FormatError&) {
  }
  const size_t states = std::min(len, tables + 4 * wz::rans::kLanes);
  const uint32_t which = rng.below(4);
  const size_t lo = which == 0 ? 0 : which == 1 ? tables : which == 2 ? states : 0;
  const size_t hi = which == 0 ? tables : which == 1 ? states : len;
  if (lo >= hi) return fz::mutate_region(data, size, max_size, at, size);
  return fz::mutate_region(data, size, max_size, at + lo, at + hi);
}
