// The frequency tables of a rANS stream (layout in rans.hpp), written bit-packed after the
// 6-byte stream header and padded to a whole byte. Per table:
//   u3 g; for g = 0: gamma(nsym - 1), then the present symbols as alternating runs of absent
//   and present ones (gamma coded), then their frequencies; for g > 0: one frequency per
//   group of 2^g symbols, shared by all of them.
// A frequency list codes the differences of successive values, zigzag and Exp-Golomb coded,
// the last value implied by the sum. Neighbouring symbols (adjacent exponents or mantissas)
// have similar frequencies, so differences are small; grouping suits the smooth, dense
// mantissa distributions, whose tables would otherwise mostly store sampling noise.
#include <algorithm>

#include "rans_model.hpp"

namespace wz::rans {

namespace {

// Writes to out, or only counts the bits (out == nullptr).
class BitWriter {
 public:
  explicit BitWriter(Bytes* out) : out_(out) {}
  void put(uint32_t v, int n) {  // the low n <= 24 bits of v
    bits_ += size_t(n);
    if (!out_) return;
    acc_ |= uint64_t(v & ((1u << n) - 1)) << nb_;
    for (nb_ += n; nb_ >= 8; nb_ -= 8, acc_ >>= 8) out_->push_back(uint8_t(acc_));
  }
  void gamma(uint32_t v) {  // Elias gamma code of v >= 1
    int len = 31 - __builtin_clz(v);
    put(0, len);
    put(1, 1);
    put(v, len);  // the low len bits; the top bit is implied
  }
  size_t bits() const { return bits_; }
  void flush() {
    if (nb_) out_->push_back(uint8_t(acc_));
  }

 private:
  Bytes* out_;
  uint64_t acc_ = 0;
  int nb_ = 0;
  size_t bits_ = 0;
};

class BitReader {
 public:
  explicit BitReader(Reader& r) : r_(r) {}
  uint32_t get(int n) {
    for (; nb_ < n; nb_ += 8) acc_ |= uint64_t(r_.u8()) << nb_;
    uint32_t v = uint32_t(acc_ & ((1ULL << n) - 1));
    acc_ >>= n;
    nb_ -= n;
    return v;
  }
  uint32_t gamma() {
    int len = 0;
    while (!get(1))
      if (++len > 16) throw FormatError("rANS: bad frequency table code");
    return (1u << len) | get(len);
  }

