// Shared pieces of the libFuzzer harnesses for csrc/ (built by tests/fuzz/build.py).
//
// Oracle: a harness returns normally when the decoder accepts its input or rejects it with
// wz::FormatError (the documented error; ChecksumError derives from it). Any other exception
// escapes LLVMFuzzerTestOneInput and terminates the process, and an inconsistent successful
// decode calls finding(): both are crashes to libFuzzer, so they are saved as artifacts.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../../../csrc/common.hpp"
#include "../../../csrc/xxhash64.hpp"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace fz {

using Bytes = std::vector<uint8_t>;

[[noreturn]] inline void finding(const char* what) {
  std::fprintf(stderr, "FINDING: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

inline uint32_t hash32(const uint8_t* p, size_t n) { return uint32_t(wz::xxh64(p, n)); }

inline uint16_t u16_at(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
inline uint32_t u32_at(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline void put16(uint8_t* p, uint32_t v) { p[0] = uint8_t(v), p[1] = uint8_t(v >> 8); }
inline void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}

// Small deterministic generator (the mutator's seed makes every mutation reproducible).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ULL + 1) {}
  uint32_t next() {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return uint32_t(s >> 16);
  }
  uint32_t below(uint32_t n) { return n ? next() % n : 0; }
};

// Replace data[lo, hi) by a libFuzzer mutation of it, keeping the bytes around it: the
// structure-aware mutators aim mutations at one field or stream this way. Returns the new
// size (<= max_size).
inline size_t mutate_region(uint8_t* data, size_t size, size_t max_size, size_t lo, size_t hi) {
  if (lo > hi || hi > size || max_size < size) return size;
  const size_t keep = size - (hi - lo);
  if (max_size <= keep) return size;
  const size_t room = max_size - keep;
  Bytes mid(room), tail(data + hi, data + size);
  std::copy(data + lo, data + hi, mid.begin());
  const size_t m = LLVMFuzzerMutate(mid.data(), hi - lo, room);
  std::copy(mid.begin(), mid.begin() + long(m), data + lo);
  std::copy(tail.begin(), tail.end(), data + lo + m);
  return keep + m;
}

// Buffers filled with different patterns before two decodes expose bytes a decoder forgot
// to write (ASan does not flag reads of uninitialised heap memory).
constexpr uint8_t kFillA = 0xA5, kFillB = 0x5A;

}  // namespace fz
