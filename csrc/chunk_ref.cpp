// Chunks coded against a reference: the same chunk of an earlier checkpoint.
//
// Payload: u8 0xFE, u8 predictor (predict.hpp), k' x u8 method, (k' - 1) x u32 length, the
// stream bodies. k' = k (the transform's streams) for kXor and kSub, 2 for kSubLen (bit
// lengths, packed low bits). kXor streams are the dtype's planes XORed with the reference's
// planes, or, with bit 7 of the method byte set, the plain planes. kSub streams are the byte
// planes of the zigzag residuals, most significant first. Contexts: stream 0 takes the
// reference's exponent byte (floats; for integers and bytes its top byte) as its rANS side
// byte, streams >= 1 of kXor/kSub take the residual's stream 0; kSubLen's bits have none.
//
// The choice among independent, kXor, kSub and kSubLen comes from order-0 entropies of the
// planes of each (one histogram pass each), so only the best is coded in full (the two best
// at level max).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "chunk.hpp"
#include "zstd_dl.hpp"

namespace wz {

namespace {

double plane_bits(const uint8_t* x, size_t n) {
  uint32_t h[4][256] = {};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++h[0][x[i]];
    ++h[1][x[i + 1]];
    ++h[2][x[i + 2]];
    ++h[3][x[i + 3]];
  }
  for (; i < n; ++i) ++h[0][x[i]];
  double bits = 0;
  for (int v = 0; v < 256; ++v) {
    const uint32_t c = h[0][v] + h[1][v] + h[2][v] + h[3][v];
    if (c) bits -= double(c) * std::log2(double(c) / double(n));
  }
  return bits;
}

void histogram(const uint8_t* x, size_t n, uint32_t h[256]) {
  std::fill(h, h + 256, 0u);
  for (size_t i = 0; i < n; ++i) ++h[x[i]];
}

bool is_float(Transform t) { return t != Transform::kBytes; }

// The plane of the reference used as stream 0's side byte: the exponent of floats, the top
// byte of integers.
int side_plane(const ChunkSpec& spec, int k) { return is_float(spec.transform) ? 0 : k - 1; }

// Byte planes of little-endian words, most significant first.
void split_msb_first(int k, const uint8_t* src, size_t n, uint8_t* planes) {
  uint8_t* p[16];
  for (int b = 0; b < k; ++b) p[k - 1 - b] = planes + size_t(b) * n;
  split_planes(Transform::kBytes, k, src, n, p);
}
void merge_msb_first(int k, const uint8_t* planes, size_t n, uint8_t* dst) {
  const uint8_t* p[16];
  for (int b = 0; b < k; ++b) p[k - 1 - b] = planes + size_t(b) * n;
  merge_planes(Transform::kBytes, k, p, n, dst);
}

// kSubLen codes t = (L + f(e)) mod 256 instead of the bit length L, with e the reference's
// side byte: the size of a change in ULPs shrinks as the value's exponent grows, so that
// L + exponent is nearly independent of the exponent, and order 0 captures it.
inline uint8_t len_shift(Transform t, uint8_t e) {
  switch (t) {
    case Transform::kFP32:
    case Transform::kBF16:
      return e;
    case Transform::kFP16:
      return uint8_t(e >> 3);
    case Transform::kFP64:
      return uint8_t(e << 3);
    default:
      return 0;
  }
}
void shift_lens(const ChunkSpec& spec, uint8_t* lens, const uint8_t* side, size_t n, int dir) {
  if (!is_float(spec.transform)) return;
  for (size_t i = 0; i < n; ++i) lens[i] = uint8_t(lens[i] + dir * len_shift(spec.transform, side[i]));
}

struct Variant {
  Predictor pred;
  double bits;
  uint8_t plain_mask;  // kXor: streams kept plain
};

// Code the streams of one variant into out; returns the size, or 0 if it does not beat
// `limit` bytes.
// fresh: s.res, s.res_planes (kSub), s.lens and s.bits (kSubLen) still hold the estimate's.
size_t code_variant(const Variant& v, const uint8_t* src, size_t nbytes, const ChunkSpec& spec,
                    int k, const uint8_t* ref, uint8_t* out, size_t limit, Scratch& s, bool fresh) {
  const size_t n = nbytes / size_t(k);
  const uint8_t* streams[16];
  size_t sizes[16];
  int ks = k;
  const uint8_t* plain = s.planes.data();
  const uint8_t* refp = s.ref_planes.data();
  if (v.pred == Predictor::kXor) {
    s.res_planes.resize(nbytes);
    for (int b = 0; b < k; ++b) {
      const size_t o = size_t(b) * n;
      if (v.plain_mask >> b & 1) {
        streams[b] = plain + o;
      } else {
        uint8_t* r = s.res_planes.data() + o;
        for (size_t i = 0; i < n; ++i) r[i] = uint8_t(plain[o + i] ^ refp[o + i]);
        streams[b] = r;
      }
      sizes[b] = n;
    }
  } else {
    if (!fresh) {
      s.res.resize(nbytes);
      predict(Predictor::kSub, spec.itemsize, src, ref, n, s.res.data());
    }
    if (v.pred == Predictor::kSub) {
      if (!fresh) {
        s.res_planes.resize(nbytes);
        split_msb_first(k, s.res.data(), n, s.res_planes.data());
      }
      for (int b = 0; b < k; ++b) streams[b] = s.res_planes.data() + size_t(b) * n, sizes[b] = n;
    } else {
      if (!fresh) {
        s.lens.resize(n);
        bitlen_split(spec.itemsize, s.res.data(), n, s.lens.data(), s.bits);
        shift_lens(spec, s.lens.data(), refp + size_t(side_plane(spec, k)) * n, n, 1);
      }
      ks = 2;
      streams[0] = s.lens.data(), sizes[0] = n;
      streams[1] = s.bits.data(), sizes[1] = s.bits.size();
    }
  }
  const uint8_t* side0 = refp + size_t(side_plane(spec, k)) * n;
  uint32_t side_hist[256], h0[256];
  histogram(side0, n, side_hist);
  rans::Stats st;
  size_t total = 2 + size_t(ks) + 4 * size_t(ks - 1);
  uint8_t methods[16];
  for (int b = 0; b < ks && total < limit; ++b) {
    const uint8_t* side = b == 0 ? side0 : (v.pred == Predictor::kSubLen ? nullptr : streams[0]);
    const uint32_t* shist = b == 0 ? side_hist : h0;
    rans::gather_stats(streams[b], sizes[b], side ? rans::Family::kSide : rans::Family::kNone,
                       side, shist, st);
    if (b == 0) std::memcpy(h0, st.hist, sizeof h0);
    const Method m = detail::code_stream(streams[b], sizes[b], st, side, spec, s, s.streams[b]);
    methods[b] = uint8_t(m) | ((v.plain_mask >> b & 1) ? kPlainFlag : 0);
    total += s.streams[b].size();
  }
  if (total >= limit) return 0;
  *out++ = kConditioned;
  *out++ = uint8_t(v.pred);
  for (int b = 0; b < ks; ++b) *out++ = methods[b];
  for (int b = 0; b + 1 < ks; ++b) {
    store_u32(out, uint32_t(s.streams[b].size()));
    out += 4;
  }
  for (int b = 0; b < ks; ++b) out = std::copy(s.streams[b].begin(), s.streams[b].end(), out);
  return total;
}

}  // namespace

