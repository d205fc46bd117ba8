#include "chunk.hpp"

#include <cmath>

#include "cm.hpp"
#include "rans.hpp"
#include "zstd_dl.hpp"

namespace wz {

namespace {

double entropy_bits(const uint32_t hist[256], size_t n) {
  double h = 0;
  for (int s = 0; s < 256; ++s)
    if (hist[s]) {
      double p = double(hist[s]) / double(n);
      h -= p * std::log2(p);
    }
  return h;
}

bool is_float(Transform t) { return t != Transform::kBytes; }

// Code one stream with every candidate the level allows; keep the smallest actual output.
Method code_stream(const uint8_t* x, size_t n, const uint8_t* side, const ChunkSpec& spec,
                   Scratch& s, Bytes& best) {
  uint32_t hist[256];
  rans::histogram(x, n, hist);
  int nsym = 0;
  for (int v = 0; v < 256; ++v) nsym += hist[v] != 0;

  if (spec.force_method >= 0) {
    Method m = Method(spec.force_method);
    bool ok = true;
    switch (m) {
      case Method::kRaw:
        best.assign(x, x + n);
        break;
      case Method::kConst:
        ok = nsym == 1;
        if (ok) best.assign(1, x[0]);
        break;
      case Method::kRans: {
        uint32_t freq[256];
        size_t est;
        int scale = rans::best_scale(hist, n, freq, &est);
        ok = rans::encode(x, n, freq, scale, best, SIZE_MAX);
        break;
      }
      case Method::kZstd:
        ok = zstd::compress(x, n, 3, best, SIZE_MAX);
        break;
      case Method::kCm:
        ok = cm::encode(x, n, side, spec.row, best, SIZE_MAX);
        break;
    }
    if (!ok) throw std::invalid_argument("forced method cannot code this stream");
    return m;
  }

  if (n == 0) {
    best.clear();
    return Method::kRaw;
  }
  if (nsym == 1) {  // constant plane, e.g. the zero low bytes of BF16 values stored as FP32
    best.assign(1, x[0]);
    return Method::kConst;
  }
  Method method = Method::kRaw;
  size_t best_size = n;
  const double h = entropy_bits(hist, n);

  // rANS pays when it saves at least 0.2% (default) / 3% (fast): otherwise the stream is
  // near-random mantissa and storing it raw keeps decoding at memcpy speed.
  const double keep = spec.level == kFast ? 0.97 : 0.998;
  uint32_t freq[256];
  size_t est;
  int scale = rans::best_scale(hist, n, freq, &est);
  if (double(est) < keep * double(best_size) &&
      rans::encode(x, n, freq, scale, s.cand, best_size - 1)) {
    best.swap(s.cand);
    best_size = best.size();
    method = Method::kRans;
  }

  // zstd finds repeats that order-0 coding cannot (zero rows, tied weights, text). A 64 KiB
  // probe decides whether a full attempt is worth its time.
  if (spec.level >= kDefault && zstd::available()) {
    const int zlevel = spec.level == kMax ? 12 : 3;
    const size_t probe = 65536;
    bool attempt = n <= probe;
    if (!attempt && zstd::compress(x, probe, zlevel, s.cand, probe)) {
      attempt = double(s.cand.size()) / probe < 0.97 * double(best_size) / double(n);
    }
    if (attempt && zstd::compress(x, n, zlevel, s.cand, best_size)) {
      best.swap(s.cand);
      best_size = best.size();
      method = Method::kZstd;
    }
  }

  // Context mixing: only where there is structure to find (not on random mantissa bytes).
  if (spec.level == kMax && (h < 7.99 || side) &&
      cm::encode(x, n, side, spec.row, s.cand, best_size - 1)) {
    best.swap(s.cand);
    best_size = best.size();
    method = Method::kCm;
  }
  if (method == Method::kRaw) best.assign(x, x + n);
  return method;
}

}  // namespace

void encode_chunk(const uint8_t* src, size_t nbytes, const ChunkSpec& spec, Bytes& out,
                  Scratch& s) {
  const int k = transform_width(spec.transform, spec.itemsize);
  if (nbytes % size_t(k)) throw std::invalid_argument("chunk is not a whole number of elements");
  const size_t n = nbytes / size_t(k);
  const uint8_t* planes[16];
  uint8_t* wplanes[16];
  if (k == 1 && spec.transform == Transform::kBytes) {
    planes[0] = src;  // identity: code the input in place
  } else {
    s.planes.resize(nbytes);
    for (int b = 0; b < k; ++b) planes[b] = wplanes[b] = s.planes.data() + size_t(b) * n;
    split_planes(spec.transform, k, src, n, wplanes);
  }
  Method methods[16];
  for (int b = 0; b < k; ++b) {
    const uint8_t* side = (b == 1 && is_float(spec.transform)) ? planes[0] : nullptr;
    methods[b] = code_stream(planes[b], n, side, spec, s, s.streams[b]);
  }
  out.clear();
  put_u8(out, uint8_t(spec.transform));
  put_u8(out, uint8_t(k));
  for (int b = 0; b < k; ++b) {
    put_u8(out, uint8_t(methods[b]));
    put_u32(out, uint32_t(s.streams[b].size()));
  }
  for (int b = 0; b < k; ++b) out.insert(out.end(), s.streams[b].begin(), s.streams[b].end());
}

void decode_chunk(const uint8_t* payload, size_t len, const ChunkSpec& spec, uint8_t* dst,
                  size_t nbytes, Scratch& s) {
  const int k = transform_width(spec.transform, spec.itemsize);
  if (nbytes % size_t(k)) throw FormatError("chunk size is not a whole number of elements");
  const size_t n = nbytes / size_t(k);
  Reader r(payload, len);
  if (r.u8() != uint8_t(spec.transform)) throw FormatError("chunk transform mismatch");
  if (r.u8() != k) throw FormatError("chunk stream count mismatch");
  uint8_t methods[16];
  uint32_t lens[16];
  size_t total = 0;
  for (int b = 0; b < k; ++b) {
    methods[b] = r.u8();
    lens[b] = r.u32();
    if (methods[b] >= kNumMethods) throw FormatError("unknown stream method");
    total += lens[b];
  }
  if (total != r.left()) throw FormatError("chunk stream lengths do not add up");

  const bool direct = k == 1 && spec.transform == Transform::kBytes;
  if (!direct) s.planes.resize(nbytes);
  const uint8_t* planes[16];
  for (int b = 0; b < k; ++b) {
    const uint8_t* body = r.take(lens[b]);
    uint8_t* target = direct ? dst : s.planes.data() + size_t(b) * n;
    switch (Method(methods[b])) {
      case Method::kRaw:
        if (lens[b] != n) throw FormatError("raw stream has the wrong length");
        if (direct) std::memcpy(dst, body, n);
        planes[b] = direct ? dst : body;  // raw planes are read in place
        continue;
      case Method::kConst:
        if (lens[b] != 1) throw FormatError("constant stream has the wrong length");
        std::memset(target, body[0], n);
        break;
      case Method::kRans:
        rans::decode(body, lens[b], target, n);
        break;
      case Method::kZstd:
        zstd::decompress(body, lens[b], target, n);
        break;
      case Method::kCm: {
        const uint8_t* side = (b == 1 && is_float(spec.transform)) ? planes[0] : nullptr;
        cm::decode(body, lens[b], side, target, n);
        break;
      }
    }
    planes[b] = target;
  }
  if (!direct) merge_planes(spec.transform, k, planes, n, dst);
}

}  // namespace wz
