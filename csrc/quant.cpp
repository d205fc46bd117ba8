#include "quant.hpp"

// The reconstruction is part of the format: no fused multiply-add (CMake also passes
// -ffp-contract=off for this file).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <cmath>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace wz::quant {

namespace {

inline uint64_t dbits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}
inline double from_bits(uint64_t b) {
  double d;
  std::memcpy(&d, &b, 8);
  return d;
}

// Round |d| to a binary format with ebits exponent and mbits mantissa bits, nearest-even,
// overflow to infinity, gradual underflow. Returns the bits without the sign.
inline uint32_t round_small(uint64_t b, int ebits, int mbits) {
  const int bias = (1 << (ebits - 1)) - 1;
  const uint32_t inf = uint32_t((1u << ebits) - 1) << mbits;
  const int e2 = int((b >> 52) & 0x7ff);
  const uint64_t frac = b & ((1ULL << 52) - 1);
  if (e2 == 0x7ff) return frac ? inf | (1u << (mbits - 1)) : inf;  // NaN (quiet) / Inf
  if (e2 == 0) return 0;                                          // double subnormals: far below
  const int e = e2 - 1023;
  const uint64_t m = frac | (1ULL << 52);
  const int emin = 1 - bias;
  int shift = 52 - mbits;
  if (e < emin) shift += emin - e;  // subnormal in the target
  if (shift > 54) return 0;         // below half the smallest subnormal
  uint64_t r = m >> shift;
  const uint64_t rem = m & ((1ULL << shift) - 1), half = 1ULL << (shift - 1);
  if (rem > half || (rem == half && (r & 1))) ++r;
  if (e < emin) return uint32_t(r);  // r == 2^mbits is the smallest normal
  if (e + bias >= (1 << ebits) - 1) return inf;
  const uint64_t v = (uint64_t(e + bias) << mbits) + r - (1ULL << mbits);  // carries into e
  return v >= inf ? inf : uint32_t(v);
}

// Per-dtype raw access: bits, value as double, store from double (nearest-even).
template <DType D> struct Elem;
template <> struct Elem<DType::kF32> {
  using U = uint32_t;
  static double value(U u) {
    float f;
    std::memcpy(&f, &u, 4);
    return double(f);
  }
  static U cast(double d) {
    const float f = float(d);
    U u;
    std::memcpy(&u, &f, 4);
    return u;
  }
};
template <> struct Elem<DType::kF64> {
  using U = uint64_t;
  static double value(U u) { return from_bits(u); }
  static U cast(double d) { return dbits(d); }
};
template <> struct Elem<DType::kF16> {
  using U = uint16_t;
  static double value(U u) { return f16_to_double(u); }
  static U cast(double d) { return double_to_f16(d); }
};
template <> struct Elem<DType::kBF16> {
  using U = uint16_t;
  static double value(U u) { return bf16_to_double(u); }
  static U cast(double d) { return double_to_bf16(d); }
};

template <class U> inline U load(const uint8_t* p, size_t i) {
  U u;
  std::memcpy(&u, p + i * sizeof(U), sizeof(U));
  return u;
}
template <class U> inline void store(uint8_t* p, size_t i, U u) {
  std::memcpy(p + i * sizeof(U), &u, sizeof(U));
}

// The prediction in the coding domain.
template <Domain M> inline double pred_value(double v) {
  if (M == Domain::kSqrt) return (v > 0 && v <= std::numeric_limits<double>::max()) ? std::sqrt(v) : 0.0;
  return std::isfinite(v) ? v : 0.0;
}

// x̂ for index q and prediction p (the format's reconstruction rule).
template <DType D, Domain M>
inline typename Elem<D>::U recon_one(double p, int32_t q, double step) {
  const double r = p + double(q) * step;
  if (M == Domain::kLinear) return Elem<D>::cast(r);
  double s = 0.0;
  if (r > 0) s = r;
  else if (r + step > 0) s = (r + step) * 0.5;
  return Elem<D>::cast(s * s);
}

template <DType D, Domain M>
void quantise_t(const Spec& sp, const uint8_t* x, const uint8_t* pred, size_t n, int32_t* q,
                uint8_t* recon, std::vector<Exception>& exc, uint64_t base) {
  using E = Elem<D>;
  using U = typename E::U;
  const double step = sp.step, bound = sp.bound;
  const double inv = step > 0 ? 1.0 / step : 0.0;
  const bool divide = step > 0 && !std::isfinite(inv);  // a subnormal step
  const double theta = M == Domain::kSqrt ? 0.5 : sp.theta;
  const double qmax = double(kMaxQ);
  for (size_t i = 0; i < n; ++i) {
    const U xb = load<U>(x, i);
    const double xv = E::value(xb);
    const double p = pred ? pred_value<M>(E::value(load<U>(pred, i))) : 0.0;
    bool ok = std::isfinite(xv) && (M == Domain::kLinear || xv >= 0);
    int32_t qi = 0;
    U rb = xb;
    if (ok) {
      const double s = M == Domain::kSqrt ? std::sqrt(xv) : xv;
      const double t = divide ? (s - p) / step : (s - p) * inv;
      ok = std::fabs(t) < qmax;
      if (ok) {
        const int32_t m = int32_t(std::fabs(t) + theta);
        qi = t < 0 ? -m : m;
        if (M == Domain::kSqrt && s == 0) {  // an exact zero: a level below the bin centre
          const double a = (divide ? p / step : p * inv) + 2;
          ok = a < qmax;
          qi = ok ? -int32_t(a) : 0;
        }
      }
      auto err = [&](U b) {
        const double v = E::value(b);
        if (M == Domain::kLinear) return std::fabs(v - xv);
        return (v == 0 && s > 0) ? HUGE_VAL : std::fabs(std::sqrt(v) - s);  // no 0 for s > 0
      };
      if (ok) {
        rb = recon_one<D, M>(p, qi, step);
        ok = err(rb) <= bound;  // false for NaN
        for (int d = -1; !ok && d <= 1; d += 2) {  // edge cases: a neighbouring level
          const int32_t qj = qi + d;
          if (qj < -kMaxQ || qj > kMaxQ) continue;
          const U b = recon_one<D, M>(p, qj, step);
          if (err(b) <= bound) {
            ok = true;
            qi = qj;
            rb = b;
          }
        }
      }
    }
    if (!ok) {
      exc.push_back({base + i, uint64_t(xb)});
      qi = 0;
      rb = xb;
    }
    q[i] = qi;
    store<U>(recon, i, rb);
  }
}