 private:
  Reader& r_;
  uint64_t acc_ = 0;
  int nb_ = 0;
};

inline uint32_t zigzag(int32_t d) { return (uint32_t(d) << 1) ^ uint32_t(d >> 31); }
inline int32_t unzigzag(uint32_t z) { return int32_t(z >> 1) ^ -int32_t(z & 1); }

inline uint32_t eg_bits(uint32_t v, int k) {
  return 2 * uint32_t(31 - __builtin_clz((v >> k) + 1)) + 1 + uint32_t(k);
}
inline int eg_k(uint32_t bitlen, int c) { return bitlen > uint32_t(c) ? int(bitlen) - c : 0; }

// The Exp-Golomb parameter of a difference is the bit length of the previous value minus
// the list's c (3 bits), so that differences scale with the frequencies around them.
void put_freqs(BitWriter& w, const uint32_t* v, int n) {
  uint32_t z[256], bl[256];
  for (int j = 0; j + 1 < n; ++j) {
    const uint32_t prev = j ? v[j - 1] : 0;
    z[j] = zigzag(int32_t(v[j]) - int32_t(prev));
    bl[j] = 32 - uint32_t(__builtin_clz(prev | 1));
  }
  int best_c = 0;
  uint64_t best = UINT64_MAX;
  for (int c = 0; c < 8; ++c) {
    uint64_t bits = 0;
    for (int j = 0; j + 1 < n; ++j) bits += eg_bits(z[j], eg_k(bl[j], c));
    if (bits < best) best = bits, best_c = c;
  }
  w.put(uint32_t(best_c), 3);
  for (int j = 0; j + 1 < n; ++j) {
    const int k = eg_k(bl[j], best_c);
    w.gamma((z[j] >> k) + 1);
    w.put(z[j], k);
  }
}

void get_freqs(BitReader& br, uint32_t total, int n, uint32_t* v) {
  const int c = int(br.get(3));
  int64_t prev = 0, sum = 0;
  for (int j = 0; j + 1 < n; ++j) {
    const int k = eg_k(32 - uint32_t(__builtin_clz(uint32_t(prev) | 1)), c);
    prev += unzigzag(((br.gamma() - 1) << k) | br.get(k));
    sum += prev;
    if (prev < 1 || sum >= total) throw FormatError("rANS: bad frequency table");
    v[j] = uint32_t(prev);
  }
  v[n - 1] = uint32_t(total - sum);
}

void put_table(BitWriter& w, const uint32_t f[256], int g) {
  w.put(uint32_t(g), 3);
  uint32_t v[256];
  int n = 0;
  if (g) {
    for (int s = 0; s < 256; s += 1 << g) v[n++] = f[s];
  } else {
    for (int s = 0; s < 256; ++s) n += f[s] != 0;
    w.gamma(uint32_t(n - 1));
    n = 0;
    for (int s = 0; s < 256;) {
      int a = s;
      while (a < 256 && !f[a]) ++a;
      if (a == 256) break;
      int e = a;
      while (e < 256 && f[e]) v[n++] = f[e++];
      w.gamma(uint32_t(a - s + 1));
      w.gamma(uint32_t(e - a));
      s = e;
    }
  }
  put_freqs(w, v, n);
}

void get_table(BitReader& br, uint32_t M, uint32_t f[256]) {
  std::fill(f, f + 256, 0u);
  const int g = int(br.get(3));
  uint32_t v[256];
  if (g) {
    if (g > kMaxGroup) throw FormatError("rANS: bad table grouping");
    get_freqs(br, M >> g, 256 >> g, v);
    for (int s = 0; s < 256; ++s) f[s] = v[s >> g];
    return;
  }
  const uint32_t nsym = br.gamma() + 1;
  if (nsym > 256) throw FormatError("rANS: bad symbol count");
  int syms[256];
  for (uint32_t s = 0, j = 0; j < nsym;) {
    s += br.gamma() - 1;
    const uint32_t run = br.gamma();
    if (s + run > 256 || j + run > nsym) throw FormatError("rANS: bad symbol list");
    for (uint32_t e = s + run; s < e; ++s) syms[j++] = int(s);
  }
  get_freqs(br, M, int(nsym), v);
  for (uint32_t j = 0; j < nsym; ++j) f[syms[j]] = v[j];
}

}  // namespace

size_t table_bits(const uint32_t f[256], int g) {
  BitWriter w(nullptr);
  put_table(w, f, g);
  return w.bits();
}

void put_model(const Model& m, Bytes& out) {
  const Context& c = m.ctx;
  for (uint8_t b : {uint8_t(m.scale), uint8_t(c.src), c.n, c.mask, c.base, c.shift})
    put_u8(out, b);
  BitWriter w(&out);
  for (int k = 0; k < c.n; ++k) put_table(w, m.freq[k], m.group[k]);
  w.flush();
}

void get_model(Reader& r, Model& m) {
  m.scale = r.u8();
  Context& c = m.ctx;
  const uint8_t src = r.u8();
  c.n = r.u8();
  c.mask = r.u8();
  c.base = r.u8();
  c.shift = r.u8();
  c.src = Source(src);
  if (m.scale < kMinScale || m.scale > kMaxScale ||
      (m.scale > kPackedScale && (c.src != Source::kNone || c.n != 1)))
    throw FormatError("rANS: bad scale");
  const bool pos = c.src == Source::kPos;
  if (src > uint8_t(Source::kPos) || c.n < 1 || c.n > kMaxCtx ||
      (c.src == Source::kNone && c.n != 1) ||
      (pos ? c.shift < 5 || c.shift > 40 : c.shift != 0))  // 2^5 = kLanes
    throw FormatError("rANS: bad context");
  BitReader br(r);
  for (int k = 0; k < c.n; ++k) get_table(br, 1u << m.scale, m.freq[k]);
}

}  // namespace wz::rans
