// Lanes: a GPU-friendly coding of a float tensor's exponent plane (compressed modules in
// memory on CUDA, weightzip/torch_module.py). Not a file format: it lives only in memory.
//
// The exponent plane (plane 0 of the tensor's transform, transform.hpp) is cut into lanes of
// kLaneSymbols symbols; each lane is coded by its own 32-bit rANS state (12-bit frequencies,
// byte-wise renormalisation), so one GPU thread decodes one lane, with the table in shared
// memory. The other planes stay raw. Layout of a coded tensor:
//   table   256 x u16 frequencies (sum 4096)
//   offsets (lanes + 1) x u32: lane j's bytes are [offsets[j], offsets[j + 1]) of `bytes`
//   bytes   per lane: its final state (4 bytes, little-endian), then its renormalisation
//           bytes in the order the decoder reads them
// decode_lane() and merge_element() are plain functions of bytes, compiled for the host here
// and for the device by csrc/cuda/lanes_kernel.cu, so the CPU decoder below is the GPU one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__CUDACC__)
#define WZ_HD __host__ __device__
#else
#define WZ_HD
#endif

namespace wz::lanes {

constexpr int kScaleBits = 12;
constexpr uint32_t kScale = 1u << kScaleBits;
constexpr uint32_t kLow = 1u << 23;  // states live in [kLow, kLow << 8)
constexpr uint32_t kLaneSymbols = 4096;

// Slot -> (symbol, freq, start) packed as symbol | freq << 8 | start << 20 (decoder table).
WZ_HD inline uint32_t pack_slot(uint32_t sym, uint32_t freq, uint32_t start) {
  return sym | (freq << 8) | (start << 20);
}

// Decode the n symbols of one lane (`bytes`, its len coded bytes), calling put(i, symbol)
// for each; slots: kScale entries from pack_slot. Returns false on corrupt input (a read past
// the lane's end).
template <class Put>
WZ_HD inline bool decode_lane(const uint8_t* bytes, uint32_t len, const uint32_t* slots, uint32_t n, Put&& put) {
  if (len < 4) return false;
  uint32_t x = uint32_t(bytes[0]) | uint32_t(bytes[1]) << 8 | uint32_t(bytes[2]) << 16 | uint32_t(bytes[3]) << 24;
  uint32_t pos = 4;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t e = slots[x & (kScale - 1)];
    put(i, e & 0xffu);
    x = ((e >> 8) & 0xfffu) * (x >> kScaleBits) + (x & (kScale - 1)) - (e >> 20);
    while (x < kLow) {
      if (pos >= len) return false;
      x = (x << 8) | bytes[pos++];
    }
  }
  return true;
}

// Element i of a tensor from its planes (transform.hpp's merge_planes, one element):
// transform 1 BF16, 2 FP16, 3 FP32; e = plane 0, r1..r3 = planes 1..3 at element i.
WZ_HD inline uint32_t merge_element(int transform, uint32_t e, uint32_t r1, uint32_t r2, uint32_t r3) {
  switch (transform) {
    case 1:
      return ((r1 & 0x80u) << 8) | (e << 7) | (r1 & 0x7fu);
    case 2:
      return (((e >> 1) | (e << 7)) & 0xffu) << 8 | r1;
    default:
      return ((r1 & 0x80u) << 24) | (e << 23) | ((r1 & 0x7fu) << 16) | (r2 << 8) | r3;
  }
}

struct Coded {
  std::vector<uint16_t> freqs;    // 256
  std::vector<uint32_t> offsets;  // lanes + 1
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> raw;       // planes 1..k-1, plane after plane (n bytes each)
};

// Code n elements (n * itemsize bytes at src) of transform 1, 2 or 3.
Coded encode(const uint8_t* src, size_t n, int transform);

// The decoder table of a frequency table (kScale entries); throws FormatError if the
// frequencies do not sum to kScale.
std::vector<uint32_t> slot_table(const uint16_t* freqs);

// CPU decode into dst (n * itemsize bytes), lane by lane with up to `threads` threads.
void decode(const uint16_t* freqs, const uint32_t* offsets, const uint8_t* bytes, size_t nbytes,
            const uint8_t* raw, size_t n, int transform, uint8_t* dst, int threads);

}  // namespace wz::lanes
