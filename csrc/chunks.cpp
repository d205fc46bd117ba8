#include "chunks.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "parallel.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace wz {

namespace {

// Large output buffers are asked for as transparent huge pages: a 32 MiB slab's buffer then
// takes 16 page faults instead of 8,192, which was a third of the encode time of MiniLM.
uint8_t* alloc_output(size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHuge = size_t(2) << 20;
  if (n >= 2 * kHuge) {
    const size_t rounded = (n + kHuge - 1) / kHuge * kHuge;
    if (void* p = std::aligned_alloc(kHuge, rounded)) {
      madvise(p, rounded, MADV_HUGEPAGE);
      return static_cast<uint8_t*>(p);
    }
  }
#endif
  return static_cast<uint8_t*>(std::malloc(std::max<size_t>(n, 1)));
}

// The calling thread's scratch buffers outlive the call: packing a file of many tensors calls
// the coder once per tensor, and fresh buffers would be page-faulted in every time.
Scratch& worker_scratch(std::vector<Scratch>& pool, int w) {
  thread_local Scratch mine;
  return w == 0 ? mine : pool[size_t(w)];
}

}  // namespace

ChunkSpec make_spec(int itemsize, int transform, int level, uint32_t row, int force_method,
                    int predictor) {
  ChunkSpec spec;
  spec.transform = Transform(transform);
  spec.itemsize = itemsize;
  spec.level = level;
  spec.row = row;
  spec.force_method = force_method;
  spec.predictor = predictor;
  transform_width(spec.transform, itemsize);  // validates
  if (level < kFast || level > kMax) throw std::invalid_argument("level must be 0, 1 or 2");
  if (force_method >= kNumMethods) throw std::invalid_argument("unknown method");
  if (predictor < -1 || predictor >= kNumPredictors) throw std::invalid_argument("unknown predictor");
  return spec;
}

namespace {

// One chunk to code: its raw bytes and the spec of the entry it belongs to.
struct ChunkJob {
  const uint8_t* data;
  size_t len;
  const ChunkSpec* spec;
};

// Code jobs into one buffer with up to threads workers; code(i, out, scratch) codes job i at
// out and returns its size (at most chunk_bound). The output does not depend on threads.
template <class Code>
EncodedChunks encode_jobs(const std::vector<ChunkJob>& jobs, int threads, Code code) {
  const size_t n = jobs.size();
  EncodedChunks r;
  r.table.resize(n);
  ChunkEntry* tab = r.table.data();
  // Chunks are coded straight into one buffer: no per-chunk allocations, no zero-filled
  // pages. One worker writes them back to back; several write each at the offset its bound
  // allows, and the chunks are packed together afterwards.
  std::vector<size_t> at(n + 1, 0);
  for (size_t i = 0; i < n; ++i) at[i + 1] = at[i] + chunk_bound(jobs[i].len, *jobs[i].spec);
  MallocBytes buf(alloc_output(at[n]));
  if (!buf) throw std::bad_alloc();
  size_t total = 0;
  const int nw = resolve_threads(threads);
  const bool serial = std::min(size_t(nw), n) <= 1;  // parallel_for runs in order
  std::vector<Scratch> scratch(size_t(std::max(1, nw)));
  parallel_for(n, threads, [&](size_t i, int w) {
    const ChunkJob& j = jobs[i];
    const size_t csize = code(i, buf.get() + (serial ? total : at[i]), worker_scratch(scratch, w));
    if (serial) total += csize;
    tab[i] = {csize, j.len, chunk_checksum(j.data, j.len)};
  });
  for (size_t i = 0; i < n && !serial; ++i) {
    std::memmove(buf.get() + total, buf.get() + at[i], tab[i].csize);
    total += tab[i].csize;
  }
  // Give back what the bounds reserved beyond the coded size (a failed shrink keeps it).
  uint8_t* p = buf.release();
  if (auto* q = static_cast<uint8_t*>(std::realloc(p, std::max<size_t>(total, 1)))) p = q;
  r.payload.reset(p);
  r.size = total;
  return r;
}

void check_chunk_bytes(uint64_t chunk_bytes, uint64_t itemsize) {
  if (chunk_bytes == 0 || chunk_bytes > kMaxChunkBytes || chunk_bytes % itemsize)
    throw std::invalid_argument("chunk_bytes must be a positive multiple of the item size");
}

// Append the chunks of data[0, size) to jobs.
void split_chunks(const uint8_t* data, size_t size, const ChunkSpec* spec, uint64_t chunk_bytes,
                  std::vector<ChunkJob>& jobs) {
  for (size_t off = 0; off < size; off += chunk_bytes)
    jobs.push_back({data + off, std::min<size_t>(chunk_bytes, size - off), spec});
}

}  // namespace

