// One chunk = a run of whole elements of one tensor (or blob), coded independently so that
// chunks encode/decode in parallel and can be read at random.
//
// Chunk payload layout:
//   u8 transform, u8 nstreams,
//   nstreams x (u8 method, u32 length),
//   the stream bodies, concatenated.
// Every stream decodes to exactly n = chunk_bytes / itemsize bytes.
#pragma once
#include <cstdint>

#include "common.hpp"
#include "transform.hpp"

namespace wz {

// Stored in files: never renumber.
enum class Method : uint8_t { kRaw = 0, kConst = 1, kRans = 2, kZstd = 3, kCm = 4 };
constexpr int kNumMethods = 5;

enum Level : int { kFast = 0, kDefault = 1, kMax = 2 };

struct ChunkSpec {
  Transform transform = Transform::kBytes;
  int itemsize = 1;
  uint32_t row = 0;        // elements per row (last dim) for the row-above context, 0 = none
  int level = kDefault;
  int force_method = -1;   // tests / measurements: code every stream with this method
};

// Reusable per-thread buffers, so steady-state coding allocates nothing.
struct Scratch {
  Bytes planes, cand, best, streams[16];
};

void encode_chunk(const uint8_t* src, size_t nbytes, const ChunkSpec& spec, Bytes& out,
                  Scratch& s);

void decode_chunk(const uint8_t* payload, size_t len, const ChunkSpec& spec, uint8_t* dst,
                  size_t nbytes, Scratch& s);

}  // namespace wz
