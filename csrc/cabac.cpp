#include "cabac.hpp"

#include <cmath>
#include <stdexcept>

namespace wz::cabac {

namespace {

// Two-rate adaptive probability of a 1: two 23-bit estimates, a fast and a slow one, averaged
// to 15 bits (in [1, 32767]). Both rates start fast (shift = bit length of the count: about a
// running mean) and settle at kFastShift / kSlowShift. The plan's VVC-style 4/7 lost 0.5 % on
// weights (stationary within a segment) against these, measured by bench/lossy_core.py.
constexpr int kFastShift = 7, kSlowShift = 10;
constexpr uint32_t kOne = 1u << 23;
struct Ctx {
  uint32_t fast = kOne / 2, slow = kOne / 2;
  uint16_t n = 1;
  uint8_t sf = 1, ss = 1;
  uint32_t p() const {
    const uint32_t v = (fast + slow) >> 9;
    return v < 1 ? 1 : v > 32767 ? 32767 : v;
  }
  void update(int y) {  // branch-free in y (the bins are close to random)
    const uint32_t m = 0u - uint32_t(y);  // all ones for a 1
    fast += (((kOne - fast) >> sf) & m) - ((fast >> sf) & ~m);
    slow += (((kOne - slow) >> ss) & m) - ((slow >> ss) & ~m);
    if (n < 1024) {
      ++n;
      const int w = 32 - __builtin_clz(n);
      sf = uint8_t(w < kFastShift ? w : kFastShift);
      ss = uint8_t(w < kSlowShift ? w : kSlowShift);
    }
  }
};

constexpr int kEgPositions = 32;
constexpr int kTopBits = 3;  // context-coded suffix bits
struct Model {
  Ctx sig[9], sign[3], gt[kMaxUnary * 3], eg[kEgPositions * 3], suf[kEgPositions << kTopBits];
};

constexpr uint32_t kTop = 1u << 24;

class Encoder {
 public:
  explicit Encoder(Bytes& out) : out_(out) {}
  static constexpr bool kEnc = true;
  int bin(Ctx& c, int y) {
    const uint32_t bound = (range_ >> 15) * c.p();
    const uint32_t m = uint32_t(y) - 1u;  // all ones for a 0
    low_ += bound & m;
    range_ = y ? bound : range_ - bound;
    c.update(y);
    while (range_ < kTop) {
      range_ <<= 8;
      shift_low();
    }
    return y;
  }
  uint32_t bypass(int nb, uint32_t v) {  // v < 2^nb, nb <= 31
    acc_ |= uint64_t(v) << fill_;
    fill_ += nb;
    while (fill_ >= 8) {
      raw_.push_back(uint8_t(acc_));
      acc_ >>= 8;
      fill_ -= 8;
    }
    return v;
  }
  // Writes varint arith_len, the arithmetic bytes and the bypass bytes.
  void finish() {
    for (int i = 0; i < 5; ++i) shift_low();
    if (fill_) raw_.push_back(uint8_t(acc_));
    put_varint(out_, arith_.size());
    out_.insert(out_.end(), arith_.begin(), arith_.end());
    out_.insert(out_.end(), raw_.begin(), raw_.end());
  }

 private:
  void shift_low() {
    if (uint32_t(low_) < 0xff000000u || (low_ >> 32) != 0) {
      const uint8_t carry = uint8_t(low_ >> 32);
      uint8_t b = cache_;
      do {
        arith_.push_back(uint8_t(b + carry));
        b = 0xff;
      } while (--pending_);
      cache_ = uint8_t(low_ >> 24);
    }
    ++pending_;
    low_ = (low_ & 0x00ffffffu) << 8;
  }
  Bytes& out_;
  Bytes arith_, raw_;
  uint64_t low_ = 0, acc_ = 0;
  uint32_t range_ = 0xffffffffu;
  uint8_t cache_ = 0;
  uint64_t pending_ = 1;
  int fill_ = 0;
};

class Decoder {
 public:
  Decoder(const uint8_t* a, size_t alen, const uint8_t* r, size_t rlen)
      : a_(a), alen_(alen), r_(r), rlen_(rlen) {
    if (alen < 5 || a[0] != 0) throw FormatError("cabac: bad arithmetic stream");
    for (int i = 1; i < 5; ++i) code_ = (code_ << 8) | a[i];
    apos_ = 5;
  }
  static constexpr bool kEnc = false;
  int bin(Ctx& c, int) {
    const uint32_t bound = (range_ >> 15) * c.p();
    const int y = code_ < bound;
    const uint32_t m = uint32_t(y) - 1u;  // all ones for a 0
    code_ -= bound & m;
    range_ = y ? bound : range_ - bound;
    c.update(y);
    while (range_ < kTop) {
      range_ <<= 8;
      code_ = (code_ << 8) | (apos_ < alen_ ? a_[apos_] : 0u);
      ++apos_;
    }
    return y;
  }
  uint32_t bypass(int nb, uint32_t) {
    while (fill_ < nb) {
      if (rpos_ >= rlen_) throw FormatError("cabac: bypass bits truncated");
      acc_ |= uint64_t(r_[rpos_++]) << fill_;
      fill_ += 8;
    }
    const uint32_t v = uint32_t(acc_ & ((1ULL << nb) - 1));
    acc_ >>= nb;
    fill_ -= nb;
    return v;
  }
  void finish() const {
    if (apos_ != alen_ || rpos_ != rlen_ || acc_ != 0)
      throw FormatError("cabac: stream length mismatch (corrupt stream)");
  }