EncodedChunks encode_chunks(const uint8_t* data, size_t size, const ChunkSpec& spec,
                            uint64_t chunk_bytes, int threads, const uint8_t* ref,
                            size_t ref_size) {
  const bool aligned = ref && ref_size == size;
  check_chunk_bytes(chunk_bytes, uint64_t(spec.itemsize));
  if (size % uint64_t(spec.itemsize)) throw std::invalid_argument("data is not whole elements");
  std::vector<ChunkJob> jobs;
  split_chunks(data, size, &spec, chunk_bytes, jobs);
  return encode_jobs(jobs, threads, [&](size_t i, uint8_t* out, Scratch& sc) {
    const size_t off = i * chunk_bytes, len = jobs[i].len;
    size_t csize = encode_chunk(data + off, len, spec, out, sc, aligned ? ref + off : nullptr);
    if (ref && !aligned && spec.force_method < 0 && spec.predictor != 0) {
      sc.block.resize(csize);  // the independent form, kept unless the dictionary beats it
      std::memcpy(sc.block.data(), out, csize);
      const size_t d = detail::encode_dict(data + off, len, spec, ref, ref_size, out, csize, sc);
      if (d) {
        csize = d;
      } else {
        std::memcpy(out, sc.block.data(), csize);
      }
    }
    return csize;
  });
}

EncodedChunks encode_segments(const Segment* segs, size_t n, int level, uint64_t chunk_bytes,
                              int threads) {
  std::vector<ChunkSpec> specs;
  specs.reserve(n);  // jobs point into it
  std::vector<ChunkJob> jobs;
  for (size_t s = 0; s < n; ++s) {
    const Segment& g = segs[s];
    specs.push_back(make_spec(g.itemsize, g.transform, level, g.row));
    check_chunk_bytes(chunk_bytes, uint64_t(g.itemsize));
    if (g.nbytes % size_t(g.itemsize)) throw std::invalid_argument("segment is not whole elements");
    split_chunks(g.data, g.nbytes, &specs.back(), chunk_bytes, jobs);
  }
  return encode_jobs(jobs, threads, [&](size_t i, uint8_t* out, Scratch& sc) {
    return encode_chunk(jobs[i].data, jobs[i].len, *jobs[i].spec, out, sc, nullptr);
  });
}

namespace {

// A decode-table row's coded range lies in the payload and its raw size is whole elements
// of at most kMaxChunkBytes (what decode_chunks and decode_segments both check first).
void check_row(uint64_t off, uint64_t csize, uint64_t rsize, uint64_t itemsize, size_t size) {
  if (off > size || csize > size - off) throw FormatError("chunk lies outside the file");
  if (rsize > kMaxChunkBytes || rsize % itemsize) throw FormatError("bad chunk size");
}

void check_sum(const uint8_t* dst, uint64_t rsize, uint64_t want, size_t i) {
  if (chunk_checksum(dst, rsize) != want)
    throw ChecksumError("checksum mismatch in chunk " + std::to_string(i) + " (corrupt data)");
}

}  // namespace

void decode_chunks(const uint8_t* payload, size_t size, const uint64_t* table, size_t n,
                   const ChunkSpec& spec, uint8_t* out, size_t out_size, int threads,
                   bool verify, const uint8_t* ref, size_t ref_size) {
  constexpr size_t C = kDecodeColumns;
  const bool aligned = ref && ref_size == out_size;
  std::vector<size_t> dst_off(n);
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    check_row(table[C * i], table[C * i + 1], table[C * i + 2], uint64_t(spec.itemsize), size);
    dst_off[i] = total;
    total += table[C * i + 2];
  }
  if (total != out_size) throw FormatError("chunk sizes do not add up to the tensor size");
  const int nw = resolve_threads(threads);
  std::vector<Scratch> scratch(size_t(std::max(1, nw)));
  parallel_for(n, threads, [&](size_t i, int w) {
    const uint8_t* p = payload + table[C * i];
    const size_t csize = table[C * i + 1], rsize = table[C * i + 2];
    uint8_t* dst = out + dst_off[i];
    decode_chunk(p, csize, spec, dst, rsize, worker_scratch(scratch, w),
                 aligned ? ref + dst_off[i] : nullptr, aligned ? ref + dst_off[i] : ref,
                 aligned ? rsize : ref_size);
    if (verify) check_sum(dst, rsize, table[C * i + 3], i);
  });
}


void decode_segments(const uint8_t* payload, size_t size, const uint64_t* table, size_t n,
                     uint8_t* out, size_t out_size, int threads, bool verify) {
  constexpr size_t C = kSegmentColumns;
  std::vector<ChunkSpec> specs(n);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t* row = table + C * i;
    const uint64_t rsize = row[2], dst = row[4];
    if (row[5] == 0 || row[5] > 16 || row[6] > 255) throw FormatError("bad chunk spec");
    specs[i] = make_spec(int(row[5]), int(row[6]));
    check_row(row[0], row[1], rsize, row[5], size);
    if (dst > out_size || rsize > out_size - dst) throw FormatError("chunk lies outside the output");
  }
  const int nw = resolve_threads(threads);
  std::vector<Scratch> scratch(size_t(std::max(1, nw)));
  parallel_for(n, threads, [&](size_t i, int w) {
    const uint64_t* row = table + C * i;
    uint8_t* dst = out + row[4];
    decode_chunk(payload + row[0], row[1], specs[i], dst, row[2], worker_scratch(scratch, w));
    if (verify) check_sum(dst, row[2], row[3], i);
  });
}

}  // namespace wz
