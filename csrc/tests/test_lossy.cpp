// Unit tests of the lossy core (quant, cabac, lossy payload), no framework: every CHECK is
// counted, failures are printed, and the exit status is 0 only if all passed.
//   cmake -S . -B build -DWZ_BUILD_TESTS=ON && cmake --build build -j2 && ctest --test-dir build
//
// Covers the RNE casts (against exhaustive neighbours), cabac round trips (many
// distributions, every parameter pair, rows, reference classes, extremes), the bound and the
// exceptions of every dtype and domain with and without a reference, determinism across
// thread counts, and truncated / bit-flipped / random payloads (FormatError, never a crash).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cabac.hpp"
#include "lossy.hpp"
#include "quant.hpp"
#include "check.hpp"

using namespace wz;
using namespace wz_test;

namespace {

// ------------------------------------------------------------------------------ casts

// The cast must pick the nearer of the two neighbours (ties: even mantissa).
void check_cast(uint16_t (*cast)(double), double (*back)(uint16_t), const char* name) {
  Rng rng(7);
  int bad = 0;
  for (int t = 0; t < 200000; ++t) {
    const uint16_t h = uint16_t(rng.next() & 0x7fff);
    const double v = back(h);
    if (!std::isfinite(v)) continue;
    const double nxt = back(uint16_t(h + 1));
    if (!std::isfinite(nxt)) continue;
    const double f = rng.uniform();
    const double x = v + (nxt - v) * (t % 7 == 0 ? 0.5 : f);
    const uint16_t got = cast(x);
    const double mid = v + (nxt - v) * 0.5;
    uint16_t want = x < mid ? h : x > mid ? uint16_t(h + 1) : ((h & 1) ? uint16_t(h + 1) : h);
    if (got != want) ++bad;
    if (cast(-x) != uint16_t(want | 0x8000)) ++bad;
  }
  CHECK_MSG(bad == 0, name);
  CHECK(cast(1e300) == (cast == quant::double_to_f16 ? 0x7c00 : 0x7f80));
  CHECK(cast(-0.0) == 0x8000);
  CHECK(cast(1e-300) == 0);
}

// -------------------------------------------------------------------------------- cabac

void cabac_roundtrip(const std::vector<int32_t>& q, const uint8_t* cls, uint32_t row,
                     const std::string& what) {
  Bytes enc;
  cabac::encode(q.data(), q.size(), cls, row, enc);
  std::vector<int32_t> dec(q.size(), 12345);
  try {
    cabac::decode(enc.data(), enc.size(), cls, row, dec.data(), dec.size());
    CHECK_MSG(dec == q, what);
  } catch (const std::exception& e) {
    CHECK_MSG(false, what + ": " + e.what());
  }
}

void test_cabac() {
  Rng rng(1);
  for (double scale : {0.0, 0.1, 0.6, 3.0, 50.0, 2000.0, 1e6}) {
    std::vector<int32_t> q(5000);
    for (auto& v : q) v = int32_t(std::lround(rng.normal() * scale));
    std::vector<uint8_t> cls(q.size());
    for (auto& c : cls) c = uint8_t(rng.next() % 3);
    for (uint32_t row : {0u, 1u, 17u, 4999u, 100000u}) {
      cabac_roundtrip(q, nullptr, row, "scale " + std::to_string(scale));
      cabac_roundtrip(q, cls.data(), row, "cls, scale " + std::to_string(scale));
    }
    for (int k = 0; k <= cabac::kMaxUnary; ++k)
      for (int g = 0; g <= cabac::kMaxEgOrder; g += 3) {
        Bytes enc;
        cabac::encode(q.data(), q.size(), nullptr, 7, cabac::Params{uint8_t(k), uint8_t(g)}, enc);
        std::vector<int32_t> dec(q.size());
        cabac::decode(enc.data(), enc.size(), nullptr, 7, dec.data(), dec.size());
        CHECK(dec == q);
      }
  }
  cabac_roundtrip({}, nullptr, 0, "empty");
  cabac_roundtrip({cabac::kMaxAbs, -cabac::kMaxAbs, 0, 1, -1, cabac::kMaxAbs - 1}, nullptr, 2, "extremes");
  std::vector<int32_t> big = {cabac::kMaxAbs + 1};
  Bytes enc;
  CHECK(throws<std::invalid_argument>([&] { cabac::encode(big.data(), 1, nullptr, 0, enc); }));
  // Random garbage: FormatError or some values, never a crash.
  for (int t = 0; t < 3000; ++t) {
    Bytes junk(rng.next() % 64);
    for (auto& b : junk) b = uint8_t(rng.next());
    if (junk.size() > 2) junk[0] = uint8_t(junk[0] % 9), junk[1] = uint8_t(junk[1] % 21);
    std::vector<int32_t> dec(rng.next() % 300);
    try {
      cabac::decode(junk.data(), junk.size(), nullptr, 3, dec.data(), dec.size());
    } catch (const FormatError&) {
    }
  }
}

// -------------------------------------------------------------------------- quant + lossy

std::vector<uint8_t> make_data(quant::DType dt, size_t n, Rng& rng, int kind) {
  const size_t isz = size_t(quant::itemsize(dt));
  std::vector<uint8_t> out(n * isz);
  for (size_t i = 0; i < n; ++i) {
    double v = rng.normal() * 0.02;
    if (kind == 1) v = v * v * v * 1e4;  // heavy tail
    if (kind == 2) v = 0.5;              // constant
    if (kind == 3 && i % 37 == 0) v = (i % 2 ? 1 : -1) * std::numeric_limits<double>::infinity();
    if (kind == 3 && i % 41 == 0) v = std::nan("");
    if (kind == 3 && i % 43 == 0) v = -0.0;
    uint64_t bits = 0;
    if (dt == quant::DType::kF32) {
      float f = float(v);
      std::memcpy(&bits, &f, 4);
    } else if (dt == quant::DType::kF64) {
      std::memcpy(&bits, &v, 8);
    } else if (dt == quant::DType::kF16) {
      bits = quant::double_to_f16(v);
    } else {
      bits = quant::double_to_bf16(v);
    }
    std::memcpy(&out[i * isz], &bits, isz);
  }
  return out;
}

double value(quant::DType dt, const uint8_t* p) {
  switch (dt) {
    case quant::DType::kF32: { float f; std::memcpy(&f, p, 4); return f; }
    case quant::DType::kF64: { double d; std::memcpy(&d, p, 8); return d; }
    case quant::DType::kF16: { uint16_t h; std::memcpy(&h, p, 2); return quant::f16_to_double(h); }
    default: { uint16_t h; std::memcpy(&h, p, 2); return quant::bf16_to_double(h); }
  }
}

void test_lossy_case(quant::DType dt, quant::Domain dom, int kind, bool with_ref, double e) {
  Rng rng(uint64_t(kind) * 131 + uint64_t(dt) * 7 + uint64_t(dom) + (with_ref ? 1000 : 0));
  const size_t n = 3001, isz = size_t(quant::itemsize(dt));
  std::vector<uint8_t> x = make_data(dt, n, rng, kind);
  std::vector<uint8_t> ref = make_data(dt, n, rng, kind);
  if (dom == quant::Domain::kSqrt)  // moments: v >= 0 (negative ones become exceptions)
    for (size_t i = 0; i < n; ++i) x[i * isz + isz - 1] &= uint8_t(i % 97 ? 0x7f : 0xff);
  double ss = 0;
  size_t cnt = 0;
  for (size_t i = 0; i < n; ++i) {
    double v = value(dt, &x[i * isz]);
    if (dom == quant::Domain::kSqrt) v = v >= 0 ? std::sqrt(v) : NAN;
    if (std::isfinite(v)) ss += v * v, ++cnt;
  }
  quant::Spec spec;
  spec.dtype = dt;
  spec.domain = dom;
  spec.bound = e * std::sqrt(ss / double(cnt ? cnt : 1));
  spec.step = 2 * spec.bound * (1 - 0x1p-20);
  const uint8_t* pred = with_ref ? ref.data() : nullptr;
  const std::string what = "dtype " + std::to_string(int(dt)) + " domain " + std::to_string(int(dom)) +
                           " kind " + std::to_string(kind) + (with_ref ? " ref" : "");
  std::vector<uint8_t> recon(n * isz), recon1(n * isz), dec(n * isz);
  Bytes p4 = lossy::encode(x.data(), n, pred, spec, 50, 4, recon.data(), 8);
  Bytes p1 = lossy::encode(x.data(), n, pred, spec, 50, 1, recon1.data(), 8);
  CHECK_MSG(p4 == p1 && recon == recon1, what + ": depends on threads");
  lossy::decode(p1.data(), p1.size(), n, dt, pred, dec.data(), 3);
  CHECK_MSG(dec == recon, what + ": decode != encoder's reconstruction");
  int bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double xv = value(dt, &x[i * isz]), rv = value(dt, &dec[i * isz]);
    const bool exact = std::memcmp(&x[i * isz], &dec[i * isz], isz) == 0;
    if (!std::isfinite(xv) || (dom == quant::Domain::kSqrt && std::signbit(xv) && xv != 0)) {
      bad += !exact;
    } else if (dom == quant::Domain::kSqrt) {
      bad += !(rv >= 0 && std::fabs(std::sqrt(rv) - std::sqrt(xv)) <= spec.bound);
      bad += xv > 0 && rv == 0;  // the moment never reconstructs to 0
    } else {
      bad += !(std::fabs(rv - xv) <= spec.bound);
    }
  }
  CHECK_MSG(bad == 0, what + ": " + std::to_string(bad) + " elements out of bound");
  const lossy::Info inf = lossy::info(p1.data(), p1.size());
  CHECK(inf.n == n && inf.dtype == dt && inf.domain == dom && inf.predicted == with_ref && inf.step == spec.step);
  // Truncated and bit-flipped payloads: FormatError or a (wrong) decode, never a crash.
  for (size_t cut = 0; cut < p1.size(); cut += 1 + p1.size() / 50)
    CHECK(throws<FormatError>([&] { lossy::decode(p1.data(), cut, n, dt, pred, dec.data(), 1); }));
  Rng r2(99);
  for (int t = 0; t < 200; ++t) {
    Bytes bad_p = p1;
    bad_p[r2.next() % bad_p.size()] ^= uint8_t(1u << (r2.next() % 8));
    try {
      lossy::decode(bad_p.data(), bad_p.size(), n, dt, pred, dec.data(), 1);
    } catch (const FormatError&) {
    }
  }
  CHECK(throws<FormatError>([&] { lossy::decode(p1.data(), p1.size(), n + 1, dt, pred, dec.data(), 1); }));
  CHECK(throws<FormatError>([&] { lossy::decode(p1.data(), p1.size(), n, dt, with_ref ? nullptr : ref.data(), dec.data(), 1); }));
}

