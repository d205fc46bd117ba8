// Indexed-CDF rANS coder; the format is described in rans_indexed.hpp.
#include "rans_indexed.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace wz::rans_indexed {
namespace {

constexpr uint64_t kL = uint64_t(1) << 31;  // lower bound of a normalized state
constexpr uint32_t kTotal = uint32_t(1) << kPrecision;
constexpr uint32_t kDigitMask = (1u << kBypassBits) - 1;
constexpr int kBucketBits = 8;  // decoder: slot >> kBucketBits picks a range of symbols
constexpr int kBuckets = 1 << (kPrecision - kBucketBits);

[[noreturn]] void bad_arg(const std::string& msg) { throw std::invalid_argument(msg); }

void check_indexes(const int32_t* indexes, size_t n, size_t n_cdfs) {
  for (size_t i = 0; i < n; ++i) {
    if (indexes[i] < 0 || uint64_t(indexes[i]) >= n_cdfs)
      bad_arg("indexes[" + std::to_string(i) + "] = " + std::to_string(indexes[i]) +
              " is out of range for " + std::to_string(n_cdfs) + " CDF tables");
  }
}

// One symbol, as the encoder sees it.
struct Item {
  const int32_t* cdf;
  uint32_t sym;  // coded symbol: the value, or the escape symbol
  bool escape;
  int digits;    // escape only: number of bypass digits of raw
  uint64_t raw;  // escape only
};

inline Item classify(int32_t symbol, int32_t index, const Tables& t) {
  Item it;
  it.cdf = t.cdfs + size_t(index) * t.max_len;
  const int64_t max_v = int64_t(t.lengths[index]) - 2;  // the escape symbol
  const int64_t v = int64_t(symbol) - int64_t(t.offsets[index]);  // |v| < 2^32
  it.escape = v < 0 || v >= max_v;
  it.digits = 0;
  it.raw = 0;
  if (!it.escape) {
    it.sym = uint32_t(v);
    return it;
  }
  it.sym = uint32_t(max_v);
  it.raw = v < 0 ? uint64_t(-2 * v - 1) : uint64_t(2 * (v - max_v));  // < 2^33
  while (it.digits < kMaxBypassDigits && (it.raw >> (kBypassBits * it.digits)) != 0) ++it.digits;
  return it;
}

// ryg's Rans64EncPut: at most one 32-bit word out per call (x < 2^63 before, x < 2^31 after).
inline void put(uint64_t& x, uint32_t*& ptr, uint32_t start, uint32_t freq, int bits) {
  const uint64_t x_max = ((kL >> bits) << 32) * freq;
  if (x >= x_max) {
    *--ptr = uint32_t(x);
    x >>= 32;
  }
  x = ((x / freq) << bits) + (x % freq) + start;
}

template <int Lanes>
Bytes encode_impl(const int32_t* symbols, const int32_t* indexes, size_t n, const Tables& t) {
  // Pass 1: count the coding operations, so that operation j (in decoding order) can be
  // given state j % Lanes while the encoder walks backwards.
  size_t ops = 0;
  for (size_t i = 0; i < n; ++i) {
    const Item it = classify(symbols[i], indexes[i], t);
    ops += it.escape ? size_t(2 + it.digits) : size_t(1);
  }
  std::vector<uint32_t> words(ops);
  uint32_t* const end = words.data() + ops;
  uint32_t* ptr = end;
  uint64_t x[Lanes];
  for (int l = 0; l < Lanes; ++l) x[l] = kL;
  size_t j = ops;
  for (size_t i = n; i-- > 0;) {
    const Item it = classify(symbols[i], indexes[i], t);
    if (it.escape) {
      for (int d = it.digits - 1; d >= 0; --d) {
        const uint32_t digit = uint32_t(it.raw >> (kBypassBits * d)) & kDigitMask;
        put(x[--j % Lanes], ptr, digit, 1, kBypassBits);
      }
      put(x[--j % Lanes], ptr, uint32_t(it.digits), 1, kBypassBits);
    }
    const uint32_t lo = uint32_t(it.cdf[it.sym]), hi = uint32_t(it.cdf[it.sym + 1]);
    put(x[--j % Lanes], ptr, lo, hi - lo, kPrecision);
  }
  const size_t nwords = size_t(end - ptr);
  Bytes out;
  out.reserve(8 * Lanes + 4 * nwords);
  for (int l = 0; l < Lanes; ++l) {
    put_u32(out, uint32_t(x[l]));
    put_u32(out, uint32_t(x[l] >> 32));
  }
  const size_t head = out.size();
  out.resize(head + 4 * nwords);
  for (size_t w = 0; w < nwords; ++w) store_u32(out.data() + head + 4 * w, ptr[w]);
  return out;
}

// Decoder-side lookup: for table k and bucket b, first[k * (kBuckets + 1) + b] is the symbol
// holding slot b << kBucketBits; a slot in bucket b decodes to a symbol in [first[b], first[b+1]].
std::vector<uint32_t> build_buckets(const Tables& t) {
  std::vector<uint32_t> first(t.n_cdfs * (kBuckets + 1));
  for (size_t k = 0; k < t.n_cdfs; ++k) {
    const int32_t* cdf = t.cdfs + k * t.max_len;
    const uint32_t last = uint32_t(t.lengths[k] - 2);
    uint32_t* f = first.data() + k * (kBuckets + 1);
    uint32_t s = 0;
    for (int b = 0; b < kBuckets; ++b) {
      const int32_t slot = b << kBucketBits;
      while (cdf[s + 1] <= slot) ++s;  // stops by cdf[last + 1] = kTotal
      f[b] = s;
    }
    f[kBuckets] = last;
  }
  return first;
}

class WordReader {
 public:
  WordReader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}
  // Renormalize x after a decoding step (at most one word is ever needed).
  void renorm(uint64_t& x) {
    if (x < kL) {
      if (p_ == end_) throw FormatError("indexed rANS stream is truncated");
      x = (x << 32) | load_u32(p_);
      p_ += 4;
    }
  }
  bool done() const { return p_ == end_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

inline uint32_t get_bits(uint64_t& x, WordReader& r) {
  const uint32_t v = uint32_t(x) & kDigitMask;
  x >>= kBypassBits;
  r.renorm(x);
  return v;
}

inline int32_t to_symbol(int64_t v, int32_t offset) {
  const int64_t s = v + int64_t(offset);
  if (s < INT32_MIN || s > INT32_MAX) throw FormatError("indexed rANS: decoded value overflows int32");
  return int32_t(s);
}

template <int Lanes>
void decode_impl(const uint8_t* data, size_t size, const int32_t* indexes, size_t n,
                 const Tables& t, int32_t* out) {
  if (size < size_t(8 * Lanes) || (size - 8 * Lanes) % 4 != 0)
    throw FormatError("indexed rANS stream has a bad size (" + std::to_string(size) + " bytes)");
  uint64_t x[Lanes];
  for (int l = 0; l < Lanes; ++l) {
    x[l] = load_u64(data + 8 * l);
    if (x[l] < kL || (x[l] >> 32) >= kL)
      throw FormatError("indexed rANS stream has a bad initial state");
  }
  WordReader r(data + 8 * Lanes, data + size);
  // The bucket index costs ~256 + len_k steps per table: only worth it for longer streams.
  const bool buckets = n >= 16 * t.n_cdfs;
  const std::vector<uint32_t> first = buckets ? build_buckets(t) : std::vector<uint32_t>();
  size_t j = 0;
  for (size_t i = 0; i < n; ++i) {
    const size_t k = size_t(indexes[i]);
    const int32_t* cdf = t.cdfs + k * t.max_len;
    const uint32_t max_v = uint32_t(t.lengths[k] - 2);
    uint64_t& xs = x[j++ % Lanes];
    const uint32_t slot = uint32_t(xs) & (kTotal - 1);
    uint32_t lo = 0, hi = max_v;
    if (buckets) {
      const uint32_t* f = first.data() + k * (kBuckets + 1) + (slot >> kBucketBits);
      lo = f[0];
      hi = f[1];
    }
    while (lo < hi) {  // the last symbol in [lo, hi] whose cdf <= slot
      const uint32_t mid = (lo + hi + 1) >> 1;
      if (uint32_t(cdf[mid]) <= slot) lo = mid; else hi = mid - 1;
    }
    const uint32_t start = uint32_t(cdf[lo]), freq = uint32_t(cdf[lo + 1]) - start;
    xs = freq * (xs >> kPrecision) + slot - start;
    r.renorm(xs);
    if (lo < max_v) {
      out[i] = to_symbol(int64_t(lo), t.offsets[k]);
      continue;
    }
    const uint32_t digits = get_bits(x[j++ % Lanes], r);
    if (digits > uint32_t(kMaxBypassDigits))
      throw FormatError("indexed rANS: bad escape length");
    uint64_t raw = 0;
    uint32_t digit = 0;
    for (uint32_t d = 0; d < digits; ++d) {
      digit = get_bits(x[j++ % Lanes], r);
      raw |= uint64_t(digit) << (kBypassBits * d);
    }
    if (digits > 0 && digit == 0) throw FormatError("indexed rANS: non-canonical escape value");
    const int64_t v = (raw & 1) ? -int64_t((raw + 1) >> 1) : int64_t(raw >> 1) + int64_t(max_v);
    out[i] = to_symbol(v, t.offsets[k]);
  }
  if (!r.done()) throw FormatError("indexed rANS stream has trailing data");
  for (int l = 0; l < Lanes; ++l)
    if (x[l] != kL) throw FormatError("indexed rANS stream does not end in the initial state");
}

}  // namespace

void validate(const Tables& t) {
  if (t.n_cdfs > 0 && (!t.cdfs || !t.lengths || !t.offsets)) bad_arg("missing CDF tables");
  for (size_t k = 0; k < t.n_cdfs; ++k) {
    const std::string row = "CDF table " + std::to_string(k);
    const int32_t len = t.lengths[k];
    if (len < 3 || uint64_t(len) > t.max_len)
      bad_arg(row + ": length " + std::to_string(len) + " is not in [3, " +
              std::to_string(t.max_len) + "]");
    const int32_t* cdf = t.cdfs + k * t.max_len;
    if (cdf[0] != 0) bad_arg(row + " does not start at 0");
    if (cdf[len - 1] != int32_t(kTotal)) bad_arg(row + " does not end at 1 << 16");
    for (int32_t i = 0; i + 1 < len; ++i)
      if (cdf[i + 1] <= cdf[i])
        bad_arg(row + " is not strictly increasing at entry " + std::to_string(i + 1));
  }
}

Bytes encode(const int32_t* symbols, const int32_t* indexes, size_t n, const Tables& t) {
  validate(t);
  check_indexes(indexes, n, t.n_cdfs);
  return lanes_for(n) == 1 ? encode_impl<1>(symbols, indexes, n, t)
                           : encode_impl<kLanes>(symbols, indexes, n, t);
}

void decode(const uint8_t* data, size_t size, const int32_t* indexes, size_t n,
            const Tables& t, int32_t* out) {
  validate(t);
  check_indexes(indexes, n, t.n_cdfs);
  if (lanes_for(n) == 1)
    decode_impl<1>(data, size, indexes, n, t, out);
  else
    decode_impl<kLanes>(data, size, indexes, n, t, out);
}

}  // namespace wz::rans_indexed
