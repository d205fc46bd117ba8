#include "lanes.hpp"

#include <algorithm>
#include <cstring>

#include "common.hpp"
#include "parallel.hpp"
#include "transform.hpp"

namespace wz::lanes {

namespace {

int width(int transform) {
  if (transform < 1 || transform > 3) throw std::invalid_argument("lanes: BF16, FP16 or FP32 only");
  return transform == 3 ? 4 : 2;
}

// Frequencies summing to kScale, every present symbol at least 1, none above kScale - 1 (the
// decoder table keeps 12 bits of frequency): a lone symbol shares the range with a dummy.
std::vector<uint16_t> normalise(const std::vector<uint64_t>& hist, uint64_t n) {
  std::vector<uint16_t> f(256, 0);
  int present = 0, top = 0;
  for (int s = 0; s < 256; ++s) present += hist[size_t(s)] != 0;
  if (n == 0 || present == 0) {
    f[0] = uint16_t(kScale - 1);
    f[1] = 1;
    return f;
  }
  int64_t sum = 0;
  for (int s = 0; s < 256; ++s) {
    if (!hist[size_t(s)]) continue;
    f[size_t(s)] = uint16_t(std::max<uint64_t>(1, hist[size_t(s)] * kScale / n));
    sum += f[size_t(s)];
    if (hist[size_t(s)] > hist[size_t(top)]) top = s;
  }
  if (present == 1) {
    f[size_t(top)] = uint16_t(kScale - 1);
    f[size_t(top == 0 ? 1 : 0)] = 1;
    return f;
  }
  // Give the difference to (or take it from) the most frequent symbols.
  while (sum != int64_t(kScale)) {
    int best = -1;
    for (int s = 0; s < 256; ++s)
      if (f[size_t(s)] > 1 && (best < 0 || f[size_t(s)] > f[size_t(best)])) best = s;
    if (sum < int64_t(kScale)) {
      const int64_t add = std::min<int64_t>(int64_t(kScale) - sum, int64_t(kScale - 1) - f[size_t(top)]);
      f[size_t(top)] = uint16_t(f[size_t(top)] + add);
      sum += add;
      if (sum < int64_t(kScale)) {  // the top is full: spread the rest
        for (int s = 0; s < 256 && sum < int64_t(kScale); ++s)
          if (f[size_t(s)] && f[size_t(s)] < kScale - 1) ++f[size_t(s)], ++sum;
      }
    } else {
      const int64_t take = std::min<int64_t>(sum - int64_t(kScale), f[size_t(best)] - 1);
      f[size_t(best)] = uint16_t(f[size_t(best)] - take);
      sum -= take;
    }
  }
  return f;
}

}  // namespace

std::vector<uint32_t> slot_table(const uint16_t* freqs) {
  std::vector<uint32_t> slots(kScale);
  uint32_t start = 0;
  for (uint32_t s = 0; s < 256; ++s) {
    const uint32_t f = freqs[s];
    if (f >= kScale || start + f > kScale) throw FormatError("lanes: bad frequency table");
    for (uint32_t j = 0; j < f; ++j) slots[start + j] = pack_slot(s, f, start);
    start += f;
  }
  if (start != kScale) throw FormatError("lanes: frequencies do not sum to 4096");
  return slots;
}

Coded encode(const uint8_t* src, size_t n, int transform) {
  const int k = width(transform);
  std::vector<uint8_t> planes(size_t(k) * n);
  uint8_t* ptr[4] = {};
  for (int b = 0; b < k; ++b) ptr[b] = planes.data() + size_t(b) * n;
  split_planes(Transform(transform), k, src, n, ptr);
  const uint8_t* e = ptr[0];
  std::vector<uint64_t> hist(256, 0);
  for (size_t i = 0; i < n; ++i) ++hist[e[i]];
  Coded c;
  c.freqs = normalise(hist, n);
  uint32_t start[256];
  for (uint32_t s = 0, acc = 0; s < 256; ++s) start[s] = acc, acc += c.freqs[s];
  const size_t lanes = (n + kLaneSymbols - 1) / kLaneSymbols;
  c.offsets.assign(lanes + 1, 0);
  std::vector<uint8_t> rev;
  for (size_t j = 0; j < lanes; ++j) {
    const size_t lo = j * kLaneSymbols, hi = std::min(n, lo + kLaneSymbols);
    rev.clear();
    uint32_t x = kLow;
    for (size_t i = hi; i-- > lo;) {
      const uint32_t f = c.freqs[e[i]];
      const uint32_t x_max = ((kLow >> kScaleBits) << 8) * f;
      while (x >= x_max) {
        rev.push_back(uint8_t(x & 0xff));
        x >>= 8;
      }
      x = ((x / f) << kScaleBits) + (x % f) + start[e[i]];
    }
    for (int b = 0; b < 4; ++b) c.bytes.push_back(uint8_t(x >> (8 * b)));
    c.bytes.insert(c.bytes.end(), rev.rbegin(), rev.rend());
    if (c.bytes.size() > 0xffffffffu) throw std::length_error("lanes: tensor too large");
    c.offsets[j + 1] = uint32_t(c.bytes.size());
  }
  c.raw.assign(planes.begin() + std::ptrdiff_t(n), planes.end());
  return c;
}

void decode(const uint16_t* freqs, const uint32_t* offsets, const uint8_t* bytes, size_t nbytes,
            const uint8_t* raw, size_t n, int transform, uint8_t* dst, int threads) {
  const int k = width(transform);
  const std::vector<uint32_t> slots = slot_table(freqs);
  const size_t lanes = (n + kLaneSymbols - 1) / kLaneSymbols;
  for (size_t j = 0; j < lanes; ++j)
    if (offsets[j] > offsets[j + 1] || offsets[j + 1] > nbytes) throw FormatError("lanes: bad offsets");
  parallel_for(lanes, threads, [&](size_t j, int) {
    const size_t lo = j * kLaneSymbols, m = std::min<size_t>(kLaneSymbols, n - lo);
    auto put = [&](uint32_t i, uint32_t e) {  // the same merge as the CUDA kernel's
      const size_t at = lo + i;
      const uint32_t v = merge_element(transform, e, raw[at], k > 2 ? raw[n + at] : 0, k > 2 ? raw[2 * n + at] : 0);
      if (k == 2) {
        store_word(dst + 2 * at, uint16_t(v));
      } else {
        store_word(dst + 4 * at, v);
      }
    };
    if (!decode_lane(bytes + offsets[j], offsets[j + 1] - offsets[j], slots.data(), uint32_t(m), put))
      throw FormatError("lanes: corrupt lane");
  });
}

}  // namespace wz::lanes