void test_lossy() {
  for (int d = 0; d < 4; ++d)
    for (int dom = 0; dom < 2; ++dom)
      for (int kind = 0; kind < 4; ++kind)
        for (bool ref : {false, true})
          test_lossy_case(quant::DType(d), quant::Domain(dom), kind, ref, kind == 1 ? 0.003 : 0.01);
  // Zero step: only elements equal to their prediction are not exceptions.
  quant::Spec spec;
  std::vector<float> x = {0.f, 1.f, 0.f, -2.f};
  std::vector<float> r(4), d(4);
  Bytes p = lossy::encode(reinterpret_cast<uint8_t*>(x.data()), 4, nullptr, spec, 0, 1,
                          reinterpret_cast<uint8_t*>(r.data()));
  lossy::decode(p.data(), p.size(), 4, quant::DType::kF32, nullptr, reinterpret_cast<uint8_t*>(d.data()), 1);
  CHECK(d == x && r == x);
  CHECK(lossy::info(p.data(), p.size()).exceptions == 2);
  spec.step = NAN;
  CHECK(throws<std::invalid_argument>([&] {
    lossy::encode(reinterpret_cast<uint8_t*>(x.data()), 4, nullptr, spec, 0, 1, reinterpret_cast<uint8_t*>(r.data()));
  }));
  // Random payloads.
  Rng rng(5);
  std::vector<uint8_t> out(8 * 1000);
  for (int t = 0; t < 3000; ++t) {
    Bytes junk(rng.next() % 80);
    for (auto& b : junk) b = uint8_t(rng.next());
    if (junk.size() > 3) junk[0] = 1, junk[1] &= 0x0f, junk[2] = uint8_t(8 + junk[2] % 4);
    try {
      lossy::decode(junk.data(), junk.size(), rng.next() % 1000, quant::DType(junk.size() > 1 ? junk[1] & 3 : 0),
                    nullptr, out.data(), 1);
    } catch (const FormatError&) {
    }
  }
}

}  // namespace

int main() {
  check_cast(quant::double_to_f16, quant::f16_to_double, "f16");
  check_cast(quant::double_to_bf16, quant::bf16_to_double, "bf16");
  test_cabac();
  test_lossy();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