 private:
  const uint8_t* a_;
  size_t alen_, apos_ = 0;
  const uint8_t* r_;
  size_t rlen_, rpos_ = 0;
  uint64_t acc_ = 0;
  uint32_t range_ = 0xffffffffu, code_ = 0;
  int fill_ = 0;
};

inline uint32_t uabs(int32_t v) { return v < 0 ? 0u - uint32_t(v) : uint32_t(v); }
inline int bitlen(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }
// Number of prefix 1s of the Exp-Golomb code of order g of r.
inline int eg_prefix(uint32_t r, int g) { return bitlen((uint64_t(r) >> g) + 1) - 1; }
inline int cmp3(int64_t a, int64_t b) { return a < b ? 0 : a == b ? 1 : 2; }

// The binarisation, shared by encoder (values read from q) and decoder (values written).
template <class C>
void run(C& c, int32_t* q, size_t n, const uint8_t* cls, uint32_t row, const Params& p) {
  Model m;
  const uint32_t k = p.k_unary;
  const int g0 = p.eg_order;
  for (size_t i = 0; i < n; ++i) {
    const int32_t left = i ? q[i - 1] : 0;
    const int32_t above = (row && i >= row) ? q[i - row] : 0;
    const uint32_t v = C::kEnc ? uabs(q[i]) : 0;
    const int sctx = int(left != 0) + int(above != 0) + 3 * (cls ? cls[i] : 0);
    if (!c.bin(m.sig[sctx], v != 0)) {
      if constexpr (!C::kEnc) q[i] = 0;
      continue;
    }
    const int neg = c.bin(m.sign[left == 0 ? 0 : left > 0 ? 1 : 2], C::kEnc && q[i] < 0);
    const uint32_t nb = row ? (uabs(left) + uabs(above) + 1) >> 1 : uabs(left);
    uint64_t mag = 1;
    while (mag <= k && c.bin(m.gt[(mag - 1) * 3 + cmp3(nb, mag)], v > mag)) ++mag;
    if (mag > k) {  // remainder |q| - k - 1, Exp-Golomb of order g0
      const int np = nb > k ? eg_prefix(nb - k - 1, g0) : -1;
      uint32_t r = C::kEnc ? v - k - 1 : 0;
      uint64_t base = 0;
      int g = g0, pos = 0;
      for (;;) {
        Ctx& ctx = m.eg[(pos < kEgPositions ? pos : kEgPositions - 1) * 3 + cmp3(np, pos)];
        if (!c.bin(ctx, C::kEnc && r >= (1u << g))) break;
        if constexpr (C::kEnc) r -= 1u << g;
        base += 1ULL << g;
        ++g;
        ++pos;
        if (g > 30) throw FormatError("cabac: Exp-Golomb prefix too long");
      }
      // The suffix's top kTopBits bits are context-coded (a binary tree per prefix length):
      // the distribution falls off inside a bucket. The rest is bypass.
      Ctx* tree = &m.suf[(pos < kEgPositions ? pos : kEgPositions - 1) << kTopBits];
      int rest = g;
      uint64_t top = 1;
      for (int b = 0; b < kTopBits && rest > 0; ++b) {
        --rest;
        top = top << 1 | uint64_t(c.bin(tree[top], C::kEnc && ((r >> rest) & 1)));
      }
      top ^= 1ULL << (g - rest);  // drop the tree's leading 1
      mag = k + 1 + base + (top << rest) + c.bypass(rest, C::kEnc ? r & ((1u << rest) - 1) : 0);
      if (mag > uint64_t(kMaxAbs)) throw FormatError("cabac: value out of range");
    }
    if constexpr (!C::kEnc) q[i] = neg ? -int32_t(mag) : int32_t(mag);
  }
}

// Order-0 estimate of the bits to code the |q| histogram with (k, g), plus lambda per
// context-coded bin.
struct Histogram {
  static constexpr uint32_t kExact = 1024;
  std::vector<double> ge;  // ge[v]: number of |q| >= v, v <= kExact
  double tail[33] = {};    // |q| >= kExact by bit length
  double count_ge(uint64_t v) const {
    if (v <= kExact) return ge[v];
    double s = 0;
    for (int b = 11; b <= 32; ++b) {
      const double lo = double(1ULL << (b - 1)), hi = double(1ULL << b);
      if (double(v) <= lo) s += tail[b];
      else if (double(v) < hi) s += tail[b] * (hi - double(v)) / (hi - lo);
    }
    return s;
  }
};

inline double entropy(double n, double ones) {
  if (n <= 0 || ones <= 0 || ones >= n) return 0;
  const double z = n - ones;
  return -(ones * std::log2(ones / n) + z * std::log2(z / n));
}

double cost(const Histogram& h, uint32_t k, int g0) {
  constexpr double kLambda = 0.01;
  double bits = 0, bins = 0;
  for (uint32_t j = 1; j <= k; ++j) {
    const double nj = h.count_ge(j);
    bits += entropy(nj, h.count_ge(j + 1));
    bins += nj;
  }
  const uint64_t b = k + 1;
  uint64_t t = 0;
  for (int pos = 0, g = g0; pos < kEgPositions && g <= 31; ++pos, ++g) {
    const double here = h.count_ge(b + t);
    if (here <= 0) break;
    const double more = h.count_ge(b + t + (1ULL << g));
    // The bucket [lo, lo + 2^g): its top (up to) kTopBits bits are modelled, the rest raw.
    const int top = g < kTopBits ? g : kTopBits;
    const uint64_t lo = b + t, part = 1ULL << (g - top);
    double prev = here, h4 = 0;
    for (int j = 1; j <= (1 << top); ++j) {
      const double ge = j == (1 << top) ? more : h.count_ge(lo + uint64_t(j) * part);
      const double c = prev - ge;
      if (c > 0) h4 -= c * std::log2(c / (here - more));
      prev = ge;
    }
    bits += entropy(here, more) + h4 + double(g - top) * (here - more);
    bins += double(top) * (here - more);
    bins += here;
    t += 1ULL << g;
  }
  return bits + kLambda * bins;
}

}  // namespace

Params choose(const int32_t* q, size_t n) {
  Histogram h;
  std::vector<double> cnt(Histogram::kExact + 1, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t a = uabs(q[i]);
    if (a < Histogram::kExact) cnt[a] += 1;
    else h.tail[bitlen(a)] += 1;
  }
  double tail = 0;
  for (int b = 0; b <= 32; ++b) tail += h.tail[b];
  h.ge.assign(Histogram::kExact + 1, 0.0);
  h.ge[Histogram::kExact] = tail;
  for (size_t v = Histogram::kExact; v-- > 0;) h.ge[v] = h.ge[v + 1] + cnt[v];
  Params best;
  double best_cost = -1;
  for (int k = 0; k <= kMaxUnary; ++k) {
    for (int g = 0; g <= kMaxEgOrder; ++g) {
      const double c = cost(h, uint32_t(k), g);
      if (best_cost < 0 || c < best_cost * (1 - 1e-9)) {
        best_cost = c;
        best.k_unary = uint8_t(k);
        best.eg_order = uint8_t(g);
      }
    }
  }
  return best;
}

void encode(const int32_t* q, size_t n, const uint8_t* cls, uint32_t row, const Params& p,
            Bytes& out) {
  if (p.k_unary > kMaxUnary || p.eg_order > kMaxEgOrder)
    throw std::invalid_argument("cabac: bad parameters");
  for (size_t i = 0; i < n; ++i)
    if (q[i] < -kMaxAbs || q[i] > kMaxAbs || (cls && cls[i] > 2))
      throw std::invalid_argument("cabac: |q| above kMaxAbs or a reference class above 2");
  put_u8(out, p.k_unary);
  put_u8(out, p.eg_order);
  Encoder enc(out);
  run(enc, const_cast<int32_t*>(q), n, cls, row, p);  // the encoder never writes q
  enc.finish();
}

void encode(const int32_t* q, size_t n, const uint8_t* cls, uint32_t row, Bytes& out) {
  encode(q, n, cls, row, choose(q, n), out);
}

void decode(const uint8_t* in, size_t len, const uint8_t* cls, uint32_t row, int32_t* q,
            size_t n) {
  Reader rd(in, len);
  Params p;
  p.k_unary = rd.u8();
  p.eg_order = rd.u8();
  if (p.k_unary > kMaxUnary || p.eg_order > kMaxEgOrder)
    throw FormatError("cabac: bad parameters");
  const uint64_t alen = rd.varint();
  if (alen > rd.left()) throw FormatError("cabac: truncated stream");
  const uint8_t* a = rd.take(size_t(alen));
  Decoder dec(a, size_t(alen), rd.pos(), rd.left());
  for (size_t i = 0; cls && i < n; ++i)
    if (cls[i] > 2) throw std::invalid_argument("cabac: reference class above 2");
  run(dec, q, n, cls, row, p);
  dec.finish();
}

}  // namespace wz::cabac
