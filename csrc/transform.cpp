#include "transform.hpp"

#include <algorithm>

namespace wz {

int transform_width(Transform t, int itemsize) {
  int want = 0;
  switch (t) {
    case Transform::kBytes:
      want = itemsize;
      break;
    case Transform::kBF16:
    case Transform::kFP16:
      want = 2;
      break;
    case Transform::kFP32:
      want = 4;
      break;
    case Transform::kFP64:
      want = 8;
      break;
    case Transform::kFP8:
      want = 1;
      break;
    default:
      throw FormatError("unknown transform");
  }
  if (itemsize != want || itemsize < 1 || itemsize > 16)
    throw FormatError("transform does not match the item size");
  return want;
}

namespace {

// Move the sign (bit 7 of the top byte) to bit 0 and back.
inline uint8_t rotl1(uint8_t b) { return uint8_t((b << 1) | (b >> 7)); }
inline uint8_t rotr1(uint8_t b) { return uint8_t((b >> 1) | (b << 7)); }

// Byte planes of little-endian words W: with the width known the loops vectorise.
template <class W>
void split_words(const uint8_t* src, size_t n, uint8_t* const* planes) {
  uint8_t* p[sizeof(W)];
  std::copy(planes, planes + sizeof(W), p);
  for (size_t i = 0; i < n; ++i) {
    const W v = load_word<W>(src + sizeof(W) * i);
    for (size_t b = 0; b < sizeof(W); ++b) p[b][i] = uint8_t(v >> (8 * b));
  }
}
template <class W>
void merge_words(const uint8_t* const* planes, size_t n, uint8_t* dst) {
  const uint8_t* p[sizeof(W)];
  std::copy(planes, planes + sizeof(W), p);
  for (size_t i = 0; i < n; ++i) {
    W v = 0;
    for (size_t b = 0; b < sizeof(W); ++b) v |= W(p[b][i]) << (8 * b);
    store_word(dst + sizeof(W) * i, v);
  }
}

}  // namespace

// The loops below are written so that the compiler vectorises them (whole-word loads and
// stores, no byte shuffling through memory); an AVX2 clone, picked at load time where the
// C library supports it, roughly doubles their speed.
#if defined(__x86_64__) && defined(__GLIBC__)
#define WZ_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define WZ_AVX2_CLONE
#endif

WZ_AVX2_CLONE void split_planes(
    Transform t, int k, const uint8_t* src, size_t n, uint8_t* const* planes) {
  uint8_t *p0 = planes[0], *p1 = k > 1 ? planes[1] : nullptr;
  switch (t) {
    case Transform::kBF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t v = load_word<uint16_t>(src + 2 * i);
        p0[i] = uint8_t(v >> 7);
        p1[i] = uint8_t(((v >> 8) & 0x80) | (v & 0x7f));
      }
      return;
    case Transform::kFP16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t v = load_word<uint16_t>(src + 2 * i);
        p0[i] = rotl1(uint8_t(v >> 8));
        p1[i] = uint8_t(v);
      }
      return;
    case Transform::kFP32: {
      uint8_t *p2 = planes[2], *p3 = planes[3];
      for (size_t i = 0; i < n; ++i) {
        const uint32_t v = load_word<uint32_t>(src + 4 * i);
        p0[i] = uint8_t(v >> 23);
        p1[i] = uint8_t(((v >> 24) & 0x80) | ((v >> 16) & 0x7f));
        p2[i] = uint8_t(v >> 8);
        p3[i] = uint8_t(v);
      }
      return;
    }
    case Transform::kFP64:
      for (size_t i = 0; i < n; ++i) {
        const uint64_t v = load_word<uint64_t>(src + 8 * i);
        p0[i] = uint8_t(v >> 55);
        p1[i] = uint8_t(((v >> 56) & 0x80) | ((v >> 48) & 0x7f));
        for (int b = 2; b < 8; ++b) planes[b][i] = uint8_t(v >> (8 * (7 - b)));
      }
      return;
    case Transform::kFP8:
      for (size_t i = 0; i < n; ++i) p0[i] = rotl1(src[i]);
      return;
    case Transform::kBytes:
      if (k == 2) return split_words<uint16_t>(src, n, planes);
      if (k == 4) return split_words<uint32_t>(src, n, planes);
      if (k == 8) return split_words<uint64_t>(src, n, planes);
      for (size_t i = 0; i < n; ++i)
        for (int b = 0; b < k; ++b) planes[b][i] = src[size_t(k) * i + size_t(b)];
      return;
  }
  throw FormatError("unknown transform");
}

WZ_AVX2_CLONE void merge_planes(
    Transform t, int k, const uint8_t* const* planes, size_t n, uint8_t* dst) {
  const uint8_t *p0 = planes[0], *p1 = k > 1 ? planes[1] : nullptr;
  switch (t) {
    case Transform::kBF16:
      for (size_t i = 0; i < n; ++i) {
        const uint32_t e = p0[i], m = p1[i];
        store_word(dst + 2 * i, uint16_t(((m & 0x80) << 8) | (e << 7) | (m & 0x7f)));
      }
      return;
    case Transform::kFP16:
      for (size_t i = 0; i < n; ++i) store_word(dst + 2 * i, uint16_t(rotr1(p0[i]) << 8 | p1[i]));
      return;
    case Transform::kFP32: {
      const uint8_t *p2 = planes[2], *p3 = planes[3];
      for (size_t i = 0; i < n; ++i) {
        const uint32_t e = p0[i], m = p1[i];
        store_word(dst + 4 * i, ((m & 0x80) << 24) | (e << 23) | ((m & 0x7f) << 16) |
                                    (uint32_t(p2[i]) << 8) | p3[i]);
      }
      return;
    }
    case Transform::kFP64:
      for (size_t i = 0; i < n; ++i) {
        const uint64_t e = p0[i], m = p1[i];
        uint64_t v = ((m & 0x80) << 56) | (e << 55) | ((m & 0x7f) << 48);
        for (int b = 2; b < 8; ++b) v |= uint64_t(planes[b][i]) << (8 * (7 - b));
        store_word(dst + 8 * i, v);
      }
      return;
    case Transform::kFP8:
      for (size_t i = 0; i < n; ++i) dst[i] = rotr1(p0[i]);
      return;
    case Transform::kBytes:
      if (k == 2) return merge_words<uint16_t>(planes, n, dst);
      if (k == 4) return merge_words<uint32_t>(planes, n, dst);
      if (k == 8) return merge_words<uint64_t>(planes, n, dst);
      for (size_t i = 0; i < n; ++i)
        for (int b = 0; b < k; ++b) dst[size_t(k) * i + size_t(b)] = planes[b][i];
      return;
  }
  throw FormatError("unknown transform");
}

}  // namespace wz
