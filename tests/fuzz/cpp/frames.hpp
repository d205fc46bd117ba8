// Input layouts ("frames") of the csrc harnesses, shared with the seed generator
// (make_seeds.cpp). All integers little-endian.
//
//   chunk         u8 spec, u32 nbytes, u32 checksum (low 32 bits of XXH64 of the decoded
//                 chunk, as in a .wz chunk record), then the chunk payload
//   rans          u16 n, u8 split (seed of the piece sizes), n side bytes, then the stream
//   cm            u16 n, u8 flags (bit 0: a side stream follows), [n side bytes], the stream
//   indexed       u8 mode, u8 n_cdfs, u8 max_len, per table (u8 len, i8 offset, max_len - 1
//                 weights), u16 n, u32 index seed, then the payload (see fuzz_rans_indexed.cpp)
//   transform     u8 spec, then element bytes
#pragma once
#include <cstdint>

#include "../../../csrc/chunk.hpp"
#include "fuzz_common.hpp"

namespace fz {

struct Spec {
  wz::Transform t;
  int itemsize;
};
// Every (transform, item size) pair a .wz dtype maps to (weightzip/dtypes.py).
constexpr Spec kSpecs[] = {
    {wz::Transform::kBytes, 1}, {wz::Transform::kBytes, 2}, {wz::Transform::kBytes, 4},
    {wz::Transform::kBytes, 8}, {wz::Transform::kBF16, 2},  {wz::Transform::kFP16, 2},
    {wz::Transform::kFP32, 4},  {wz::Transform::kFP64, 8},  {wz::Transform::kFP8, 1},
};
constexpr int kNumSpecs = int(sizeof(kSpecs) / sizeof(kSpecs[0]));

inline wz::ChunkSpec chunk_spec(uint8_t sel) {
  wz::ChunkSpec s;
  s.transform = kSpecs[sel % kNumSpecs].t;
  s.itemsize = kSpecs[sel % kNumSpecs].itemsize;
  s.level = (sel / kNumSpecs) % 3;  // only the round-trip re-encode uses the level
  return s;
}

constexpr size_t kChunkHead = 9;
constexpr uint32_t kMaxChunk = 1u << 16;  // bounds time per input (4 blocks of 16 KiB)
constexpr size_t kRansHead = 3;
constexpr size_t kCmHead = 3;
constexpr uint32_t kMaxCm = 1u << 12;  // cm costs ~1 us per byte under ASan

}  // namespace fz

// ---- indexed frame: CompressAI-style tables built from fuzz bytes ---------------------
#include <vector>

namespace fz {

// mode bits: 1 raw tables (usually invalid: validate() must refuse them), 2 n += 65536 (the
// interleaved 4-state coder), 4 one index out of range, 8 offsets scaled by 2^24 (values
// near the int32 limits).
struct IndexedFrame {
  int mode = 0;
  size_t n_cdfs = 0, max_len = 0, n = 0;
  std::vector<int32_t> cdfs, lengths, offsets, indexes;
  const uint8_t* payload = nullptr;
  size_t len = 0;
  size_t head = 0;  // bytes before the payload
  bool bad_args() const { return mode & 5; }
};

inline bool parse_indexed(const uint8_t* d, size_t size, IndexedFrame& f) {
  if (size < 3) return false;
  f.mode = d[0] & 15;
  f.n_cdfs = 1 + d[1] % 8;
  f.max_len = 3 + d[2] % 30;
  size_t at = 3;
  const size_t per = 2 + (f.max_len - 1);
  if (size < at + f.n_cdfs * per + 6) return false;
  f.cdfs.assign(f.n_cdfs * f.max_len, 0);
  f.lengths.resize(f.n_cdfs);
  f.offsets.resize(f.n_cdfs);
  for (size_t k = 0; k < f.n_cdfs; ++k, at += per) {
    const uint8_t* t = d + at;
    const uint8_t* w = t + 2;
    int32_t* cdf = f.cdfs.data() + k * f.max_len;
    f.offsets[k] = int32_t(int8_t(t[1])) * ((f.mode & 8) ? (1 << 24) : 1);
    if (f.mode & 1) {  // raw: whatever the bytes say
      f.lengths[k] = int32_t(t[0] % (f.max_len + 2));
      int32_t c = 0;
      for (size_t j = 1; j < f.max_len; ++j) cdf[j] = c += int32_t(w[j - 1]) * 257;
      continue;
    }
    const size_t L = 3 + t[0] % (f.max_len - 2);  // 3..max_len
    f.lengths[k] = int32_t(L);
    // Weights cubed: probabilities from ~1 down to 2^-16, as trained priors have.
    uint64_t wt[32], total = 0;
    for (size_t j = 0; j + 1 < L; ++j) total += wt[j] = uint64_t(w[j] + 1) * (w[j] + 1) * (w[j] + 1);
    const uint64_t spare = 65536 - (L - 1);
    uint32_t sum = 0, big = 0;
    uint32_t freq[32];
    for (size_t j = 0; j + 1 < L; ++j) {
      freq[j] = 1 + uint32_t(wt[j] * spare / total);
      sum += freq[j];
      if (freq[j] > freq[big]) big = uint32_t(j);
    }
    freq[big] += 65536 - sum;  // rounding: the largest symbol absorbs it
    cdf[0] = 0;
    for (size_t j = 0; j + 1 < L; ++j) cdf[j + 1] = cdf[j] + int32_t(freq[j]);
  }
  f.n = u16_at(d + at) + ((f.mode & 2) ? 65536u : 0u);
  uint64_t s = u32_at(d + at + 2) | 1;
  at += 6;
  f.indexes.resize(f.n);
  for (size_t i = 0; i < f.n; ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    // Runs of one table (as channels of a latent) more often than not.
    f.indexes[i] = (i && (s & 3)) ? f.indexes[i - 1] : int32_t((s >> 8) % f.n_cdfs);
  }
  if ((f.mode & 4) && f.n) f.indexes[(s >> 20) % f.n] = int32_t(f.n_cdfs);
  f.payload = d + at;
  f.len = size - at;
  f.head = at;
  return true;
}

}  // namespace fz