size_t detail::encode_conditioned(const uint8_t* src, size_t nbytes, const ChunkSpec& spec,
                                  const uint8_t* ref, uint8_t* out, Scratch& s) {
  const int k = transform_width(spec.transform, spec.itemsize);
  const size_t n = nbytes / size_t(k);
  if (n == 0) return 0;
  s.planes.resize(nbytes);
  s.ref_planes.resize(nbytes);
  uint8_t* pp[16];
  uint8_t* rp[16];
  for (int b = 0; b < k; ++b) {
    pp[b] = s.planes.data() + size_t(b) * n;
    rp[b] = s.ref_planes.data() + size_t(b) * n;
  }
  split_planes(spec.transform, k, src, n, pp);
  split_planes(spec.transform, k, ref, n, rp);

  // Order-0 estimates of each variant.
  Variant cands[4];
  int nc = 0;
  double indep = 0, xr = 0;
  uint8_t mask = 0;
  s.res_planes.resize(n);
  for (int b = 0; b < k; ++b) {
    const double plain = plane_bits(pp[b], n);
    uint8_t* r = s.res_planes.data();
    for (size_t i = 0; i < n; ++i) r[i] = uint8_t(pp[b][i] ^ rp[b][i]);
    const double x = plane_bits(r, n);
    indep += plain;
    if (plain < x) mask |= uint8_t(1u << b);
    xr += std::min(plain, x);
  }
  if (mask != (1u << k) - 1) cands[nc++] = {Predictor::kXor, xr, mask};
  if (sub_supported(spec.itemsize)) {
    s.res.resize(nbytes);
    predict(Predictor::kSub, spec.itemsize, src, ref, n, s.res.data());
    s.res_planes.resize(nbytes);
    split_msb_first(k, s.res.data(), n, s.res_planes.data());
    double sub = 0;
    for (int b = 0; b < k; ++b) sub += plane_bits(s.res_planes.data() + size_t(b) * n, n);
    cands[nc++] = {Predictor::kSub, sub, 0};
    if (k > 1) {
      s.lens.resize(n);
      bitlen_split(spec.itemsize, s.res.data(), n, s.lens.data(), s.bits);
      shift_lens(spec, s.lens.data(), rp[side_plane(spec, k)], n, 1);
      cands[nc++] = {Predictor::kSubLen, plane_bits(s.lens.data(), n) + 8.0 * double(s.bits.size()), 0};
    }
  }
  if (spec.predictor > 0) {  // forced (tests, measurements)
    const Predictor want = Predictor(spec.predictor);
    int found = -1;
    for (int c = 0; c < nc; ++c)
      if (cands[c].pred == want) found = c;
    if (found < 0 && want == Predictor::kXor) cands[nc] = {Predictor::kXor, 0, 0}, found = nc++;
    if (found < 0) return 0;
    return code_variant(cands[found], src, nbytes, spec, k, ref, out, nbytes + 1, s, false);
  }
  for (int i = 1; i < nc; ++i)  // by estimated size (insertion sort of at most 3)
    for (int j = i; j > 0 && cands[j].bits < cands[j - 1].bits; --j) std::swap(cands[j], cands[j - 1]);
  // Independent coding has richer contexts for plain planes: prefer it unless clearly beaten.
  if (nc == 0 || cands[0].bits > 0.98 * indep) return 0;
  size_t best = code_variant(cands[0], src, nbytes, spec, k, ref, out, nbytes + 1, s, true);
  if (spec.level == kMax && nc > 1 && cands[1].bits < 0.98 * indep) {
    const size_t limit = best ? best : nbytes + 1;
    Bytes tmp(chunk_bound(nbytes, spec));
    if (size_t second = code_variant(cands[1], src, nbytes, spec, k, ref, tmp.data(), limit, s, false)) {
      std::memcpy(out, tmp.data(), second);
      best = second;
    }
  }
  return best;
}