template <DType D, Domain M>
void reconstruct_t(const Spec& sp, const int32_t* q, const uint8_t* pred, size_t n, uint8_t* out) {
  using E = Elem<D>;
  using U = typename E::U;
  for (size_t i = 0; i < n; ++i) {
    const double p = pred ? pred_value<M>(E::value(load<U>(pred, i))) : 0.0;
    store<U>(out, i, recon_one<D, M>(p, q[i], sp.step));
  }
}

template <DType D, Domain M>
void classes_t(const Spec& sp, const uint8_t* pred, size_t n, uint8_t* cls) {
  using E = Elem<D>;
  using U = typename E::U;
  const double lo = sp.step * 0.5, hi = sp.step * 4;
  for (size_t i = 0; i < n; ++i) {
    const double a = std::fabs(pred_value<M>(E::value(load<U>(pred, i))));
    cls[i] = uint8_t(a < lo ? 0 : a < hi ? 1 : 2);
  }
}

template <DType D> using DT = std::integral_constant<DType, D>;
template <Domain M> using DM = std::integral_constant<Domain, M>;

// Calls f(DT<dtype>, DM<domain>) for the spec's dtype and domain.
template <class F> void dispatch(const Spec& s, F&& f) {
  const bool sq = s.domain == Domain::kSqrt;
  auto go = [&](auto d) { sq ? f(d, DM<Domain::kSqrt>()) : f(d, DM<Domain::kLinear>()); };
  switch (s.dtype) {
    case DType::kF32: return go(DT<DType::kF32>());
    case DType::kF16: return go(DT<DType::kF16>());
    case DType::kBF16: return go(DT<DType::kBF16>());
    case DType::kF64: return go(DT<DType::kF64>());
  }
  throw std::invalid_argument("quant: unknown dtype");
}

}  // namespace

int itemsize(DType d) {
  switch (d) {
    case DType::kF32: return 4;
    case DType::kF16:
    case DType::kBF16: return 2;
    case DType::kF64: return 8;
  }
  throw std::invalid_argument("quant: unknown dtype");
}

void check_spec(const Spec& s) {
  itemsize(s.dtype);
  if (s.domain != Domain::kLinear && s.domain != Domain::kSqrt)
    throw std::invalid_argument("quant: unknown domain");
  if (!(s.step >= 0) || !std::isfinite(s.step)) throw std::invalid_argument("quant: step must be finite and >= 0");
  if (!(s.bound >= 0) || !std::isfinite(s.bound)) throw std::invalid_argument("quant: bound must be finite and >= 0");
  if (!(s.theta >= 0 && s.theta <= 0.5)) throw std::invalid_argument("quant: theta must be in [0, 0.5]");
}

uint16_t double_to_f16(double d) {
  const uint64_t b = dbits(d);
  return uint16_t(((b >> 48) & 0x8000) | round_small(b, 5, 10));
}
uint16_t double_to_bf16(double d) {
  const uint64_t b = dbits(d);
  return uint16_t(((b >> 48) & 0x8000) | round_small(b, 8, 7));
}
double f16_to_double(uint16_t h) {
  const uint64_t sign = uint64_t(h >> 15) << 63;
  const int e = (h >> 10) & 31;
  const uint64_t m = h & 1023;
  if (e == 0) return from_bits(sign | dbits(double(m) * 0x1p-24));
  if (e == 31) return from_bits(sign | (0x7ffULL << 52) | (m << 42));
  return from_bits(sign | (uint64_t(e - 15 + 1023) << 52) | (m << 42));
}
double bf16_to_double(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return double(f);
}

void quantise(const Spec& s, const uint8_t* x, const uint8_t* pred, size_t n, int32_t* q,
              uint8_t* recon, std::vector<Exception>& exc, uint64_t base) {
  check_spec(s);
  dispatch(s, [&](auto d, auto m) {
    quantise_t<decltype(d)::value, decltype(m)::value>(s, x, pred, n, q, recon, exc, base);
  });
}

void reconstruct(const Spec& s, const int32_t* q, const uint8_t* pred, size_t n, uint8_t* out) {
  check_spec(s);
  dispatch(s, [&](auto d, auto m) {
    reconstruct_t<decltype(d)::value, decltype(m)::value>(s, q, pred, n, out);
  });
}

void pred_classes(const Spec& s, const uint8_t* pred, size_t n, uint8_t* cls) {
  check_spec(s);
  dispatch(s, [&](auto d, auto m) { classes_t<decltype(d)::value, decltype(m)::value>(s, pred, n, cls); });
}

}  // namespace wz::quant
