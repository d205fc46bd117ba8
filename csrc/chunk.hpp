// One chunk = a run of whole elements of one tensor (or blob), coded independently so that
// chunks encode/decode in parallel and can be read at random.
//
// Chunk payload layout (k = number of streams of the entry's transform):
//   k x u8 method, (k - 1) x u32 length (the last stream takes the rest), the stream bodies;
//   or, when nothing compresses, u8 0xFF followed by the chunk's bytes as they are.
// Every stream decodes to exactly n = chunk_bytes / itemsize bytes.
#pragma once
#include <cstdint>

#include "common.hpp"
#include "transform.hpp"

namespace wz {

// Stored in files: never renumber.
enum class Method : uint8_t { kRaw = 0, kConst = 1, kRans = 2, kZstd = 3, kCm = 4 };
constexpr int kNumMethods = 5;
constexpr uint8_t kStored = 0xFF;  // first byte of a chunk stored without coding

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
  Bytes planes, block, cand, streams[16];
};

// The most bytes encode_chunk can write for nbytes of input.
size_t chunk_bound(size_t nbytes, const ChunkSpec& spec);

// Encode one chunk into out (room for chunk_bound bytes); returns the payload size.
size_t encode_chunk(const uint8_t* src, size_t nbytes, const ChunkSpec& spec, uint8_t* out,
                    Scratch& s);

void decode_chunk(const uint8_t* payload, size_t len, const ChunkSpec& spec, uint8_t* dst,
                  size_t nbytes, Scratch& s);

}  // namespace wz
