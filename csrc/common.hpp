// Shared helpers for the weightzip entropy-coding core. Plain C++17, no Python.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace wz {

// Malformed or truncated compressed data. Mapped to weightzip.FormatError in Python.
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Data decoded but its checksum does not match. Mapped to weightzip.ChecksumError.
struct ChecksumError : FormatError {
  using FormatError::FormatError;
};

using Bytes = std::vector<uint8_t>;

inline void put_u8(Bytes& b, uint8_t v) { b.push_back(v); }
inline void put_u32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
inline void put_varint(Bytes& b, uint64_t v) {
  while (v >= 0x80) {
    b.push_back(uint8_t(v | 0x80));
    v >>= 7;
  }
  b.push_back(uint8_t(v));
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // little-endian hosts only (checked at build time)
  return v;
}
inline uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void store_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
// The same for any trivially copyable T (a word of sizeof(T) bytes, unaligned, host order).
template <class T>
inline T load_word(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
inline void store_word(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

// Bounds-checked forward reader over an untrusted buffer: every read is checked.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), end_(p + n) {}
  size_t left() const { return size_t(end_ - p_); }
  const uint8_t* pos() const { return p_; }
  uint8_t u8() {
    need(1);
    return *p_++;
  }
  uint32_t u32() {
    need(4);
    uint32_t v = load_u32(p_);
    p_ += 4;
    return v;
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t c = u8();
      v |= uint64_t(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
    }
    throw FormatError("varint too long");
  }
  const uint8_t* take(size_t n) {
    need(n);
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }

 private:
  void need(size_t n) const {
    if (left() < n) throw FormatError("truncated stream");
  }
  const uint8_t* p_;
  const uint8_t* end_;
};

static_assert(sizeof(void*) == 8, "weightzip needs a 64-bit platform");

}  // namespace wz
