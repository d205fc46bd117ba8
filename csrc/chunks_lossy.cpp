// Quantised chunks (first byte 0xFD): the container's lossy form. Each chunk of a float entry
// is a self-contained lossy payload (lossy.hpp) of its elements, all chunks of an entry with
// the entry's step, so every chunk decodes alone and in parallel. The chunk table's checksum
// is of the reconstruction, so verify/info check lossy entries like any other. A chunk whose
// payload would not beat its raw bytes (a bound below the dtype's precision: all exceptions)
// is stored raw (0xFF) instead, exactly. Plain C++17, no Python.
#include <algorithm>
#include <cstring>
#include <new>

#include "chunks.hpp"
#include "lossy.hpp"
#include "parallel.hpp"

namespace wz {

quant::DType quant_dtype(const ChunkSpec& spec) {
  switch (spec.transform) {
    case Transform::kFP32: return quant::DType::kF32;
    case Transform::kFP16: return quant::DType::kF16;
    case Transform::kBF16: return quant::DType::kBF16;
    case Transform::kFP64: return quant::DType::kF64;
    default: throw FormatError("quantised chunk in an entry that is not F32/F16/BF16/F64");
  }
}

namespace detail {

void decode_quantised(const uint8_t* p, size_t len, const ChunkSpec& spec, const uint8_t* ref,
                      uint8_t* dst, size_t nbytes) {
  const quant::DType dt = quant_dtype(spec);
  const lossy::Info inf = lossy::info(p, len);
  if (inf.predicted && !ref) throw FormatError("chunk is quantised against a reference that is missing");
  lossy::decode(p, len, nbytes / size_t(quant::itemsize(dt)), dt, inf.predicted ? ref : nullptr, dst, 1);
}

}  // namespace detail

EncodedChunks encode_chunks_lossy(const uint8_t* data, size_t size, const ChunkSpec& spec,
                                  const quant::Spec& q, uint64_t chunk_bytes, int threads,
                                  const uint8_t* pred, uint8_t* recon) {
  if (quant_dtype(spec) != q.dtype) throw std::invalid_argument("lossy: dtype does not match the transform");
  const uint64_t isz = uint64_t(spec.itemsize);
  if (chunk_bytes == 0 || chunk_bytes > kMaxChunkBytes || chunk_bytes % isz)
    throw std::invalid_argument("chunk_bytes must be a positive multiple of the item size");
  if (size % isz) throw std::invalid_argument("data is not whole elements");
  quant::check_spec(q);
  const size_t nchunks = (size + chunk_bytes - 1) / chunk_bytes;
  std::vector<Bytes> coded(nchunks);
  EncodedChunks r;
  r.table.resize(nchunks);
  parallel_for(nchunks, threads, [&](size_t i, int) {
    const size_t off = i * chunk_bytes, len = std::min<size_t>(chunk_bytes, size - off);
    Bytes body = lossy::encode(data + off, len / isz, pred ? pred + off : nullptr, q, spec.row, 1,
                               recon + off);
    Bytes& out = coded[i];
    if (body.size() + 1 < len + 1) {
      out.reserve(body.size() + 1);
      out.push_back(kQuantised);
      out.insert(out.end(), body.begin(), body.end());
    } else {  // nothing gained: the exact bytes
      out.reserve(len + 1);
      out.push_back(kStored);
      out.insert(out.end(), data + off, data + off + len);
      std::memcpy(recon + off, data + off, len);
    }
    r.table[i] = {out.size(), len, chunk_checksum(recon + off, len)};
  });
  size_t total = 0;
  for (const Bytes& b : coded) total += b.size();
  MallocBytes buf(static_cast<uint8_t*>(std::malloc(std::max<size_t>(total, 1))));
  if (!buf) throw std::bad_alloc();
  size_t at = 0;
  for (Bytes& b : coded) {
    if (!b.empty()) std::memcpy(buf.get() + at, b.data(), b.size());
    at += b.size();
    Bytes().swap(b);
  }
  r.payload = std::move(buf);
  r.size = total;
  return r;
}

}  // namespace wz
