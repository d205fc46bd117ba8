#include "rans.hpp"

#include <algorithm>
#include <cmath>

namespace wz::rans {

namespace {

constexpr int kStates = 8;                 // interleaved states (power of two)
constexpr uint64_t kL = 1ULL << 31;        // lower bound of the state interval [L, 2^63)
constexpr size_t kStateBytes = kStates * 8;

inline uint64_t mulhi64(uint64_t a, uint64_t b) {
  return uint64_t((static_cast<unsigned __int128>(a) * b) >> 64);
}

// Encoder-side symbol: division replaced by a multiply with a 64-bit reciprocal
// (Alverson / ryg_rans), exact for states below 2^63.
struct EncSym {
  uint64_t x_max;
  uint64_t rcp_freq;
  uint32_t bias;
  uint32_t cmpl_freq;
  uint32_t rcp_shift;
};

void make_enc_sym(EncSym& e, uint32_t start, uint32_t freq, int scale) {
  const uint32_t M = 1u << scale;
  e.x_max = ((kL >> scale) << 32) * freq;
  e.cmpl_freq = M - freq;
  if (freq < 2) {
    // q = x - 1 for freq == 1, folded into the bias.
    e.rcp_freq = ~0ULL;
    e.rcp_shift = 0;
    e.bias = start + M - 1;
  } else {
    uint32_t shift = 0;
    while (freq > (1u << shift)) shift++;
    // rcp = ceil(2^(shift + 63) / freq), computed in two 64-bit halves.
    uint64_t x0 = freq - 1;
    uint64_t x1 = 1ULL << (shift + 31);
    uint64_t t1 = x1 / freq;
    x0 += (x1 % freq) << 32;
    uint64_t t0 = x0 / freq;
    e.rcp_freq = t0 + (t1 << 32);
    e.rcp_shift = shift - 1;
    e.bias = start;
  }
}

size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

size_t table_size(const uint32_t freq[256]) {
  size_t t = 2;
  for (int s = 0; s < 256; ++s)
    if (freq[s]) t += 1 + varint_len(freq[s]);
  return t;
}

}  // namespace

void histogram(const uint8_t* in, size_t n, uint32_t hist[256]) {
  uint32_t h[4][256] = {};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    h[0][in[i]]++;
    h[1][in[i + 1]]++;
    h[2][in[i + 2]]++;
    h[3][in[i + 3]]++;
  }
  for (; i < n; ++i) h[0][in[i]]++;
  for (int s = 0; s < 256; ++s) hist[s] = h[0][s] + h[1][s] + h[2][s] + h[3][s];
}

void normalize(const uint32_t hist[256], size_t n, int scale, uint32_t freq[256]) {
  const uint64_t M = 1ULL << scale;
  int64_t sum = 0;
  for (int s = 0; s < 256; ++s) {
    freq[s] = 0;
    if (!hist[s]) continue;
    uint64_t f = (uint64_t(hist[s]) * M + n / 2) / n;
    freq[s] = uint32_t(f ? f : 1);
    sum += freq[s];
  }
  // Fix the rounding error one unit at a time where it costs least (<= 256 steps).
  while (sum != int64_t(M)) {
    int best = -1;
    double best_cost = 0;
    for (int s = 0; s < 256; ++s) {
      if (!hist[s]) continue;
      double f = freq[s];
      if (sum > int64_t(M)) {
        if (freq[s] <= 1) continue;
        double cost = hist[s] * std::log2(f / (f - 1));  // bits lost by f -> f-1
        if (best < 0 || cost < best_cost) best = s, best_cost = cost;
      } else {
        double gain = hist[s] * std::log2((f + 1) / f);  // bits saved by f -> f+1
        if (best < 0 || gain > best_cost) best = s, best_cost = gain;
      }
    }
    if (sum > int64_t(M)) {
      freq[best]--;
      sum--;
    } else {
      freq[best]++;
      sum++;
    }
  }
}

size_t estimate_size(const uint32_t hist[256], const uint32_t freq[256], int scale) {
  double bits = 0;
  for (int s = 0; s < 256; ++s)
    if (hist[s]) bits += double(hist[s]) * (scale - std::log2(double(freq[s])));
  // Each state carries ~31 bits of the final flush beyond the ideal code length.
  return table_size(freq) + kStateBytes + size_t(bits / 8) + 4;
}

int best_scale(const uint32_t hist[256], size_t n, uint32_t freq_out[256], size_t* size_out) {
  int nsym = 0;
  for (int s = 0; s < 256; ++s) nsym += hist[s] != 0;
  int best = -1;
  size_t best_size = 0;
  uint32_t f[256];
  // 12 bits keeps the decode table in L1; 14 bits pays off for long-tailed streams.
  for (int scale : {12, 14}) {
    if ((1 << scale) < nsym) continue;
    normalize(hist, n, scale, f);
    size_t sz = estimate_size(hist, f, scale);
    // Prefer the smaller table unless the larger one saves more than 0.05%.
    if (best < 0 || sz + sz / 2000 < best_size) {
      best = scale;
      best_size = sz;
      std::memcpy(freq_out, f, sizeof f);
    }
  }
  if (best < 0) {  // > 4096 symbols is impossible for bytes, kept for safety
    best = kMaxScale;
    normalize(hist, n, best, freq_out);
    best_size = estimate_size(hist, freq_out, best);
  }
  *size_out = best_size;
  return best;
}

