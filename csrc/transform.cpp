#include "transform.hpp"

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
}  // namespace

void split_planes(Transform t, int k, const uint8_t* src, size_t n, uint8_t* const* planes) {
  switch (t) {
    case Transform::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint8_t lo = src[2 * i], hi = src[2 * i + 1];
        planes[0][i] = uint8_t((hi << 1) | (lo >> 7));
        planes[1][i] = uint8_t((hi & 0x80) | (lo & 0x7f));
      }
      return;
    case Transform::kFP16:
      for (size_t i = 0; i < n; ++i) {
        planes[0][i] = rotl1(src[2 * i + 1]);
        planes[1][i] = src[2 * i];
      }
      return;
    case Transform::kFP32:
      for (size_t i = 0; i < n; ++i) {
        const uint8_t* v = src + 4 * i;
        planes[0][i] = uint8_t((v[3] << 1) | (v[2] >> 7));
        planes[1][i] = uint8_t((v[3] & 0x80) | (v[2] & 0x7f));
        planes[2][i] = v[1];
        planes[3][i] = v[0];
      }
      return;
    case Transform::kFP64:
      for (size_t i = 0; i < n; ++i) {
        const uint8_t* v = src + 8 * i;
        planes[0][i] = uint8_t((v[7] << 1) | (v[6] >> 7));
        planes[1][i] = uint8_t((v[7] & 0x80) | (v[6] & 0x7f));
        for (int b = 2; b < 8; ++b) planes[b][i] = v[7 - b];
      }
      return;
    case Transform::kFP8:
      for (size_t i = 0; i < n; ++i) planes[0][i] = rotl1(src[i]);
      return;
    case Transform::kBytes:
      if (k == 1) {
        std::memcpy(planes[0], src, n);
        return;
      }
      for (size_t i = 0; i < n; ++i)
        for (int b = 0; b < k; ++b) planes[b][i] = src[size_t(k) * i + size_t(b)];
      return;
  }
  throw FormatError("unknown transform");
}

void merge_planes(Transform t, int k, const uint8_t* const* planes, size_t n, uint8_t* dst) {
  switch (t) {
    case Transform::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint8_t e = planes[0][i], m = planes[1][i];
        dst[2 * i] = uint8_t((e << 7) | (m & 0x7f));
        dst[2 * i + 1] = uint8_t((m & 0x80) | (e >> 1));
      }
      return;
    case Transform::kFP16:
      for (size_t i = 0; i < n; ++i) {
        dst[2 * i + 1] = rotr1(planes[0][i]);
        dst[2 * i] = planes[1][i];
      }
      return;
    case Transform::kFP32:
      for (size_t i = 0; i < n; ++i) {
        uint8_t* v = dst + 4 * i;
        uint8_t e = planes[0][i], m = planes[1][i];
        v[3] = uint8_t((m & 0x80) | (e >> 1));
        v[2] = uint8_t((e << 7) | (m & 0x7f));
        v[1] = planes[2][i];
        v[0] = planes[3][i];
      }
      return;
    case Transform::kFP64:
      for (size_t i = 0; i < n; ++i) {
        uint8_t* v = dst + 8 * i;
        uint8_t e = planes[0][i], m = planes[1][i];
        v[7] = uint8_t((m & 0x80) | (e >> 1));
        v[6] = uint8_t((e << 7) | (m & 0x7f));
        for (int b = 2; b < 8; ++b) v[7 - b] = planes[b][i];
      }
      return;
    case Transform::kFP8:
      for (size_t i = 0; i < n; ++i) dst[i] = rotr1(planes[0][i]);
      return;
    case Transform::kBytes:
      if (k == 1) {
        std::memcpy(dst, planes[0], n);
        return;
      }
      for (size_t i = 0; i < n; ++i)
        for (int b = 0; b < k; ++b) dst[size_t(k) * i + size_t(b)] = planes[b][i];
      return;
  }
  throw FormatError("unknown transform");
}

}  // namespace wz
