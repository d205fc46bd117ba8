// Unit tests of the fixed-point ARM latent coder (csrc/arm.hpp), no framework: every CHECK is
// counted, failures are printed, and the exit status is 0 only if all passed. It needs
// arm.cpp only:
//   c++ -std=c++17 -O2 -pthread -Icsrc csrc/arm.cpp csrc/tests/test_arm.cpp
// or CMake (-DWZ_BUILD_TESTS=ON, test wz_test_arm). With the argument "bench" it also times
// a Kodak-size pyramid (768x512 down to 12x8, 7 levels) with a 12-input, 2x16-hidden ARM.
//
// Covers the tables (against long double, exact monotonicity of 2^-u), the closed-form CDF
// (frequencies >= 1 summing to 2^16, monotone, close to the real Laplace), net validation,
// round trips (random nets and pyramids, empty and 1x1 grids, all-zero latents, +-A, A = 0
// and 4096, threads), rate against the ideal, params, corrupt and truncated payloads, and a
// golden digest of encoded bytes (the format must not change silently).
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "arm.hpp"
#include "xxhash64.hpp"
#include "check.hpp"

using namespace wz;
using namespace wz::arm;
using namespace wz_test;

namespace {

const std::vector<Offset> kCtx12 = {{-2, -2}, {-2, -1}, {-2, 0}, {-2, 1}, {-2, 2}, {-1, -2},
                                    {-1, -1}, {-1, 0},  {-1, 1}, {-1, 2}, {0, -2}, {0, -1}};

// A net with float weights ~ N(0, scale^2) quantised; the output biases set mu and ls.
ArmNet random_net(Rng& rng, const std::vector<Offset>& ctx, const std::vector<int>& hidden,
                  double scale, double ls_bias) {
  ArmNet net;
  net.context = ctx;
  int in = int(ctx.size());
  std::vector<int> widths = hidden;
  widths.push_back(2);
  for (size_t l = 0; l < widths.size(); ++l) {
    const int out = widths[l];
    std::vector<int32_t> w(size_t(out) * size_t(in)), b(static_cast<size_t>(out));
    const double s = scale / std::sqrt(double(in));
    for (auto& v : w) v = int32_t(std::lround(rng.normal() * s * 4096));
    for (auto& v : b) v = int32_t(std::lround(rng.normal() * 0.1 * (1 << 20)));
    if (l + 1 == widths.size()) b[1] = int32_t(std::lround(ls_bias * (1 << 20)));
    net.weights.push_back(w);
    net.biases.push_back(b);
    in = out;
  }
  return net;
}

// Latents drawn from the model itself, in raster order (as a decoder would see them).
std::vector<int32_t> sample(Rng& rng, const ArmNet& net, Shape s, int a) {
  std::vector<int32_t> v(s.h * s.w, 0), ctx(net.context.size());
  for (size_t y = 0; y < s.h; ++y)
    for (size_t x = 0; x < s.w; ++x) {
      for (size_t j = 0; j < ctx.size(); ++j) {
        const int64_t yy = int64_t(y) + net.context[j].dy, xx = int64_t(x) + net.context[j].dx;
        const bool in = yy >= 0 && xx >= 0 && xx < int64_t(s.w);
        ctx[j] = in ? v[size_t(yy) * s.w + size_t(xx)] : 0;
      }
      int32_t mu, ls;
      net_outputs(net, ctx.data(), a, &mu, &ls);
      const Laplace d = laplace(mu, ls, a);
      const uint32_t u = rng.below(1u << 16);
      uint32_t k = 0;
      while (cum_freq(d, k + 1) <= u) ++k;
      v[y * s.w + x] = int32_t(k) - a;
    }
  return v;
}

std::vector<int32_t> random_latents(Rng& rng, size_t n, int a, int kind) {
  std::vector<int32_t> v(n);
  for (auto& x : v) {
    switch (kind) {
      case 0: x = 0; break;
      case 1: x = rng.below(2) ? a : -a; break;                    // the extremes
      case 2: x = rng.range(-a, a); break;                          // uniform
      default: x = std::clamp(int32_t(std::lround(rng.normal() * 2)), -a, a); break;
    }
  }
  return v;
}

struct Pyramid {
  std::vector<Shape> shapes;
  std::vector<std::vector<int32_t>> data;
  std::vector<const int32_t*> ptrs() const {
    std::vector<const int32_t*> p;
    for (const auto& d : data) p.push_back(d.data());
    return p;
  }
};

bool roundtrip(const Pyramid& p, const ArmNet& net, int a, const std::string& what,
               Bytes* enc_out = nullptr, int threads = 1) {
  Bytes enc;
  try {
    enc = encode(p.ptrs(), p.shapes, net, a, threads);
  } catch (const std::exception& e) {
    CHECK_MSG(false, what + ": encode: " + e.what());
    return false;
  }
  std::vector<std::vector<int32_t>> out(p.shapes.size());
  std::vector<int32_t*> optr;
  for (size_t l = 0; l < out.size(); ++l) {
    out[l].assign(p.shapes[l].h * p.shapes[l].w, 0x5555);
    optr.push_back(out[l].data());
  }
  try {
    decode(enc.data(), enc.size(), p.shapes, net, a, optr, threads);
  } catch (const std::exception& e) {
    CHECK_MSG(false, what + ": decode: " + e.what());
    return false;
  }
  const bool ok = out == p.data;
  CHECK_MSG(ok, what);
  if (enc_out) *enc_out = enc;
  return ok;
}

// ---------------------------------------------------------------------------- the tests

void test_tables() {
  const uint64_t* rc = table_recip();
  const uint64_t* hi = table_exp_hi();
  const uint64_t* lo = table_exp_lo();
  const long double log2e = 1.0L / std::log(2.0L);
  for (int f = 0; f < 256; ++f) {
    const long double r = log2e * std::exp2(-f / 256.0L) * 0x1p40L;
    const long double h = std::exp2(-f / 256.0L) * 0x1p31L;
    const long double l = std::exp2(-f / 65536.0L) * 0x1p31L;
    CHECK_MSG(std::fabs((long double)rc[f] - r) <= 1, "RECIP " + std::to_string(f));
    CHECK_MSG(std::fabs((long double)hi[f] - h) <= 1, "EXP_HI " + std::to_string(f));
    CHECK_MSG(std::fabs((long double)lo[f] - l) <= 1, "EXP_LO " + std::to_string(f));
  }
  CHECK(hi[0] == (1u << 31) && lo[0] == (1u << 31) && exp2_neg(0) == (uint64_t(1) << 32));
  // EXP is non-increasing over its whole domain and within 2^-20 (relative) of 2^-u.
  uint64_t prev = exp2_neg(0);
  int bad = 0, inexact = 0;
  for (uint64_t i = 0; i <= 34; ++i)
    for (uint64_t f = 0; f < 65536; ++f) {
      const uint64_t u = (i << 40) | (f << 24) | (f & 0xffffff);
      const uint64_t e = exp2_neg(u);
      if (e > prev) ++bad;
      prev = e;
      if (i < 8) {
        const long double want = std::exp2(-(long double)u / 0x1p40L) * 0x1p32L;
        if (std::fabs((long double)e - want) > want * 0x1p-15L + 1) ++inexact;
      }
    }
  CHECK(bad == 0);
  CHECK(inexact == 0);
  CHECK(exp2_neg(uint64_t(33) << 40) == 0 && exp2_neg(~uint64_t(0)) == 0);
}

// Every frequency >= 1, C(0) = 0, C(N) = 2^16, and the distribution close to a Laplace.
bool check_dist(int64_t mu, int64_t ls, int a, double* max_err = nullptr) {
  const Laplace d = laplace(mu, ls, a);
  const uint32_t n = uint32_t(2 * a + 1);
  if (cum_freq(d, 0) != 0 || cum_freq(d, n) != 65536) return false;
  uint32_t prev = 0;
  const double m = std::clamp<double>(double(mu), -256.0 * a, 256.0 * a) / 256;
  const double b = std::exp2(std::clamp<double>(double(ls), kLogScaleMin, kLogScaleMax) / 256);
  auto F = [&](double x) {
    return x < m ? 0.5 * std::exp((x - m) / b) : 1 - 0.5 * std::exp(-(x - m) / b);
  };
  double err = 0;
  for (uint32_t k = 1; k <= n; ++k) {
    const uint32_t c = cum_freq(d, k);
    if (c < prev + 1) return false;  // freq >= 1 (strictly increasing C)
    prev = c;
    if (k < n) {  // C(k) against the rescaled real CDF
      const double want = k + (65536.0 - n) * F(double(k) - a - 0.5);
      err = std::max(err, std::fabs(c - want));
    }
  }
  if (max_err) *max_err = std::max(*max_err, err);
  return prev == 65536;
}

void test_cdf() {
  Rng rng(1);
  double err = 0;
  for (int a : {0, 1, 2, 7, 64, 4096}) {
    const int64_t lim = int64_t(a) * 256;
    for (int64_t mu : {-lim, lim, int64_t(0), int64_t(127), int64_t(-128), -lim - 5000, lim + 1})
      for (int64_t ls : {int64_t(kLogScaleMin), int64_t(kLogScaleMax), int64_t(0), int64_t(-1),
                         int64_t(255), int64_t(-100000), int64_t(100000)})
        CHECK_MSG(check_dist(mu, ls, a, &err), "a=" + std::to_string(a) + " mu=" +
                                                   std::to_string(mu) + " ls=" + std::to_string(ls));
    for (int t = 0; t < (a > 100 ? 20 : 300); ++t) {
      const int64_t mu = rng.range(-int32_t(lim) - 300, int32_t(lim) + 300);
      const int64_t ls = rng.range(kLogScaleMin - 10, kLogScaleMax + 10);
      CHECK_MSG(check_dist(mu, ls, a, &err), "a=" + std::to_string(a) + " mu=" +
                                                 std::to_string(mu) + " ls=" + std::to_string(ls));
    }
  }
  CHECK_MSG(err < 2.0, "|C - exact Laplace CDF| up to " + std::to_string(err));
  // A peaked model gives the mode nearly everything, still leaving 1 to every other symbol.
  const Laplace d = laplace(0, kLogScaleMin, 32);
  CHECK(cum_freq(d, 33) - cum_freq(d, 32) == 65536 - 64);
  // cdf_table agrees with cum_freq.
  const int32_t mu[2] = {300, -1000}, ls[2] = {-300, 700};
  std::vector<int32_t> tab(2 * 20);
  cdf_table(mu, ls, 2, 9, tab.data());
  for (int i = 0; i < 2; ++i)
    for (uint32_t k = 0; k < 20; ++k) CHECK(uint32_t(tab[i * 20 + k]) == cum_freq(laplace(mu[i], ls[i], 9), k));
  CHECK_THROWS(std::invalid_argument, laplace(0, 0, -1));
  CHECK_THROWS(std::invalid_argument, laplace(0, 0, kMaxAlphabet + 1));
}

void test_validate() {
  Rng rng(2);
  const ArmNet good = random_net(rng, kCtx12, {16, 16}, 1.0, 0.0);
  validate(good);
  auto bad = [&](const std::function<void(ArmNet&)>& spoil, const char* what) {
    ArmNet n = good;
    spoil(n);
    CHECK_MSG(throws<std::invalid_argument>([&] { validate(n); }), what);
    const int32_t z = 0;
    CHECK_MSG(throws<std::invalid_argument>([&] { encode({&z}, {Shape{1, 1}}, n, 4); }), what);
  };
  bad([](ArmNet& n) { n.context.clear(); }, "no context");
  bad([](ArmNet& n) { n.context[3] = {0, 0}; }, "(0, 0) is not causal");
  bad([](ArmNet& n) { n.context[3] = {0, 1}; }, "(0, 1) is not causal");
  bad([](ArmNet& n) { n.context[3] = {1, -1}; }, "(1, -1) is not causal");
  bad([](ArmNet& n) { n.context[3] = {-17, 0}; }, "reach");
  bad([](ArmNet& n) { n.context[3] = {-1, 17}; }, "reach");
  bad([](ArmNet& n) { n.weights.pop_back(); }, "weights/biases count");
  bad([](ArmNet& n) { n.weights[0].pop_back(); }, "weights size");
  bad([](ArmNet& n) { n.biases[2].push_back(0); }, "3 outputs");
  bad([](ArmNet& n) { n.biases.clear(); n.weights.clear(); }, "no layers");
  bad([](ArmNet& n) { n.weights[1][5] = INT32_MIN; n.weights[1][6] = INT32_MIN;
                      n.weights[1][7] = INT32_MIN; n.weights[1][8] = INT32_MIN; }, "overflow");
  {
    ArmNet n = good;
    n.context.assign(65, Offset{-1, 0});
    n.weights[0].assign(size_t(16) * 65, 0);
    CHECK_THROWS(std::invalid_argument, validate(n));
  }
  {  // wide and deep limits: 64 units, 8 hidden layers, all-max weights on the inputs
    Rng r2(3);
    ArmNet n = random_net(r2, kCtx12, std::vector<int>(8, 64), 1.0, 0.0);
    validate(n);
    n.weights[0].assign(n.weights[0].size(), INT32_MAX);  // 12 * 2^31 * 2^20 < 2^63
    validate(n);
    ArmNet w = random_net(r2, kCtx12, {65}, 1.0, 0.0);
    CHECK_THROWS(std::invalid_argument, validate(w));
    ArmNet d = random_net(r2, kCtx12, std::vector<int>(9, 4), 1.0, 0.0);
    CHECK_THROWS(std::invalid_argument, validate(d));
  }
  // No hidden layer: a linear model; the largest reach; duplicate offsets are fine.
  ArmNet lin = random_net(rng, {{-16, 16}, {0, -16}, {-1, 0}, {-1, 0}}, {}, 1.0, 0.0);
  validate(lin);
  // Shapes and alphabets.
  const int32_t z = 0;
  CHECK_THROWS(std::invalid_argument, encode({&z}, {Shape{1, 1}}, good, -1));
  CHECK_THROWS(std::invalid_argument, encode({&z}, {Shape{1, 1}}, good, 4097));
  CHECK_THROWS(std::invalid_argument, encode({&z}, {}, good, 4));
  CHECK_THROWS(std::invalid_argument, encode({&z}, {Shape{kMaxSide + 1, 1}}, good, 4));
  const int32_t big = 5;
  CHECK_THROWS(std::invalid_argument, encode({&big}, {Shape{1, 1}}, good, 4));
  const int32_t neg = -5;
  CHECK_THROWS(std::invalid_argument, encode({&neg}, {Shape{1, 1}}, good, 4));
  CHECK_THROWS(std::invalid_argument, params(&big, Shape{1, 1}, good, 4, nullptr, nullptr, nullptr));
  int32_t o = 0;
  CHECK_THROWS(std::invalid_argument, decode(nullptr, 0, {Shape{1, 1}}, good, 4, {}));
  CHECK_THROWS(std::invalid_argument, decode(nullptr, 0, {Shape{1, 1}}, good, 9999, {&o}));
}

void test_roundtrip() {
  Rng rng(4);
  const std::vector<std::vector<Offset>> ctxs = {
      kCtx12, {{0, -1}}, {{-1, 0}, {0, -1}, {-1, -1}, {-1, 1}}, {{-16, -16}, {-3, 16}, {0, -16}}};
  const std::vector<std::vector<int>> hiddens = {{}, {16, 16}, {8}, {3, 24, 5}};
  int case_no = 0;
  for (int a : {0, 1, 3, 31, 255, 4096})
    for (int kind = 0; kind < 4; ++kind) {
      const auto& ctx = ctxs[size_t(case_no) % ctxs.size()];
      const auto& hid = hiddens[size_t(case_no / 2) % hiddens.size()];
      const double ls_bias = double(rng.range(-8, 10));
      const ArmNet net = random_net(rng, ctx, hid, 0.5 + rng.uniform() * 2, ls_bias);
      Pyramid p;
      p.shapes = std::vector<Shape>{{17, 23}, {0, 5}, {1, 1}, {9, 4}, {5, 0}, {1, 40}, {40, 1}, {3, 3}};
      for (const Shape& s : p.shapes) p.data.push_back(random_latents(rng, s.h * s.w, a, kind));
      const std::string what = "a=" + std::to_string(a) + " kind=" + std::to_string(kind);
      Bytes e1, e4;
      roundtrip(p, net, a, what, &e1, 1);
      roundtrip(p, net, a, what + " threads=4", &e4, 4);
      CHECK_MSG(e1 == e4, what + ": bytes depend on threads");
      ++case_no;
    }
  // No levels at all, and only empty levels.
  Rng r2(5);
  const ArmNet net = random_net(r2, kCtx12, {16, 16}, 1.0, 0.0);
  Pyramid none;
  Bytes e;
  roundtrip(none, net, 10, "no levels", &e);
  CHECK(e.empty());
  Pyramid empty;
  empty.shapes = std::vector<Shape>{{0, 0}, {0, 3}};
  empty.data = {{}, {}};
  roundtrip(empty, net, 10, "empty levels", &e);
  CHECK(e.size() == 1 && e[0] == 0);
  // One 1x1 level: 4 bytes, the state.
  Pyramid one;
  one.shapes = std::vector<Shape>{{1, 1}};
  one.data = {{0}};
  roundtrip(one, net, 10, "1x1", &e);
  CHECK(e.size() <= 5);
}

// Latents drawn from the model: the payload is within 0.5% + 5 bytes per level of the
// information content sum(16 - log2 freq) that params() reports.
void test_rate() {
  Rng rng(6);
  for (double ls_bias : {-3.0, 0.0, 2.5}) {
    const ArmNet net = random_net(rng, kCtx12, {16, 16}, 1.0, ls_bias);
    const int a = 63;
    Pyramid p;
    p.shapes = std::vector<Shape>{{48, 64}, {24, 32}, {12, 16}};
    double ideal_bits = 0;
    for (const Shape& s : p.shapes) {
      p.data.push_back(sample(rng, net, s, a));
      std::vector<int32_t> freq(s.h * s.w);
      params(p.data.back().data(), s, net, a, nullptr, nullptr, freq.data());
      for (int32_t f : freq) {
        CHECK(f >= 1 && f <= 65536);
        ideal_bits += 16 - std::log2(double(f));
      }
    }
    Bytes enc;
    if (!roundtrip(p, net, a, "sampled ls_bias=" + std::to_string(ls_bias), &enc)) continue;
    const double ideal = ideal_bits / 8;
    CHECK_MSG(enc.size() <= ideal * 1.005 + 5 * p.shapes.size() && enc.size() + 2 >= ideal,
              std::to_string(enc.size()) + " bytes, ideal " + std::to_string(ideal));
  }
}

void test_params() {
  Rng rng(7);
  const ArmNet net = random_net(rng, kCtx12, {16, 16}, 1.5, 0.0);
  const Shape s{13, 11};
  const int a = 20;
  const std::vector<int32_t> v = random_latents(rng, s.h * s.w, a, 3);
  std::vector<int32_t> mu(s.h * s.w), ls(s.h * s.w), freq(s.h * s.w);
  params(v.data(), s, net, a, mu.data(), ls.data(), freq.data());
  for (size_t i = 0; i < v.size(); ++i) {
    CHECK(mu[i] >= -a * 256 && mu[i] <= a * 256 && ls[i] >= kLogScaleMin && ls[i] <= kLogScaleMax);
    const Laplace d = laplace(mu[i], ls[i], a);
    const uint32_t k = uint32_t(v[i] + a);
    CHECK(uint32_t(freq[i]) == cum_freq(d, k + 1) - cum_freq(d, k));
  }
  // The first latent sees only zeros: its parameters are those of the all-zero context.
  std::vector<int32_t> zero(s.h * s.w, 0), mu0(zero.size());
  params(zero.data(), s, net, a, mu0.data(), nullptr, nullptr);
  CHECK(mu0[0] == mu[0]);
  // Changing a latent changes nothing before it (causality).
  std::vector<int32_t> v2 = v, mu2(v.size());
  v2[70] = v[70] == 0 ? 1 : 0;
  params(v2.data(), s, net, a, mu2.data(), nullptr, nullptr);
  CHECK(std::equal(mu.begin(), mu.begin() + 71, mu2.begin()));
}

void test_corrupt() {
  Rng rng(8);
  const ArmNet net = random_net(rng, kCtx12, {16, 16}, 1.0, 1.0);
  const int a = 15;
  Pyramid p;
  p.shapes = std::vector<Shape>{{16, 16}, {8, 8}, {4, 4}};
  for (const Shape& s : p.shapes) p.data.push_back(random_latents(rng, s.h * s.w, a, 3));
  Bytes enc;
  if (!roundtrip(p, net, a, "corrupt base", &enc)) return;
  std::vector<std::vector<int32_t>> out(p.shapes.size());
  std::vector<int32_t*> optr;
  for (size_t l = 0; l < out.size(); ++l) {
    out[l].resize(p.shapes[l].h * p.shapes[l].w);
    optr.push_back(out[l].data());
  }
  auto dec = [&](const Bytes& b) { decode(b.data(), b.size(), p.shapes, net, a, optr); };
  // Every truncation is a FormatError (the decoder reads through copies of exact size).
  int not_format = 0;
  for (size_t cut = 0; cut < enc.size(); ++cut) {
    const Bytes t(enc.begin(), enc.begin() + ptrdiff_t(cut));
    if (!throws<FormatError>([&] { dec(t); })) ++not_format;
  }
  CHECK(not_format == 0);
  {  // trailing data, bad states, length header past the end
    Bytes t = enc;
    t.push_back(0);
    CHECK_THROWS(FormatError, dec(t));
    t = enc;  // a first length of 2^21 - 1
    t[0] = 0xff;
    t[1] = 0xff;
    t[2] = 0x7f;
    CHECK_THROWS(FormatError, dec(t));
    const Bytes inf(20, 0xff);
    CHECK_THROWS(FormatError, dec(inf));
  }
  {  // a non-empty stream for an empty level; data for no levels
    const int32_t z = 0;
    const Bytes e1 = encode({&z, &z}, {Shape{1, 1}, Shape{1, 1}}, net, a);
    int32_t o1 = 0, o2 = 0;
    CHECK_THROWS(FormatError, decode(e1.data(), e1.size(), {Shape{0, 1}, Shape{1, 1}}, net, a, {&o1, &o2}));
    CHECK_THROWS(FormatError, decode(e1.data(), e1.size(), {}, net, a, {}));
    Bytes st = e1;  // state below L
    st[1] = 0;
    st[2] = 0;
    st[3] = 0;
    st[4] = 0;
    CHECK_THROWS(FormatError, decode(st.data(), st.size(), {Shape{1, 1}, Shape{1, 1}}, net, a, {&o1, &o2}));
    st[4] = 0x80;  // state >= 2^31
    CHECK_THROWS(FormatError, decode(st.data(), st.size(), {Shape{1, 1}, Shape{1, 1}}, net, a, {&o1, &o2}));
  }
  // Flipped bytes and random garbage: FormatError or a decode, never anything else.
  int other = 0, format = 0;
  for (size_t i = 0; i < enc.size(); ++i)
    for (int t = 0; t < 3; ++t) {
      Bytes x = enc;
      x[i] ^= uint8_t(1 + rng.below(255));
      try {
        dec(x);
      } catch (const FormatError&) {
        ++format;
      } catch (...) {
        ++other;
      }
    }
  for (int t = 0; t < 300; ++t) {
    Bytes x(rng.below(200));
    for (auto& c : x) c = uint8_t(rng.next());
    try {
      dec(x);
    } catch (const FormatError&) {
      ++format;
    } catch (...) {
      ++other;
    }
  }
  CHECK(other == 0);
  CHECK(format > 0);
}

// Fixed inputs -> fixed bytes and probabilities (integer-only generation: no libm). If this
// fails, the format changed: that breaks every stored file, so the change must be deliberate
// (update the digest and docs/arm_coder.md together).
void test_golden() {
  Rng rng(2024);
  ArmNet net;
  net.context = kCtx12;
  int in = 12;
  for (int out : {16, 16, 2}) {
    std::vector<int32_t> w(size_t(out) * size_t(in)), b(static_cast<size_t>(out));
    for (auto& v : w) v = rng.range(-1500, 1500);    // |w| < 0.37
    for (auto& v : b) v = rng.range(-200000, 200000);  // |b| < 0.2
    net.weights.push_back(w);
    net.biases.push_back(b);
    in = out;
  }
  Pyramid p;
  p.shapes = std::vector<Shape>{{24, 32}, {12, 16}, {6, 8}, {1, 1}, {0, 4}};
  for (const Shape& s : p.shapes) {
    std::vector<int32_t> v(s.h * s.w);
    for (auto& x : v) x = rng.range(-3, 3) + rng.range(-3, 3) * int32_t(rng.below(2)) + (rng.below(50) ? 0 : 34);
    p.data.push_back(v);
  }
  Bytes enc;
  if (!roundtrip(p, net, 40, "golden", &enc)) return;
  uint64_t h = xxh64(enc.data(), enc.size());
  std::vector<int32_t> mu(768), ls(768), freq(768);
  params(p.data[0].data(), p.shapes[0], net, 40, mu.data(), ls.data(), freq.data());
  for (const auto* v : {&mu, &ls, &freq})
    h = xxh64(reinterpret_cast<const uint8_t*>(v->data()), v->size() * 4, h);
  std::printf("golden: %zu bytes, xxh64 %016" PRIx64 "\n", enc.size(), h);
  CHECK_MSG(h == 0xd5d74b8ceb33effdULL, "golden digest changed");
}

void bench() {
  Rng rng(9);
  const ArmNet net = random_net(rng, kCtx12, {16, 16}, 1.0, 0.0);
  const int a = 255;
  Pyramid p;
  size_t total = 0;
  for (size_t h = 512, w = 768; h >= 8; h /= 2, w /= 2) {
    p.shapes.push_back({h, w});
    // Smooth-ish latents: mostly 0 and +-1, as a Cool-chic pyramid at a mid rate.
    p.data.push_back(random_latents(rng, h * w, a, 3));
    total += h * w;
  }
  using clk = std::chrono::steady_clock;
  Bytes enc;
  double best_enc = 1e9, best_dec = 1e9;
  std::vector<std::vector<int32_t>> out(p.shapes.size());
  std::vector<int32_t*> optr;
  for (size_t l = 0; l < out.size(); ++l) {
    out[l].resize(p.shapes[l].h * p.shapes[l].w);
    optr.push_back(out[l].data());
  }
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = clk::now();
    enc = encode(p.ptrs(), p.shapes, net, a);
    auto t1 = clk::now();
    decode(enc.data(), enc.size(), p.shapes, net, a, optr);
    auto t2 = clk::now();
    best_enc = std::min(best_enc, std::chrono::duration<double>(t1 - t0).count());
    best_dec = std::min(best_dec, std::chrono::duration<double>(t2 - t1).count());
  }
  CHECK(out == p.data);
  std::printf("bench: %zu latents in %zu levels, %zu bytes; encode %.1f ms, decode %.1f ms "
              "(%.0f ns/latent)\n", total, p.shapes.size(), enc.size(), best_enc * 1e3,
              best_dec * 1e3, best_dec * 1e9 / double(total));
}

}  // namespace

int main(int argc, char** argv) {
  run("tables", test_tables, 16);
  run("cdf", test_cdf, 16);
  run("validate", test_validate, 16);
  run("roundtrip", test_roundtrip, 16);
  run("rate", test_rate, 16);
  run("params", test_params, 16);
  run("corrupt", test_corrupt, 16);
  run("golden", test_golden, 16);
  if (argc > 1 && std::strcmp(argv[1], "bench") == 0) run("bench", bench, 16);
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
