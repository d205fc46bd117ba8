// libFuzzer harness: wz::decode_chunk, the decoder of one .wz chunk, and everything under
// it (stored / raw / constant streams, static rANS with its AVX-512, AVX2 and scalar kernels,
// zstd, context mixing, the inverse float transforms). Frame: see frames.hpp.
//
// Oracle: FormatError or a checksum mismatch (what the reader raises), else the output must
// be reproducible (a second decode into a differently pre-filled buffer with fresh scratch
// gives the same bytes) and re-encoding it must decode back to it.
//
// The custom mutator knows the payload layout (method bytes, stream lengths, stream bodies):
// it mutates one stream and fixes the lengths, or a method byte, or the header, and then
// re-seals the checksum by decoding, so that most inputs get past the checksum; a fraction
// of plain mutations keeps the checksum path covered.
#include <algorithm>
#include <cstring>

#include "frames.hpp"
#include "fuzz_common.hpp"

namespace {

using fz::Bytes;

struct Parsed {
  wz::ChunkSpec spec;
  uint32_t nbytes, checksum;
  const uint8_t* payload;
  size_t len;
};

bool parse(const uint8_t* data, size_t size, Parsed& p) {
  if (size < fz::kChunkHead) return false;
  p.spec = fz::chunk_spec(data[0]);
  p.nbytes = fz::u32_at(data + 1);
  p.checksum = fz::u32_at(data + 5);
  p.payload = data + fz::kChunkHead;
  p.len = size - fz::kChunkHead;
  if (p.nbytes > fz::kMaxChunk) return false;
  // cm decodes every symbol whatever the stream holds (~1 us each under ASan): keep its
  // streams as short as the cm harness's, so that the campaign does not crawl.
  const int k = wz::transform_width(p.spec.transform, p.spec.itemsize);
  if (p.nbytes / size_t(k) > fz::kMaxCm && p.len >= size_t(k) && p.payload[0] != wz::kStored)
    for (int b = 0; b < k; ++b)
      if (p.payload[b] == uint8_t(wz::Method::kCm)) return false;
  return true;
}

// Decode into out (pre-filled with fill); false on FormatError. Other exceptions escape.
bool decode(const Parsed& p, Bytes& out, uint8_t fill) {
  wz::Scratch s;
  out.assign(std::max<size_t>(p.nbytes, 1), fill);  // never a null pointer, even for 0 bytes
  out.resize(p.nbytes);
  try {
    wz::decode_chunk(p.payload, p.len, p.spec, out.data(), p.nbytes, s);
  } catch (const wz::FormatError&) {
    return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Parsed p;
  if (!parse(data, size, p)) return -1;  // outside the harness's bounds: not kept
  Bytes out, again;
  if (!decode(p, out, fz::kFillA)) return 0;
  if (fz::hash32(out.data(), out.size()) != p.checksum) return 0;  // ChecksumError
  if (!decode(p, again, fz::kFillB) || again != out)
    fz::finding("chunk decode is not reproducible (unwritten or nondeterministic bytes)");
  // Round trip: what decoded must encode and decode back to itself.
  wz::Scratch s;
  Bytes enc(wz::chunk_bound(out.size(), p.spec));
  const size_t n = wz::encode_chunk(out.data(), out.size(), p.spec, enc.data(), s);
  Parsed q = p;
  q.payload = enc.data();
  q.len = n;
  if (!decode(q, again, fz::kFillB) || again != out) fz::finding("re-encoded chunk decodes differently");
  return 0;
}

namespace {

// Stream bodies [start, end) of a payload, or false if its layout does not parse.
bool streams(const uint8_t* pl, size_t len, int k, size_t lo[16], size_t hi[16]) {
  if (len < size_t(k) + 4 * size_t(k - 1) || pl[0] == wz::kStored) return false;
  size_t at = size_t(k) + 4 * size_t(k - 1);
  for (int b = 0; b < k; ++b) {
    const size_t l = b + 1 < k ? fz::u32_at(pl + k + 4 * b) : len - at;
    if (l > len - at) return false;
    lo[b] = at, hi[b] = at + l;
    at += l;
  }
  return true;
}

void reseal(uint8_t* data, size_t size) {
  Parsed p;
  Bytes out;
  if (parse(data, size, p) && decode(p, out, fz::kFillA))
    fz::put32(data + 5, fz::hash32(out.data(), out.size()));
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned seed) {
  fz::Rng rng(seed);
  const uint32_t r = rng.below(100);
  if (size < fz::kChunkHead + 1 || r < 15) return LLVMFuzzerMutate(data, size, max_size);
  const wz::ChunkSpec spec = fz::chunk_spec(data[0]);
  const int k = wz::transform_width(spec.transform, spec.itemsize);
  uint8_t* pl = data + fz::kChunkHead;
  const size_t len = size - fz::kChunkHead;
  size_t lo[16], hi[16];
  if (r < 25) {  // header: another dtype, or a nearby element count
    if (rng.below(2)) {
      data[0] = uint8_t(rng.below(fz::kNumSpecs * 3));
    } else {
      const int64_t nb = int64_t(fz::u32_at(data + 1)) +
                         int64_t(rng.below(9) - 4) * (rng.below(2) ? spec.itemsize : 1);
      fz::put32(data + 1, uint32_t(std::clamp<int64_t>(nb, 0, fz::kMaxChunk)));
    }
  } else if (r < 35) {  // a method byte (or the stored marker)
    const uint8_t m[] = {0, 1, 2, 3, 4, 5, 0xFF};
    pl[rng.below(uint32_t(k))] = m[rng.below(7)];
  } else if (r < 85 && streams(pl, len, k, lo, hi)) {  // one stream's body, lengths fixed up
    const int b = int(rng.below(uint32_t(k)));
    const size_t old = hi[b] - lo[b];
    size = fz::kChunkHead + fz::mutate_region(pl, len, max_size - fz::kChunkHead, lo[b], hi[b]);
    const size_t now = size - fz::kChunkHead - (len - old);
    if (b + 1 < k) fz::put32(pl + k + 4 * b, uint32_t(now));
  } else {
    size = fz::kChunkHead + fz::mutate_region(pl, len, max_size - fz::kChunkHead, 0, len);
  }
  reseal(data, size);
  return size;
}
