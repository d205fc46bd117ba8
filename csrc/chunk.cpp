#include "chunk.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "cm.hpp"
#include "rans.hpp"
#include "rans_model.hpp"
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

// How rANS may model stream b: exponents by segment of the chunk (their statistics drift
// across the tensors a chunk spans), the sign/mantissa stream by its exponent, other bytes
// by the zero low bits that reduced-precision values leave.
rans::Family rans_family(const ChunkSpec& spec, int b) {
  if (spec.level == kFast) return rans::Family::kNone;
  if (!is_float(spec.transform) || b > 1) return rans::Family::kLowZeros;
  return b == 0 ? rans::Family::kPosition : rans::Family::kSide;
}

bool rans_encode(const uint8_t* x, size_t n, const rans::Stats& st, const uint8_t* side,
                 Bytes& out, size_t cap, size_t* est) {
  rans::Model m;
  *est = rans::choose_model(st, m);
  return *est < cap && rans::encode(x, n, side, m, out, cap);
}

}  // namespace

// Code a stream with every candidate the level allows; keep the smallest actual output.
Method detail::code_stream(const uint8_t* x, size_t n, const rans::Stats& st, const uint8_t* side,
                   const ChunkSpec& spec, Scratch& s, Bytes& best) {
  const uint32_t* hist = st.hist;
  int nsym = 0;
  for (int v = 0; v < 256; ++v) nsym += hist[v] != 0;
  size_t est;

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
      case Method::kRans:
        ok = rans_encode(x, n, st, side, best, SIZE_MAX, &est);
        break;
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
  const size_t keep = size_t((spec.level == kFast ? 0.97 : 0.998) * double(n));
  // An order-0 model does not code below the order-0 entropy, and its lanes' final states
  // cost at least 16 bits each beyond it (states live in [2^16, 2^32)), plus the header.
  // Where that is already more than rANS may cost (near-random mantissa bytes, and any small
  // stream without much skew), its model search (~10 us of table pricing a stream: most of a
  // small chunk's time) cannot win. Context models (large streams) can, so they still try.
  const double floor_bytes = h * double(n) / 8 + 2 * rans::kLanes + 6;
  const bool hopeless = st.family == rans::Family::kNone && floor_bytes >= double(keep);
  if (!hopeless && rans_encode(x, n, st, side, s.cand, keep, &est)) {
    best.swap(s.cand);
    best_size = best.size();
    method = Method::kRans;
  }

  // zstd finds repeats that order-0 coding cannot (zero rows, tied weights, text). A fast
  // probe (level 1) of the first 64 KiB decides whether a full attempt is worth its time; a
  // stream no longer than the probe is attempted if level 1 comes within 3 % of the best.
  if (spec.level >= kDefault && zstd::available()) {
    const int zlevel = spec.level == kMax ? 12 : 3;
    const size_t probe = 65536;
    bool attempt = false;
    if (n <= probe) {
      attempt = zstd::compress(x, n, 1, s.cand, size_t(1.03 * double(best_size)) + 1);
    } else if (zstd::compress(x, probe, 1, s.cand, probe)) {
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

void detail::decode_stream(Method m, const uint8_t* body, size_t len, const uint8_t* side,
                           uint8_t* out, size_t n) {
  switch (m) {
    case Method::kRaw:
      if (len != n) throw FormatError("raw stream has the wrong length");
      if (n) std::memcpy(out, body, n);
      return;
    case Method::kConst:
      if (len != 1) throw FormatError("constant stream has the wrong length");
      std::memset(out, body[0], n);
      return;
    case Method::kRans: {
      rans::Decoder dec(body, len);
      if (dec.needs_side() && !side) throw FormatError("rANS: side stream missing");
      dec.decode(out, n, side);
      dec.finish();
      return;
    }
    case Method::kZstd:
      zstd::decompress(body, len, out, n);
      return;
    case Method::kCm:
      cm::decode(body, len, side, out, n);
      return;
  }
  throw FormatError("unknown stream method");
}

namespace {
using detail::code_stream;
}  // namespace

size_t chunk_bound(size_t nbytes, const ChunkSpec& spec) {
  const size_t k = size_t(transform_width(spec.transform, spec.itemsize));
  // Unforced chunks never exceed 1 + nbytes (the stored form); forced rANS of random bytes
  // costs up to 2 bytes per symbol plus tables.
  return 2 + 5 * k + (spec.force_method < 0 ? nbytes : 3 * nbytes + 8192 * k);
}

size_t encode_chunk(const uint8_t* src, size_t nbytes, const ChunkSpec& spec, uint8_t* out,
                    Scratch& s, const uint8_t* ref) {
  const int k = transform_width(spec.transform, spec.itemsize);
  if (nbytes % size_t(k)) throw std::invalid_argument("chunk is not a whole number of elements");
  if (ref && spec.force_method < 0 && spec.predictor != 0)
    if (size_t len = detail::encode_conditioned(src, nbytes, spec, ref, out, s)) return len;
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
  rans::Stats st;
  uint32_t hist0[256];
  size_t total = size_t(k) + 4 * size_t(k - 1);
  bool all_raw = true;
  for (int b = 0; b < k; ++b) {
    const uint8_t* side = (b == 1 && is_float(spec.transform)) ? planes[0] : nullptr;
    rans::gather_stats(planes[b], n, rans_family(spec, b), side, hist0, st);
    if (b == 0) std::memcpy(hist0, st.hist, sizeof hist0);
    methods[b] = code_stream(planes[b], n, st, side, spec, s, s.streams[b]);
    total += s.streams[b].size();
    all_raw = all_raw && methods[b] == Method::kRaw;
  }
  // Nothing compressed (random data, tiny tensors): store the chunk as it is, 1 byte of
  // overhead, and decoding is a memcpy.
  if (spec.force_method < 0 && (total >= nbytes + 1 || (all_raw && k > 1))) {
    *out++ = kStored;
    std::memcpy(out, src, nbytes);
    return nbytes + 1;
  }
  if (total > chunk_bound(nbytes, spec)) throw std::logic_error("chunk exceeds its bound");
  for (int b = 0; b < k; ++b) *out++ = uint8_t(methods[b]);
  for (int b = 0; b + 1 < k; ++b) {
    store_u32(out, uint32_t(s.streams[b].size()));
    out += 4;
  }
  for (int b = 0; b < k; ++b) out = std::copy(s.streams[b].begin(), s.streams[b].end(), out);
  return total;
}

void decode_chunk(const uint8_t* payload, size_t len, const ChunkSpec& spec, uint8_t* dst,
                  size_t nbytes, Scratch& s, const uint8_t* ref, const uint8_t* dict,
                  size_t dict_size) {
  const int k = transform_width(spec.transform, spec.itemsize);
  if (nbytes % size_t(k)) throw FormatError("chunk size is not a whole number of elements");
  if (len >= 1 && payload[0] == kConditioned) {
    return detail::decode_conditioned(payload, len, spec, ref, dict, dict_size, dst, nbytes, s);
  }
  if (len >= 1 && payload[0] == kQuantised)
    return detail::decode_quantised(payload + 1, len - 1, spec, ref, dst, nbytes);
  const size_t n = nbytes / size_t(k);
  Reader r(payload, len);
  if (len >= 1 && payload[0] == kStored) {
    if (len != nbytes + 1) throw FormatError("stored chunk has the wrong length");
    std::memcpy(dst, payload + 1, nbytes);
    return;
  }
  Method methods[16];
  uint32_t lens[16];
  for (int b = 0; b < k; ++b) {
    const uint8_t m = r.u8();
    if (m >= kNumMethods) throw FormatError("unknown stream method");
    methods[b] = Method(m);
  }
  size_t total = 0;
  for (int b = 0; b + 1 < k; ++b) {
    lens[b] = r.u32();
    total += lens[b];
  }
  if (total > r.left()) throw FormatError("chunk stream lengths do not add up");
  lens[k - 1] = uint32_t(r.left() - total);
  if (r.left() - total > UINT32_MAX) throw FormatError("chunk stream too long");
  if (n == 0) return;
  const bool floats = is_float(spec.transform);
  const bool direct = k == 1 && spec.transform == Transform::kBytes;

  // Streams are rebuilt block by block: rANS streams decode a block into L1-resident buffers
  // and the merge consumes it at once, so no plane ever makes a round trip through memory.
  // Raw streams are read in place; zstd and cm streams (and an exponent stream that cm
  // needs whole as its side input) are decoded up front into full planes.
  // ~16 KiB of output per block: the block buffers and the output stay in L1.
  const size_t block = size_t(16384 / k) & ~size_t(rans::kLanes - 1);
  const uint8_t* full[16] = {};
  uint8_t konst[16] = {};
  std::optional<rans::Decoder> dec[16];
  uint8_t* planes = nullptr;
  for (int b = 0; b < k; ++b) {
    const uint8_t* body = r.take(lens[b]);
    const Method m = methods[b];
    if (m == Method::kRaw) {
      if (lens[b] != n) throw FormatError("raw stream has the wrong length");
      if (direct) std::memcpy(dst, body, n);
      full[b] = body;
      continue;
    }
    if (m == Method::kConst) {
      if (lens[b] != 1) throw FormatError("constant stream has the wrong length");
      konst[b] = body[0];
    }
    const bool whole = direct || m == Method::kZstd || m == Method::kCm ||
                       (b == 0 && floats && k > 1 && methods[1] == Method::kCm);
    if (m == Method::kRans) dec[b].emplace(body, lens[b]);
    if (!whole) continue;
    if (!planes) {
      s.planes.resize(direct ? 0 : nbytes);
      planes = direct ? dst : s.planes.data();
    }
    uint8_t* target = planes + size_t(b) * n;
    const uint8_t* side = (b == 1 && floats) ? full[0] : nullptr;
    switch (m) {
      case Method::kConst:
        std::memset(target, body[0], n);
        break;
      case Method::kRans:
        if (dec[b]->needs_side() && !side) throw FormatError("rANS: side stream missing");
        dec[b]->decode(target, n, side);
        dec[b]->finish();
        dec[b].reset();
        break;
      case Method::kZstd:
        zstd::decompress(body, lens[b], target, n);
        break;
      case Method::kCm:
        if (b == 1 && floats && !side) throw FormatError("cm: side stream missing");
        cm::decode(body, lens[b], side, target, n);
        break;
      case Method::kRaw:
        break;
    }
    full[b] = target;
  }
  if (direct) return;

  s.block.resize(size_t(k) * block);
  for (size_t off = 0; off < n; off += block) {
    const size_t cnt = std::min(block, n - off);
    const uint8_t* src[16];
    for (int b = 0; b < k; ++b) {
      uint8_t* buf = s.block.data() + size_t(b) * block;
      if (full[b]) {
        src[b] = full[b] + off;
      } else if (dec[b]) {
        const uint8_t* side = (b == 1 && floats) ? src[0] : nullptr;
        if (dec[b]->needs_side() && !side) throw FormatError("rANS: side stream missing");
        dec[b]->decode(buf, cnt, side);
        src[b] = buf;
      } else {  // constant: the buffer is filled once
        if (off == 0) std::memset(buf, konst[b], block);
        src[b] = buf;
      }
    }
    merge_planes(spec.transform, k, src, cnt, dst + off * size_t(k));
  }
  for (int b = 0; b < k; ++b)
    if (dec[b]) dec[b]->finish();
}

}  // namespace wz