bool encode(const uint8_t* in, size_t n, const uint32_t freq[256], int scale, Bytes& out,
            size_t cap) {
  EncSym es[256];
  uint8_t present[256];
  int nsym = 0;
  uint32_t start = 0;
  for (int s = 0; s < 256; ++s) {
    if (!freq[s]) continue;
    make_enc_sym(es[s], start, freq[s], scale);
    start += freq[s];
    present[nsym++] = uint8_t(s);
  }
  const size_t header = table_size(freq);
  cap = std::min(cap, header + kStateBytes + 4 * n);  // at most one word per symbol
  if (cap < header + kStateBytes) return false;
  const size_t max_words = (cap - header - kStateBytes) / 4;
  std::vector<uint32_t> words(max_words + 1);
  uint32_t* const lo = words.data();
  uint32_t* ptr = lo + words.size();

  uint64_t x[kStates];
  for (auto& v : x) v = kL;
  // Symbols are encoded in reverse so that the decoder reads forward.
  for (size_t i = n; i-- > 0;) {
    const EncSym& e = es[in[i]];
    uint64_t xs = x[i & (kStates - 1)];
    if (xs >= e.x_max) {
      if (ptr == lo) return false;
      *--ptr = uint32_t(xs);
      xs >>= 32;
    }
    uint64_t q = mulhi64(xs, e.rcp_freq) >> e.rcp_shift;
    x[i & (kStates - 1)] = xs + e.bias + q * e.cmpl_freq;
  }
  const size_t nwords = size_t(lo + words.size() - ptr);
  const size_t total = header + kStateBytes + 4 * nwords;
  if (total > cap) return false;

  out.clear();
  out.reserve(total);
  put_u8(out, uint8_t(scale));
  put_u8(out, uint8_t(nsym - 1));
  for (int k = 0; k < nsym; ++k) put_u8(out, present[k]);
  for (int k = 0; k < nsym; ++k) put_varint(out, freq[present[k]]);
  size_t off = out.size();
  out.resize(total);
  for (int j = 0; j < kStates; ++j) store_u64(&out[off + 8 * j], x[j]);
  std::memcpy(&out[off + kStateBytes], ptr, 4 * nwords);
  return true;
}

void decode(const uint8_t* in, size_t len, uint8_t* out, size_t n) {
  Reader r(in, len);
  const int scale = r.u8();
  if (scale < kMinScale || scale > kMaxScale) throw FormatError("rANS: bad scale");
  const uint32_t M = 1u << scale;
  const int nsym = int(r.u8()) + 1;
  const uint8_t* syms = r.take(size_t(nsym));
  for (int k = 1; k < nsym; ++k)
    if (syms[k] <= syms[k - 1]) throw FormatError("rANS: bad symbol list");

  // Slot tables: (freq << 16 | slot - start) and the symbol, one entry per slot.
  std::vector<uint32_t> dec(M);
  std::vector<uint8_t> sym(M);
  uint32_t start = 0;
  for (int k = 0; k < nsym; ++k) {
    uint64_t f = r.varint();
    if (f == 0 || f > M - start) throw FormatError("rANS: bad frequency table");
    for (uint32_t b = 0; b < f; ++b) {
      dec[start + b] = uint32_t(f << 16) | b;
      sym[start + b] = syms[k];
    }
    start += uint32_t(f);
  }
  if (start != M) throw FormatError("rANS: frequencies do not sum to the scale");

  const uint8_t* st = r.take(kStateBytes);
  uint64_t x[kStates];
  for (int j = 0; j < kStates; ++j) x[j] = load_u64(st + 8 * j);
  const uint8_t* p = r.pos();
  const uint8_t* const end = p + r.left();
  if ((end - p) % 4) throw FormatError("rANS: ragged word stream");

  const uint32_t mask = M - 1;
  const uint32_t* dtab = dec.data();
  const uint8_t* stab = sym.data();
  size_t i = 0;
  // Fast path: a group of 8 symbols reads at most 8 words, so no bounds checks inside.
  while (i + kStates <= n && size_t(end - p) >= 4 * kStates) {
    for (int j = 0; j < kStates; ++j) {
      uint64_t xs = x[j];
      uint32_t slot = uint32_t(xs) & mask;
      uint32_t e = dtab[slot];
      out[i + j] = stab[slot];
      xs = uint64_t(e >> 16) * (xs >> scale) + (e & 0xffff);
      uint64_t w = load_u32(p);
      bool renorm = xs < kL;
      x[j] = renorm ? (xs << 32) | w : xs;
      p += renorm ? 4 : 0;
    }
    i += kStates;
  }
  for (; i < n; ++i) {
    const int j = int(i & (kStates - 1));
    uint64_t xs = x[j];
    uint32_t slot = uint32_t(xs) & mask;
    uint32_t e = dtab[slot];
    out[i] = stab[slot];
    xs = uint64_t(e >> 16) * (xs >> scale) + (e & 0xffff);
    if (xs < kL) {
      if (end - p < 4) throw FormatError("rANS: stream truncated");
      xs = (xs << 32) | load_u32(p);
      p += 4;
    }
    x[j] = xs;
  }
  if (p != end) throw FormatError("rANS: trailing data");
  for (int j = 0; j < kStates; ++j)
    if (x[j] != kL) throw FormatError("rANS: final state mismatch (corrupt stream)");
}

}  // namespace wz::rans
