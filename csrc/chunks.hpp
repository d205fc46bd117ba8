// The chunk driver: a buffer of whole elements <-> independently coded chunks of at most
// chunk_bytes each (chunk.hpp codes one chunk), coded in parallel. Plain C++17, no Python;
// bindings.cpp only converts buffers and maps exceptions.
//
// Encoding yields the chunk payloads back to back in one buffer and a table with, per
// chunk, its coded size, raw size and checksum. The checksum is the low 32 bits of xxh64 of
// the raw chunk: it catches corrupt payloads and decoder bugs alike.
//
// Invalid arguments throw std::invalid_argument (ValueError in Python); an unknown transform
// or one that does not match the item size throws FormatError (as transform_width does);
// malformed tables and payloads throw FormatError, checksum mismatches ChecksumError.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "chunk.hpp"
#include "quant.hpp"
#include "xxhash64.hpp"

namespace wz {

// Largest chunk (raw bytes) the encoder makes and the decoder accepts.
constexpr uint64_t kMaxChunkBytes = 1ULL << 30;

// A validated ChunkSpec. Order of checks: transform vs item size (FormatError), level in
// kFast..kMax, force_method < kNumMethods (std::invalid_argument). transform is cast to the
// Transform enum as it is.
ChunkSpec make_spec(int itemsize, int transform, int level = kDefault, uint32_t row = 0,
                    int force_method = -1, int predictor = -1);

// The checksum a chunk table stores: the low 32 bits of xxh64 of the raw chunk.
inline uint64_t chunk_checksum(const uint8_t* p, size_t n) { return xxh64(p, n) & 0xffffffffu; }

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
// A malloc'ed buffer (freed with std::free), so that it can be handed on without a copy.
using MallocBytes = std::unique_ptr<uint8_t, FreeDeleter>;

// One row of an encoding table.
struct ChunkEntry {
  uint64_t csize;     // payload bytes
  uint64_t rsize;     // raw bytes
  uint64_t checksum;  // chunk_checksum of the raw bytes
};

struct EncodedChunks {
  MallocBytes payload;  // size bytes (never null: at least one byte is allocated)
  size_t size = 0;
  std::vector<ChunkEntry> table;  // chunk i's payload starts at the sum of earlier csizes
};

// Split data[0, size) into chunks of chunk_bytes (the last may be shorter) and encode them
// with up to threads workers (0: one per core). The output does not depend on threads.
// Throws std::invalid_argument unless 0 < chunk_bytes <= kMaxChunkBytes, chunk_bytes is a
// multiple of spec.itemsize and size is whole elements. With ref (ref_size bytes: the same
// entry of a reference): if ref_size == size, chunk i may be coded against ref + i *
// chunk_bytes (chunk_ref.cpp); otherwise each chunk may be a zstd frame with the whole ref as
// its dictionary (entries whose size changed, e.g. a growing JSON log).
EncodedChunks encode_chunks(const uint8_t* data, size_t size, const ChunkSpec& spec,
                            uint64_t chunk_bytes, int threads, const uint8_t* ref = nullptr,
                            size_t ref_size = 0);

// One entry of a batch: nbytes at data, coded as encode_chunks codes a whole entry (its own
// chunks, the last may be shorter).
struct Segment {
  const uint8_t* data;
  size_t nbytes;
  int itemsize, transform;
  uint32_t row;
};

// Encode many entries in one call (a file of small tensors: one thread pool, one buffer):
// the chunks of segs[0], then those of segs[1], ..., as encode_chunks would code each (no
// reference) at this level, with up to threads workers over all of them. Throws
// std::invalid_argument for a segment that is not whole elements, and as make_spec and
// encode_chunks do. The output does not depend on threads.
EncodedChunks encode_segments(const Segment* segs, size_t n, int level, uint64_t chunk_bytes,
                              int threads);

// Lossy: every chunk of a float entry becomes a quantised chunk (0xFD + lossy payload) whose
// elements are within q.bound of data (pred: the reference's reconstruction, size bytes, or
// null), or is stored raw when that is smaller. recon (size bytes) receives what decoding
// gives; the table's checksums are of it. The output does not depend on threads.
EncodedChunks encode_chunks_lossy(const uint8_t* data, size_t size, const ChunkSpec& spec,
                                  const quant::Spec& q, uint64_t chunk_bytes, int threads,
                                  const uint8_t* pred, uint8_t* recon);

// The quantiser's dtype of a float ChunkSpec (FormatError for other transforms).
quant::DType quant_dtype(const ChunkSpec& spec);

// Columns of a decoding table row: offset into the payload, csize, rsize, checksum.
constexpr size_t kDecodeColumns = 4;

// Decode n chunks into out[0, out_size): table is n x kDecodeColumns uint64 (row-major);
// chunk i fills the rsize bytes following those of chunks 0..i-1. Before decoding anything
// it checks every row (FormatError: chunk outside the payload, rsize above kMaxChunkBytes or
// not whole elements, rsizes not adding up to out_size). With verify, each decoded chunk's
// checksum is compared with the table's (ChecksumError). Decodes with up to threads workers.
// ref (ref_size bytes) is the reference the chunks were coded against, if any: aligned chunk
// by chunk if ref_size == out_size, else the dictionary of every chunk (as encode_chunks
// made them); a chunk coded against a reference without one is a FormatError.
void decode_chunks(const uint8_t* payload, size_t size, const uint64_t* table, size_t n,
                   const ChunkSpec& spec, uint8_t* out, size_t out_size, int threads,
                   bool verify, const uint8_t* ref = nullptr, size_t ref_size = 0);

// Columns of a decode_segments row: a decoding table row's four, then the offset in out of the
// chunk's bytes, and the itemsize and transform of its entry.
constexpr size_t kSegmentColumns = 7;

// Decode n chunks of any entries (a whole file: one thread pool, one output buffer): row i of
// table (n x kSegmentColumns uint64) is decoded into out[dst, dst + rsize) with its own spec.
// Rows are checked first as decode_chunks checks them, and each must lie inside out
// (FormatError); with verify, checksums as in decode_chunks. Chunks coded against a reference
// are a FormatError here. Rows whose bytes overlap in out are the caller's error.
void decode_segments(const uint8_t* payload, size_t size, const uint64_t* table, size_t n,
                     uint8_t* out, size_t out_size, int threads, bool verify);

}  // namespace wz