size_t detail::encode_dict(const uint8_t* src, size_t nbytes, const ChunkSpec& spec,
                           const uint8_t* dict, size_t dict_size, uint8_t* out, size_t limit,
                           Scratch& s) {
  if (nbytes == 0 || dict_size == 0 || limit < 3) return 0;
  if (!zstd::compress_dict(src, nbytes, dict, dict_size, spec.level == kMax ? 19 : 9, s.cand,
                           limit - 2))
    return 0;
  *out++ = kConditioned;
  *out++ = uint8_t(Predictor::kNone);
  std::memcpy(out, s.cand.data(), s.cand.size());
  return s.cand.size() + 2;
}

void detail::decode_conditioned(const uint8_t* payload, size_t len, const ChunkSpec& spec,
                                const uint8_t* ref, const uint8_t* dict, size_t dict_size,
                                uint8_t* dst, size_t nbytes, Scratch& s) {
  const int k = transform_width(spec.transform, spec.itemsize);
  const size_t n = nbytes / size_t(k);
  Reader r(payload, len);
  r.u8();  // kConditioned
  const uint8_t p = r.u8();
  if (p >= kNumPredictors) throw FormatError("unknown predictor");
  if (p == uint8_t(Predictor::kNone)) {
    if (!dict) throw FormatError("chunk is coded against a reference but none was given");
    zstd::decompress_dict(payload + 2, len - 2, dict, dict_size, dst, nbytes);
    return;
  }
  if (!ref) throw FormatError("chunk is coded against a reference but none was given");
  const Predictor pred = Predictor(p);
  if (pred != Predictor::kXor && !sub_supported(spec.itemsize))
    throw FormatError("SUB predictor with an item size other than 1, 2, 4 or 8");
  if (pred == Predictor::kSubLen && k < 2) throw FormatError("bit-length residual of bytes");
  const int ks = pred == Predictor::kSubLen ? 2 : k;
  uint8_t methods[16];
  for (int b = 0; b < ks; ++b) {
    methods[b] = r.u8();
    if ((methods[b] & 0x7f) >= kNumMethods) throw FormatError("unknown stream method");
    if ((methods[b] & kPlainFlag) && pred != Predictor::kXor)
      throw FormatError("plain stream flag outside an XOR chunk");
  }
  uint32_t lens[16];
  size_t total = 0;
  for (int b = 0; b + 1 < ks; ++b) total += lens[b] = r.u32();
  if (total > r.left()) throw FormatError("chunk stream lengths do not add up");
  if (r.left() - total > UINT32_MAX) throw FormatError("chunk stream too long");
  lens[ks - 1] = uint32_t(r.left() - total);
  if (n == 0) return;

  s.ref_planes.resize(nbytes);
  uint8_t* rp[16];
  for (int b = 0; b < k; ++b) rp[b] = s.ref_planes.data() + size_t(b) * n;
  split_planes(spec.transform, k, ref, n, rp);
  const uint8_t* side0 = rp[side_plane(spec, k)];
  s.res_planes.resize(nbytes);
  uint8_t* planes = s.res_planes.data();
  if (pred == Predictor::kSubLen) {
    s.lens.resize(n);
    detail::decode_stream(Method(methods[0]), r.take(lens[0]), lens[0], side0, s.lens.data(), n);
    shift_lens(spec, s.lens.data(), side0, n, -1);
    const size_t nb = bitlen_bytes(spec.itemsize, s.lens.data(), n);
    s.bits.resize(nb);
    detail::decode_stream(Method(methods[1]), r.take(lens[1]), lens[1], nullptr, s.bits.data(), nb);
    s.res.resize(nbytes);
    bitlen_merge(spec.itemsize, s.lens.data(), s.bits.data(), nb, n, s.res.data());
    unpredict(Predictor::kSub, spec.itemsize, s.res.data(), ref, n, dst);
    return;
  }
  for (int b = 0; b < ks; ++b) {
    uint8_t* out = planes + size_t(b) * n;
    detail::decode_stream(Method(methods[b] & 0x7f), r.take(lens[b]), lens[b],
                          b == 0 ? side0 : planes, out, n);
  }
  if (pred == Predictor::kSub) {
    s.res.resize(nbytes);
    merge_msb_first(k, planes, n, s.res.data());
    unpredict(Predictor::kSub, spec.itemsize, s.res.data(), ref, n, dst);
    return;
  }
  const uint8_t* pl[16];
  for (int b = 0; b < k; ++b) {
    uint8_t* q = planes + size_t(b) * n;
    if (!(methods[b] & kPlainFlag))
      for (size_t i = 0; i < n; ++i) q[i] = uint8_t(q[i] ^ rp[b][i]);
    pl[b] = q;
  }
  merge_planes(spec.transform, k, pl, n, dst);
}

}  // namespace wz
