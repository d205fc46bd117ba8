// One chunk = a run of whole elements of one tensor (or blob), coded independently so that
// chunks encode/decode in parallel and can be read at random.
//
// Chunk payload layout (k = number of streams of the entry's transform):
//   k x u8 method, (k - 1) x u32 length (the last stream takes the rest), the stream bodies;
//   or, when nothing compresses, u8 0xFF followed by the chunk's bytes as they are.
// Every stream decodes to exactly n = chunk_bytes / itemsize bytes.
// A chunk coded against a reference (the same chunk of an earlier checkpoint) starts with
// u8 0xFE, u8 predictor (predict.hpp), then streams of the residual (chunk_ref.cpp).
// A quantised chunk (lossy entries) is u8 0xFD then a lossy payload (lossy.hpp;
// chunks_lossy.cpp), predicted from the reference chunk when the payload says so.
#pragma once
#include <cstdint>

#include "common.hpp"
#include "predict.hpp"
#include "rans_model.hpp"
#include "transform.hpp"

namespace wz {

// Stored in files: never renumber.
enum class Method : uint8_t { kRaw = 0, kConst = 1, kRans = 2, kZstd = 3, kCm = 4 };
constexpr int kNumMethods = 5;
constexpr uint8_t kStored = 0xFF;  // first byte of a chunk stored without coding
constexpr uint8_t kConditioned = 0xFE;  // first byte of a chunk coded against a reference
constexpr uint8_t kQuantised = 0xFD;  // first byte of a lossy (quantised) chunk
constexpr uint8_t kPlainFlag = 0x80;  // in a kXor chunk's method byte: this stream is not XORed

enum Level : int { kFast = 0, kDefault = 1, kMax = 2 };

struct ChunkSpec {
  Transform transform = Transform::kBytes;
  int itemsize = 1;
  uint32_t row = 0;        // elements per row (last dim) for the row-above context, 0 = none
  int level = kDefault;
  int force_method = -1;   // tests / measurements: code every stream with this method
  int predictor = -1;      // with a reference: -1 choose, 0 independent, else force (tests)
};

// Reusable per-thread buffers, so steady-state coding allocates nothing.
struct Scratch {
  Bytes planes, block, cand, streams[16];
  Bytes ref_planes, res, res_planes, lens, bits;  // chunk_ref.cpp
};

// The most bytes encode_chunk can write for nbytes of input.
size_t chunk_bound(size_t nbytes, const ChunkSpec& spec);

// Encode one chunk into out (room for chunk_bound bytes); returns the payload size. With
// ref (nbytes bytes: the same chunk of the reference) the chunk may be coded against it.
size_t encode_chunk(const uint8_t* src, size_t nbytes, const ChunkSpec& spec, uint8_t* out,
                    Scratch& s, const uint8_t* ref = nullptr);

// ref: the reference chunk (nbytes bytes), dict: the reference bytes a kNone chunk was coded
// with as a zstd dictionary; a conditioned chunk without what it needs is a FormatError.
void decode_chunk(const uint8_t* payload, size_t len, const ChunkSpec& spec, uint8_t* dst,
                  size_t nbytes, Scratch& s, const uint8_t* ref = nullptr,
                  const uint8_t* dict = nullptr, size_t dict_size = 0);

namespace detail {
// Code one stream with the candidates the level allows (smallest actual output), after
// rans::gather_stats of it; shared with chunk_ref.cpp.
Method code_stream(const uint8_t* x, size_t n, const rans::Stats& st, const uint8_t* side,
                   const ChunkSpec& spec, Scratch& s, Bytes& best);
// Decode one stream of n bytes coded with method m (side: as at encoding, may be null).
void decode_stream(Method m, const uint8_t* body, size_t len, const uint8_t* side,
                   uint8_t* out, size_t n);
// The conditioned forms (chunk_ref.cpp). encode returns 0 when independent coding is chosen.
size_t encode_conditioned(const uint8_t* src, size_t nbytes, const ChunkSpec& spec,
                          const uint8_t* ref, uint8_t* out, Scratch& s);
// A quantised chunk's payload after its 0xFD byte (chunks_lossy.cpp).
void decode_quantised(const uint8_t* p, size_t len, const ChunkSpec& spec, const uint8_t* ref,
                      uint8_t* dst, size_t nbytes);
void decode_conditioned(const uint8_t* payload, size_t len, const ChunkSpec& spec,
                        const uint8_t* ref, const uint8_t* dict, size_t dict_size, uint8_t* dst,
                        size_t nbytes, Scratch& s);
// Predictor kNone: the chunk as one zstd frame with dict as its dictionary (blobs whose size
// changed, e.g. a growing JSON log). Returns 0 if that does not beat limit bytes.
size_t encode_dict(const uint8_t* src, size_t nbytes, const ChunkSpec& spec, const uint8_t* dict,
                   size_t dict_size, uint8_t* out, size_t limit, Scratch& s);
}  // namespace detail

}  // namespace wz
