// Unit tests of the C++ core (csrc), no framework: every CHECK is counted, failures are
// printed, and the exit status is 0 only if all passed.
//
//   cmake -S . -B build -DWZ_BUILD_TESTS=ON && cmake --build build -j2 && ctest --test-dir build
// or, as tests/weightzip/test_csrc_unit.py does, in one command:
//   c++ -std=c++17 -O1 -pthread -Icsrc csrc/*.cpp (but bindings.cpp) csrc/tests/test_core.cpp -ldl
//
// Covers rans (round trips of many distributions, every context source and the wide scales,
// decoding in pieces, caps, truncated and corrupt streams), rans_indexed (round trips with
// escapes and int32 extremes, one and several lanes, bad arguments, truncated and corrupt
// payloads), cm, and the chunk driver (every transform and item size at every level and
// forced method, threads, checksums, bad tables, bad arguments).
//
// The last line printed is a digest of every encoded byte: it must not depend on the SIMD
// level (WEIGHTZIP_SIMD=none|avx2|<unset>) nor on the number of threads.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include "chunk.hpp"
#include "chunks.hpp"
#include "predict.hpp"
#include "cm.hpp"
#include "rans.hpp"
#include "rans_indexed.hpp"
#include "rans_model.hpp"
#include "transform.hpp"
#include "xxhash64.hpp"
#include "zstd_dl.hpp"
#include "check.hpp"

using namespace wz;
using namespace wz_test;

namespace {

uint64_t g_digest = 0;  // over every encoded output, in test order

void digest(const uint8_t* p, size_t n) { g_digest = xxh64(p, n, g_digest); }
void digest(const Bytes& b) { digest(b.data(), b.size()); }

// ------------------------------------------------------------------------------------ rans

// Decode a whole stream, in pieces of the given sizes (cycled), then finish().
Bytes rans_decode(const Bytes& enc, size_t n, const uint8_t* side,
                  const std::vector<size_t>& pieces) {
  rans::Decoder d(enc.data(), enc.size());
  Bytes out(n, 0xAA);
  size_t off = 0;
  for (size_t k = 0; off < n; ++k) {
    const size_t cnt = std::min(n - off, pieces[k % pieces.size()]);
    d.decode(out.data() + off, cnt, side ? side + off : nullptr);
    off += cnt;
  }
  d.finish();
  return out;
}

const std::vector<std::vector<size_t>> kPieces = {{SIZE_MAX}, {7}, {32, 5, 1000}, {4096}};

void rans_roundtrip_model(const Bytes& x, const uint8_t* side, const rans::Model& m,
                          const std::string& what) {
  Bytes enc;
  const bool ok = rans::encode(x.data(), x.size(), side, m, enc, SIZE_MAX);
  CHECK_MSG(ok, what);
  if (!ok) return;
  digest(enc);
  for (const auto& p : kPieces) {
    try {
      CHECK_MSG(rans_decode(enc, x.size(), side, p) == x, what);
    } catch (const std::exception& e) {
      CHECK_MSG(false, what + ": " + e.what());
    }
  }
  // A cap below the size fails cleanly; the exact size succeeds.
  Bytes again;
  CHECK_MSG(!rans::encode(x.data(), x.size(), side, m, again, enc.size() - 1), what);
  CHECK_MSG(rans::encode(x.data(), x.size(), side, m, again, enc.size()) && again == enc, what);
}

// The encoder's own model choice (as chunk.cpp makes it); returns the chosen context source.
rans::Source rans_roundtrip(const Bytes& x, rans::Family fam, const uint8_t* side,
                            const std::string& what) {
  uint32_t side_hist[256] = {};
  if (side)
    for (size_t i = 0; i < x.size(); ++i) side_hist[side[i]]++;
  rans::Stats st;
  rans::gather_stats(x.data(), x.size(), fam, side, side_hist, st);
  rans::Model m;
  const size_t est = rans::choose_model(st, m);
  CHECK_MSG(est > 0, what);
  rans_roundtrip_model(x, side, m, what);
  return m.ctx.src;
}

// Frequencies summing to 1 << scale over the symbols of support (each >= 1), skewed at random.
void make_freqs(Rng& rng, const std::vector<int>& support, int scale, uint32_t freq[256]) {
  std::fill(freq, freq + 256, 0u);
  const uint32_t M = 1u << scale;
  std::vector<double> w(support.size());
  double sum = 0;
  for (auto& v : w) sum += v = std::pow(rng.uniform() + 0.01, 3);
  uint32_t used = 0;
  for (size_t j = 0; j < support.size(); ++j) {
    freq[support[j]] = 1 + uint32_t(w[j] / sum * double(M - support.size()));
    used += freq[support[j]];
  }
  freq[support[0]] += M - used;
}

uint8_t sample(Rng& rng, const uint32_t freq[256], int scale) {
  uint32_t r = rng.below(1u << scale);
  for (int s = 0; s < 256; ++s) {
    if (r < freq[s]) return uint8_t(s);
    r -= freq[s];
  }
  return 0;
}

// Hand-built models for every context source (and the wide scales), data drawn from them.
void test_rans_models() {
  Rng rng(11);
  std::vector<int> sixteen;
  for (int s = 0; s < 16; ++s) sixteen.push_back(s * 3);
  for (size_t n : {size_t(0), size_t(1), size_t(31), size_t(33), size_t(5000), size_t(70001)}) {
    const std::string sz = " n=" + std::to_string(n);
    {  // order 0 at every packed and wide scale
      for (int scale : {rans::kMinScale, 11, rans::kPackedScale, 13, rans::kMaxScale}) {
        rans::Model m;
        m.scale = scale;
        std::vector<int> sup;
        for (int s = 0; s < 256; ++s) sup.push_back(s);
        make_freqs(rng, sup, scale, m.freq[0]);
        Bytes x(n);
        for (auto& v : x) v = sample(rng, m.freq[0], scale);
        rans_roundtrip_model(x, nullptr, m, "order0 scale=" + std::to_string(scale) + sz);
      }
    }
    {  // kPrev: the same state's previous symbol, by its low 2 bits
      rans::Model m;
      m.ctx = {rans::Source::kPrev, 4, 0x03, 0, 0};
      for (int k = 0; k < 4; ++k) make_freqs(rng, sixteen, 11, m.freq[k]);
      m.scale = 11;
      Bytes x(n);
      for (size_t i = 0; i < n; ++i)
        x[i] = sample(rng, m.freq[m.ctx.of(i >= rans::kLanes ? x[i - rans::kLanes] : 0)], 11);
      rans_roundtrip_model(x, nullptr, m, "kPrev" + sz);
    }
    {  // kSide: a side byte, classes 10, 11, 12+
      rans::Model m;
      m.ctx = {rans::Source::kSide, 3, 0xff, 10, 0};
      for (int k = 0; k < 3; ++k) make_freqs(rng, sixteen, 12, m.freq[k]);
      Bytes side(n), x(n);
      for (size_t i = 0; i < n; ++i) {
        side[i] = uint8_t(rng.below(20));
        x[i] = sample(rng, m.freq[m.ctx.of(side[i])], 12);
      }
      rans_roundtrip_model(x, side.data(), m, "kSide" + sz);
    }
    {  // kPos: segments of 2^10 symbols, classes 0, 1, 2, 3+
      rans::Model m;
      m.ctx = {rans::Source::kPos, 4, 0xff, 0, 10};
      for (int k = 0; k < 4; ++k) make_freqs(rng, sixteen, 10, m.freq[k]);
      m.scale = 10;
      Bytes x(n);
      for (size_t i = 0; i < n; ++i) x[i] = sample(rng, m.freq[m.ctx.of(m.ctx.pos_ref(i))], 10);
      rans_roundtrip_model(x, nullptr, m, "kPos" + sz);
    }
  }
}

// The encoder's model choice on typical and degenerate distributions.
void test_rans_distributions() {
  Rng rng(7);
  const rans::Family fams[] = {rans::Family::kNone, rans::Family::kLowZeros,
                               rans::Family::kPosition, rans::Family::kSide};
  auto all = [&](const Bytes& x, const uint8_t* side, const std::string& what) {
    for (auto f : fams) rans_roundtrip(x, f, side, what + " family=" + std::to_string(int(f)));
  };
  all(Bytes(), nullptr, "empty");
  all(Bytes(1, 42), nullptr, "one symbol");
  all(Bytes(1000, 0), nullptr, "all zero");
  all(Bytes(100003, 255), nullptr, "all 255");
  {
    Bytes x(777);
    for (auto& v : x) v = rng.below(2) ? 3 : 250;
    all(x, nullptr, "two symbols");
  }
  {
    Bytes x(100003);
    for (auto& v : x) v = uint8_t(rng.next());
    all(x, nullptr, "uniform");
  }
  {
    Bytes x(90000);
    for (auto& v : x) v = uint8_t(std::min(255.0, std::floor(-std::log(rng.uniform() + 1e-12) * 3)));
    all(x, nullptr, "geometric");
  }
  {  // one dominant symbol and a long tail: the wide scales
    Bytes x(200000);
    for (auto& v : x) v = rng.below(100) < 97 ? 7 : uint8_t(rng.next());
    all(x, nullptr, "long tail");
  }
  {  // the same values as their exponents (a side stream): kSide should be chosen
    const size_t n = 100000;
    Bytes side(n), x(n);
    for (size_t i = 0; i < n; ++i) {
      side[i] = uint8_t(118 + rng.below(8));
      x[i] = uint8_t((side[i] & 1) ? rng.below(4) : 128 + rng.below(64));
    }
    CHECK(rans_roundtrip(x, rans::Family::kSide, side.data(), "side") == rans::Source::kSide);
    all(x, side.data(), "side");
  }
  {  // exponents: a narrow band (the encoder's register window) and rare outliers (gathers)
    for (const size_t n : {size_t(70001), size_t(131072)}) {
      Bytes x(n);
      for (size_t i = 0; i < n; ++i) {
        const uint32_t r = rng.below(1000);
        x[i] = r == 0 ? 0 : r == 1 ? uint8_t(rng.next()) : uint8_t(110 + rng.below(16) + (i > n / 2 ? 8 : 0));
      }
      all(x, nullptr, "exponents n=" + std::to_string(n));
    }
  }
  {  // two halves with different statistics: kPos should be chosen
    const size_t n = 131072;
    Bytes x(n);
    for (size_t i = 0; i < n; ++i) x[i] = uint8_t(i < n / 2 ? rng.below(4) : 100 + rng.below(4));
    CHECK(rans_roundtrip(x, rans::Family::kPosition, nullptr, "pos") == rans::Source::kPos);
  }
  {  // zero bytes follow zero bytes (low mantissa bytes of reduced precision): kPrev
    const size_t n = 100000;
    Bytes x(n);
    for (size_t i = 0; i < n; ++i) {
      const bool zero = i >= rans::kLanes ? x[i - rans::kLanes] == 0 : rng.below(2);
      x[i] = zero ? (rng.below(50) ? 0 : uint8_t(rng.next())) : uint8_t(1 | rng.next());
    }
    CHECK(rans_roundtrip(x, rans::Family::kLowZeros, nullptr, "lowzeros") == rans::Source::kPrev);
  }
}

// Truncated streams throw FormatError; corrupt ones throw FormatError or decode (no crash).
void test_rans_corrupt() {
  Rng rng(3);
  for (size_t n : {size_t(100), size_t(20000)}) {
    Bytes x(n);
    for (auto& v : x) v = uint8_t(std::min(255.0, std::floor(-std::log(rng.uniform() + 1e-12) * 4)));
    rans::Stats st;
    rans::gather_stats(x.data(), n, rans::Family::kNone, nullptr, nullptr, st);
    rans::Model m;
    rans::choose_model(st, m);
    Bytes enc;
    CHECK(rans::encode(x.data(), n, nullptr, m, enc, SIZE_MAX));
    for (size_t cut : {size_t(0), size_t(1), size_t(5), size_t(20), enc.size() / 2,
                       enc.size() - 4, enc.size() - 2, enc.size() - 1}) {
      const Bytes t(enc.begin(), enc.begin() + std::ptrdiff_t(cut));
      CHECK_MSG(throws<FormatError>([&] { rans_decode(t, n, nullptr, {SIZE_MAX}); }),
                "truncated to " + std::to_string(cut));
    }
    {  // trailing data
      Bytes t = enc;
      t.push_back(0);
      t.push_back(0);
      CHECK(throws<FormatError>([&] { rans_decode(t, n, nullptr, {SIZE_MAX}); }));
    }
    int thrown = 0, other = 0;
    for (size_t i = 0; i < enc.size(); i += 1 + enc.size() / 300) {
      for (uint8_t bit : {uint8_t(1), uint8_t(0x80)}) {
        Bytes t = enc;
        t[i] ^= bit;
        try {
          rans_decode(t, n, nullptr, {SIZE_MAX});
        } catch (const FormatError&) {
          ++thrown;
        } catch (...) {
          ++other;
        }
      }
    }
    CHECK(other == 0);
    CHECK(thrown > 0);
  }
}

// -------------------------------------------------------------------------- rans_indexed

struct IndexedTables {
  std::vector<int32_t> cdfs, lengths, offsets;
  size_t max_len = 0;
  rans_indexed::Tables view() const {
    rans_indexed::Tables t;
    t.cdfs = cdfs.data();
    t.lengths = lengths.data();
    t.offsets = offsets.data();
    t.n_cdfs = lengths.size();
    t.max_len = max_len;
    return t;
  }
};

// Tables of the given lengths and offsets; random strictly increasing CDFs.
IndexedTables make_indexed_tables(Rng& rng, const std::vector<int32_t>& lengths,
                                  const std::vector<int32_t>& offsets) {
  IndexedTables t;
  t.lengths = lengths;
  t.offsets = offsets;
  for (int32_t l : lengths) t.max_len = std::max(t.max_len, size_t(l));
  t.cdfs.assign(lengths.size() * t.max_len, 0x55555555);  // past len: ignored
  for (size_t k = 0; k < lengths.size(); ++k) {
    const int nsym = lengths[k] - 1;
    const uint32_t total = 1u << rans_indexed::kPrecision;
    std::vector<double> w(static_cast<size_t>(nsym));
    double sum = 0;
    for (auto& v : w) sum += v = std::exp(-3 * rng.uniform());
    int32_t* cdf = t.cdfs.data() + k * t.max_len;
    cdf[0] = 0;
    uint32_t acc = 0;
    for (int j = 0; j < nsym; ++j) {
      acc += 1 + uint32_t(w[size_t(j)] / sum * double(total - uint32_t(nsym)));
      cdf[j + 1] = int32_t(acc);
    }
    cdf[nsym] = int32_t(total);  // rounding slack goes to the escape symbol
  }
  return t;
}

void test_rans_indexed() {
  Rng rng(5);
  constexpr int32_t kMin = std::numeric_limits<int32_t>::min();
  constexpr int32_t kMaxI = std::numeric_limits<int32_t>::max();
  const IndexedTables tabs =
      make_indexed_tables(rng, {3, 12, 64, 40, 5}, {0, -5, kMin, kMaxI, 1000});
  const rans_indexed::Tables t = tabs.view();
  CHECK(!throws<std::exception>([&] { rans_indexed::validate(t); }));

  for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(1000),
                   rans_indexed::kInterleaveMin - 1, rans_indexed::kInterleaveMin + 3}) {
    std::vector<int32_t> sym(n), idx(n);
    for (size_t i = 0; i < n; ++i) {
      const int32_t k = int32_t(rng.below(uint32_t(t.n_cdfs)));
      idx[i] = k;
      const int64_t off = tabs.offsets[size_t(k)], len = tabs.lengths[size_t(k)];
      int64_t v;
      switch (rng.below(12)) {
        case 0: v = kMin; break;
        case 1: v = kMaxI; break;
        case 2: v = off - 1; break;                  // just below the table
        case 3: v = off + len - 2; break;            // the first escape above
        case 4: v = off + len - 3; break;            // the last coded value
        case 5: v = int32_t(rng.next()); break;      // anywhere
        case 6: v = off - 1 - rng.below(100); break;
        default: v = off + rng.below(uint32_t(len - 2)); break;
      }
      sym[i] = int32_t(std::clamp<int64_t>(v, kMin, kMaxI));
    }
    const std::string what = "indexed n=" + std::to_string(n);
    Bytes enc;
    try {
      enc = rans_indexed::encode(sym.data(), idx.data(), n, t);
    } catch (const std::exception& e) {
      CHECK_MSG(false, what + ": " + e.what());
      continue;
    }
    digest(enc);
    CHECK_MSG(enc.size() >= 8 * size_t(rans_indexed::lanes_for(n)) && enc.size() % 4 == 0, what);
    if (n == 0) {  // the initial state 2^31 alone, as CompressAI writes it
      const Bytes want = {0, 0, 0, 0x80, 0, 0, 0, 0};
      CHECK(enc == want);
    }
    std::vector<int32_t> out(n, 0x7777);
    try {
      rans_indexed::decode(enc.data(), enc.size(), idx.data(), n, t, out.data());
      CHECK_MSG(out == sym, what);
    } catch (const std::exception& e) {
      CHECK_MSG(false, what + ": " + e.what());
    }
    if (n == 0) continue;
    // Truncated: always FormatError.
    for (size_t cut : {size_t(0), size_t(4), size_t(7), enc.size() - 1, enc.size() - 4}) {
      if (cut >= enc.size()) continue;
      CHECK_MSG(throws<FormatError>([&] {
                  rans_indexed::decode(enc.data(), cut, idx.data(), n, t, out.data());
                }),
                what + " cut=" + std::to_string(cut));
    }
    {  // trailing data and a bad initial state
      Bytes x = enc;
      x.insert(x.end(), {1, 2, 3, 4});
      CHECK(throws<FormatError>(
          [&] { rans_indexed::decode(x.data(), x.size(), idx.data(), n, t, out.data()); }));
      x = enc;
      std::memset(x.data(), 0, 8);
      CHECK(throws<FormatError>(
          [&] { rans_indexed::decode(x.data(), x.size(), idx.data(), n, t, out.data()); }));
    }
    // Corrupt: FormatError or a decode, never anything else (nor a crash).
    int other = 0;
    for (size_t i = 0; i < enc.size(); i += 1 + enc.size() / 200) {
      Bytes x = enc;
      x[i] ^= uint8_t(1 + rng.below(255));
      try {
        rans_indexed::decode(x.data(), x.size(), idx.data(), n, t, out.data());
      } catch (const FormatError&) {
      } catch (...) {
        ++other;
      }
    }
    CHECK_MSG(other == 0, what);
    // An index out of range is a bad argument, on both sides.
    std::vector<int32_t> bad = idx;
    bad[n / 2] = int32_t(t.n_cdfs);
    CHECK_THROWS(std::invalid_argument, rans_indexed::encode(sym.data(), bad.data(), n, t));
    CHECK_THROWS(std::invalid_argument,
                 rans_indexed::decode(enc.data(), enc.size(), bad.data(), n, t, out.data()));
    bad[n / 2] = -1;
    CHECK_THROWS(std::invalid_argument, rans_indexed::encode(sym.data(), bad.data(), n, t));
  }

  // Bad tables: std::invalid_argument.
  auto bad_table = [&](const std::function<void(IndexedTables&)>& spoil, const char* what) {
    IndexedTables b = tabs;
    spoil(b);
    const rans_indexed::Tables bt = b.view();
    const int32_t s = 0, i = 1;
    CHECK_MSG(throws<std::invalid_argument>([&] { rans_indexed::validate(bt); }), what);
    CHECK_MSG(throws<std::invalid_argument>([&] { rans_indexed::encode(&s, &i, 1, bt); }), what);
  };
  bad_table([](IndexedTables& b) { b.lengths[1] = 2; }, "length 2");
  bad_table([](IndexedTables& b) { b.lengths[1] = int32_t(b.max_len) + 1; }, "length > max_len");
  bad_table([](IndexedTables& b) { b.cdfs[b.max_len + 0] = 1; }, "cdf[0] != 0");
  bad_table([](IndexedTables& b) { b.cdfs[b.max_len + 3] = b.cdfs[b.max_len + 2]; },
            "not increasing");
  bad_table([](IndexedTables& b) { b.cdfs[b.max_len + 11] = 65535; }, "cdf end != 2^16");
}

// -------------------------------------------------------------------------------- cm

void test_cm() {
  Rng rng(9);
  for (size_t n : {size_t(0), size_t(1), size_t(3000)}) {
    Bytes side(n), x(n);
    for (size_t i = 0; i < n; ++i) {
      side[i] = uint8_t(rng.below(4));
      x[i] = uint8_t(side[i] * 16 + rng.below(3) + (i >= 50 ? x[i - 50] & 1 : 0));
    }
    const uint8_t* sides[] = {nullptr, side.data()};
    for (const uint8_t* s : sides) {
      for (uint32_t row : {0u, 50u}) {
        Bytes enc;
        CHECK(cm::encode(x.data(), n, s, row, enc, SIZE_MAX));
        digest(enc);
        Bytes out(n);
        try {
          cm::decode(enc.data(), enc.size(), s, out.data(), n);
          CHECK(out == x);
        } catch (const std::exception& e) {
          CHECK_MSG(false, std::string("cm: ") + e.what());
        }
        if (n) CHECK(throws<FormatError>([&] { cm::decode(enc.data(), 2, s, out.data(), n); }));
      }
    }
  }
}

// ---------------------------------------------------------------------------- chunks

struct Layout {
  Transform t;
  int itemsize;
};
const Layout kLayouts[] = {
    {Transform::kBytes, 1}, {Transform::kBytes, 2}, {Transform::kBytes, 3},
    {Transform::kBytes, 4}, {Transform::kBytes, 8}, {Transform::kBytes, 16},
    {Transform::kBF16, 2},  {Transform::kFP16, 2},  {Transform::kFP32, 4},
    {Transform::kFP64, 8},  {Transform::kFP8, 1},
};

// n elements that look like trained weights (floats) or small integers (kBytes).
Bytes weights(Rng& rng, Transform t, int itemsize, size_t n) {
  Bytes b(n * size_t(itemsize));
  for (size_t i = 0; i < n; ++i) {
    const double v = rng.normal() * 0.02;
    const float f = float(v);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint8_t* p = b.data() + i * size_t(itemsize);
    switch (t) {
      case Transform::kBytes: {
        const int64_t k = int64_t(std::lround(rng.normal() * 20));
        for (int j = 0; j < itemsize; ++j) p[j] = uint8_t(j < 8 ? uint64_t(k) >> (8 * j) : 0);
        break;
      }
      case Transform::kBF16: {
        const uint16_t h = uint16_t(u >> 16);
        std::memcpy(p, &h, 2);
        break;
      }
      case Transform::kFP16: {
        const int e = int((u >> 23) & 0xff) - 127 + 15;
        const uint16_t h = uint16_t((u >> 16 & 0x8000) | (e > 0 ? (e & 0x1f) << 10 : 0) |
                                    ((u >> 13) & 0x3ff));
        std::memcpy(p, &h, 2);
        break;
      }
      case Transform::kFP32:
        std::memcpy(p, &u, 4);
        break;
      case Transform::kFP64:
        std::memcpy(p, &v, 8);
        break;
      case Transform::kFP8: {
        const int e = std::clamp(int((u >> 23) & 0xff) - 127 + 7, 0, 15);
        p[0] = uint8_t((u >> 24 & 0x80) | e << 3 | ((u >> 20) & 7));
        break;
      }
    }
  }
  return b;
}

std::vector<uint64_t> decode_table(const EncodedChunks& e) {
  std::vector<uint64_t> tab;
  uint64_t off = 0;
  for (const ChunkEntry& c : e.table) {
    tab.insert(tab.end(), {off, c.csize, c.rsize, c.checksum});
    off += c.csize;
  }
  return tab;
}

bool same(const EncodedChunks& a, const EncodedChunks& b) {
  if (a.size != b.size || a.table.size() != b.table.size()) return false;
  if (a.size && std::memcmp(a.payload.get(), b.payload.get(), a.size)) return false;
  for (size_t i = 0; i < a.table.size(); ++i)
    if (a.table[i].csize != b.table[i].csize || a.table[i].rsize != b.table[i].rsize ||
        a.table[i].checksum != b.table[i].checksum)
      return false;
  return true;
}

Bytes decode_all(const EncodedChunks& e, const ChunkSpec& spec, size_t size, int threads,
                 bool verify = true) {
  const std::vector<uint64_t> tab = decode_table(e);
  Bytes out(size, 0xAA);
  decode_chunks(e.payload.get(), e.size, tab.data(), e.table.size(), spec, out.data(),
                out.size(), threads, verify);
  return out;
}

// Encode with 1 and 3 threads (same bytes), check the table, decode with 1 and 3 threads.
void chunks_roundtrip(const Bytes& data, const ChunkSpec& spec, uint64_t chunk_bytes,
                      const std::string& what) {
  EncodedChunks a, b;
  try {
    a = encode_chunks(data.data(), data.size(), spec, chunk_bytes, 1);
    b = encode_chunks(data.data(), data.size(), spec, chunk_bytes, 3);
  } catch (const std::exception& e) {
    CHECK_MSG(false, what + ": encode: " + e.what());
    return;
  }
  digest(a.payload.get(), a.size);
  CHECK_MSG(a.payload != nullptr, what);
  CHECK_MSG(same(a, b), what + ": threads change the output");
  const size_t nchunks = (data.size() + chunk_bytes - 1) / chunk_bytes;
  CHECK_MSG(a.table.size() == nchunks, what);
  uint64_t off = 0, csum = 0;
  for (const ChunkEntry& c : a.table) {
    const uint64_t want = std::min<uint64_t>(chunk_bytes, data.size() - off);
    CHECK_MSG(c.rsize == want, what);
    CHECK_MSG(c.checksum == (xxh64(data.data() + off, want) & 0xffffffffu), what);
    CHECK_MSG(c.csize <= chunk_bound(want, spec), what);
    if (spec.force_method < 0) CHECK_MSG(c.csize <= want + 1, what);
    off += want;
    csum += c.csize;
  }
  CHECK_MSG(csum == a.size, what);
  const ChunkSpec dspec = make_spec(spec.itemsize, int(spec.transform));
  for (int threads : {1, 3}) {
    try {
      CHECK_MSG(decode_all(a, dspec, data.size(), threads) == data, what);
    } catch (const std::exception& e) {
      CHECK_MSG(false, what + ": decode: " + e.what());
    }
  }
}

void test_chunks_roundtrip() {
  Rng rng(1);
  for (const Layout& l : kLayouts) {
    for (int level : {kFast, kDefault, kMax}) {
      const ChunkSpec spec = make_spec(l.itemsize, int(l.t), level, 64);
      const std::string what = "transform=" + std::to_string(int(l.t)) +
                               " itemsize=" + std::to_string(l.itemsize) +
                               " level=" + std::to_string(level);
      const uint64_t cb = uint64_t(l.itemsize) * 4096;
      // weights in several chunks (the last one shorter), zeros, random bytes, one element
      chunks_roundtrip(weights(rng, l.t, l.itemsize, 4096 * 3 + 123), spec, cb, what);
      chunks_roundtrip(Bytes(size_t(l.itemsize) * 5000, 0), spec, cb, what + " zeros");
      Bytes noise(size_t(l.itemsize) * 3000);
      for (auto& v : noise) v = uint8_t(rng.next());
      chunks_roundtrip(noise, spec, cb, what + " noise");
      chunks_roundtrip(weights(rng, l.t, l.itemsize, 1), spec, cb, what + " one element");
      chunks_roundtrip(Bytes(), spec, cb, what + " empty");
      chunks_roundtrip(weights(rng, l.t, l.itemsize, 100), spec, uint64_t(l.itemsize), what +
                       " one element per chunk");
    }
  }
  // Streams long enough for the rANS contexts (>= 64 Ki symbols per stream).
  for (const Layout& l : {Layout{Transform::kBF16, 2}, Layout{Transform::kFP32, 4}}) {
    const ChunkSpec spec = make_spec(l.itemsize, int(l.t), kDefault, 0);
    Bytes data = weights(rng, l.t, l.itemsize, 150000);
    if (l.t == Transform::kFP32)  // BF16 values stored as FP32: zero low bytes
      for (size_t i = 0; i < data.size(); i += 4) data[i] = data[i + 1] = 0;
    chunks_roundtrip(data, spec, 1 << 20, "long streams transform=" + std::to_string(int(l.t)));
  }
  // Every method forced, where it applies.
  for (const Layout& l : {Layout{Transform::kBytes, 1}, Layout{Transform::kBF16, 2},
                          Layout{Transform::kFP32, 4}}) {
    const Bytes data = weights(rng, l.t, l.itemsize, 3000);
    for (int m = 0; m < kNumMethods; ++m) {
      if (Method(m) == Method::kZstd && !zstd::available()) continue;
      const std::string what = "forced method " + std::to_string(m);
      const ChunkSpec spec = make_spec(l.itemsize, int(l.t), kDefault, 0, m);
      if (Method(m) == Method::kConst) {
        chunks_roundtrip(Bytes(data.size(), 9), spec, 1024, what);
        CHECK_THROWS(std::invalid_argument,
                     encode_chunks(data.data(), data.size(), spec, 1024, 1));
      } else {
        chunks_roundtrip(data, spec, 1024, what);
      }
    }
  }
}

void test_chunks_errors() {
  Rng rng(2);
  // Argument checks: make_spec.
  CHECK_THROWS_EXACTLY(FormatError, make_spec(4, int(Transform::kBF16)));
  CHECK_THROWS_EXACTLY(FormatError, make_spec(2, 9));
  CHECK_THROWS_EXACTLY(FormatError, make_spec(0, int(Transform::kBytes)));
  CHECK_THROWS_EXACTLY(FormatError, make_spec(17, int(Transform::kBytes)));
  CHECK_THROWS(std::invalid_argument, make_spec(2, int(Transform::kBF16), 3));
  CHECK_THROWS(std::invalid_argument, make_spec(2, int(Transform::kBF16), -1));
  CHECK_THROWS(std::invalid_argument, make_spec(2, int(Transform::kBF16), 1, 0, kNumMethods));
  CHECK(make_spec(16, int(Transform::kBytes), kMax, 7, 4).row == 7);
  // encode_chunks.
  const ChunkSpec bf16 = make_spec(2, int(Transform::kBF16));
  const Bytes w = weights(rng, Transform::kBF16, 2, 10000);
  CHECK_THROWS(std::invalid_argument, encode_chunks(w.data(), w.size(), bf16, 0, 1));
  CHECK_THROWS(std::invalid_argument, encode_chunks(w.data(), w.size(), bf16, 1001, 1));
  CHECK_THROWS(std::invalid_argument,
               encode_chunks(w.data(), w.size(), bf16, kMaxChunkBytes + 2, 1));
  CHECK_THROWS(std::invalid_argument, encode_chunks(w.data(), w.size() - 1, bf16, 1000, 1));
  CHECK(!throws<std::exception>([&] { encode_chunks(w.data(), w.size(), bf16, kMaxChunkBytes, 0); }));
  {
    const EncodedChunks e = encode_chunks(nullptr, 0, bf16, 1000, 4);
    CHECK(e.size == 0 && e.table.empty() && e.payload);
    Bytes out;
    decode_chunks(e.payload.get(), 0, nullptr, 0, bf16, out.data(), 0, 4, true);
  }

  // Decoding: every chunk of a compressed tensor, one stored chunk (noise) at the end.
  Bytes data = w;
  for (int i = 0; i < 2000; ++i) data.push_back(uint8_t(rng.next()));
  const uint64_t cb = 2000;
  const EncodedChunks e = encode_chunks(data.data(), data.size(), bf16, cb, 2);
  const std::vector<uint64_t> tab = decode_table(e);
  const size_t n = e.table.size();
  CHECK(e.table.back().csize == cb + 1);  // stored
  Bytes out(data.size());
  auto decode = [&](const uint8_t* payload, size_t size, const std::vector<uint64_t>& t,
                    size_t out_size, bool verify = true, int threads = 2) {
    decode_chunks(payload, size, t.data(), t.size() / kDecodeColumns, bf16, out.data(), out_size,
                  threads, verify);
  };
  decode(e.payload.get(), e.size, tab, out.size());
  CHECK(out == data);

  // Bad tables: FormatError (not ChecksumError), before anything is decoded.
  auto bad_table = [&](const std::function<void(std::vector<uint64_t>&)>& spoil,
                       const char* what, size_t out_size) {
    std::vector<uint64_t> t = tab;
    spoil(t);
    CHECK_MSG(throws<FormatError>([&] { decode(e.payload.get(), e.size, t, out_size); }, true),
              what);
  };
  const size_t last = (n - 1) * kDecodeColumns;
  bad_table([&](auto& t) { t[last] = e.size + 1; }, "offset past the end", out.size());
  bad_table([&](auto& t) { t[last + 1] += 1; }, "chunk past the end", out.size());
  bad_table([&](auto& t) { t[last] = ~0ULL; }, "huge offset", out.size());
  bad_table([&](auto& t) { t[1] = ~0ULL; }, "huge csize", out.size());
  bad_table([&](auto& t) { t[2] = kMaxChunkBytes + 2; }, "rsize too big", out.size());
  bad_table([&](auto& t) { t[2] += 1; }, "rsize not whole elements", out.size());
  bad_table([&](auto&) {}, "sizes do not add up (short)", out.size() - 2);
  bad_table([&](auto&) {}, "sizes do not add up (long)", out.size() + 2);
  bad_table([&](auto& t) { t.resize(t.size() - kDecodeColumns); }, "chunk missing", out.size());

  // A wrong checksum in the table: ChecksumError, unless verification is off.
  {
    std::vector<uint64_t> t = tab;
    t[3] ^= 1;
    CHECK_THROWS_EXACTLY(ChecksumError, decode(e.payload.get(), e.size, t, out.size()));
    t[3] = tab[3] | (1ULL << 40);  // the high half of the column must be zero
    CHECK_THROWS_EXACTLY(ChecksumError, decode(e.payload.get(), e.size, t, out.size()));
    decode(e.payload.get(), e.size, t, out.size(), false);
    CHECK(out == data);
  }
  // A flipped byte in the stored chunk decodes, and only the checksum catches it.
  Bytes p(e.payload.get(), e.payload.get() + e.size);
  {
    Bytes q = p;
    q[tab[last] + 10] ^= 0x10;
    CHECK_THROWS_EXACTLY(ChecksumError, decode(q.data(), q.size(), tab, out.size()));
    decode(q.data(), q.size(), tab, out.size(), false);
    CHECK(out != data);
  }
  // Any flipped byte of the coded chunks: FormatError (ChecksumError included) or the exact
  // data (bits that the format ignores), never wrong data; with verify off, never a crash.
  int other = 0, wrong = 0;
  for (size_t i = 0; i < tab[last]; i += 1 + tab[last] / 400) {
    Bytes q = p;
    q[i] ^= uint8_t(1 + rng.below(255));
    for (bool verify : {true, false}) {
      try {
        decode(q.data(), q.size(), tab, out.size(), verify, 1);
        if (verify && out != data) ++wrong;
      } catch (const FormatError&) {
      } catch (...) {
        ++other;
      }
    }
  }
  CHECK(other == 0);
  CHECK(wrong == 0);
  // Truncated payload.
  CHECK_THROWS_EXACTLY(FormatError, decode(p.data(), p.size() - 1, tab, out.size()));
  // Corrupt table entries that lie inside the file: FormatError of some kind.
  {
    std::vector<uint64_t> t = tab;
    std::swap(t[0], t[kDecodeColumns]);  // chunks 0 and 1 swapped
    std::swap(t[1], t[kDecodeColumns + 1]);
    CHECK_THROWS(FormatError, decode(p.data(), p.size(), t, out.size()));
    t = tab;
    t[kDecodeColumns + 1] -= 1;  // chunk 1 cut short
    CHECK_THROWS(FormatError, decode(p.data(), p.size(), t, out.size()));
    t = tab;
    t[0] += 1;  // chunk 0 starts one byte late
    CHECK_THROWS(FormatError, decode(p.data(), p.size(), t, out.size()));
  }
}

// ---------------------------------------------------------------- predictors, references

// Encode data against ref (the output is not part of the digest: a new feature), decode with
// the reference, check bytes; returns the coded size.
size_t ref_roundtrip(const Bytes& data, const Bytes& ref, const ChunkSpec& spec, uint64_t cb,
                     const std::string& what) {
  EncodedChunks a, b;
  try {
    a = encode_chunks(data.data(), data.size(), spec, cb, 1, ref.data(), ref.size());
    b = encode_chunks(data.data(), data.size(), spec, cb, 3, ref.data(), ref.size());
  } catch (const std::exception& e) {
    CHECK_MSG(false, what + ": encode: " + e.what());
    return 0;
  }
  CHECK_MSG(a.size == b.size && std::memcmp(a.payload.get(), b.payload.get(), a.size) == 0,
            what + ": threads change the output");
  std::vector<uint64_t> tab;
  uint64_t off = 0;
  bool conditioned = false;
  for (const auto& e : a.table) {
    tab.insert(tab.end(), {off, e.csize, e.rsize, e.checksum});
    conditioned = conditioned || a.payload.get()[off] == kConditioned;
    off += e.csize;
  }
  Bytes out(data.size(), 0xAB);
  try {
    decode_chunks(a.payload.get(), a.size, tab.data(), a.table.size(), spec, out.data(),
                  out.size(), 2, true, ref.data(), ref.size());
    CHECK_MSG(out == data, what);
  } catch (const std::exception& e) {
    CHECK_MSG(false, what + ": decode: " + e.what());
  }
  if (conditioned) {  // without the reference: a clear FormatError, never garbage
    CHECK_THROWS(FormatError, decode_chunks(a.payload.get(), a.size, tab.data(), a.table.size(),
                                            spec, out.data(), out.size(), 1, true));
    Bytes other = ref;  // the wrong reference: ChecksumError
    for (auto& v : other) v = uint8_t(v + 1);
    if (!other.empty())
      CHECK_THROWS(FormatError, decode_chunks(a.payload.get(), a.size, tab.data(),
                                              a.table.size(), spec, out.data(), out.size(), 1,
                                              true, other.data(), other.size()));
  }
  return a.size;
}

void test_predict() {
  Rng rng(21);
  for (int itemsize : {1, 2, 4, 8}) {
    const size_t n = 1000;
    Bytes x(n * size_t(itemsize)), r(x.size()), res(x.size()), back(x.size());
    for (int kind = 0; kind < 3; ++kind) {  // random, equal, wrap-around (0 vs all ones)
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = uint8_t(rng.next());
        r[i] = kind == 0 ? uint8_t(rng.next()) : kind == 1 ? x[i] : uint8_t(0xFF);
        if (kind == 2) x[i] = (i / size_t(itemsize)) % 2 ? 0 : 0xFF;
      }
      for (Predictor p : {Predictor::kXor, Predictor::kSub}) {
        predict(p, itemsize, x.data(), r.data(), n, res.data());
        unpredict(p, itemsize, res.data(), r.data(), n, back.data());
        CHECK_MSG(back == x, "predict round trip itemsize=" + std::to_string(itemsize));
        if (kind == 1) CHECK(std::all_of(res.begin(), res.end(), [](uint8_t v) { return v == 0; }));
      }
      predict(Predictor::kSub, itemsize, x.data(), r.data(), n, res.data());
      Bytes lens(n), bits, zz(x.size());
      bitlen_split(itemsize, res.data(), n, lens.data(), bits);
      CHECK(bits.size() == bitlen_bytes(itemsize, lens.data(), n));
      bitlen_merge(itemsize, lens.data(), bits.data(), bits.size(), n, zz.data());
      CHECK_MSG(zz == res, "bit-length round trip itemsize=" + std::to_string(itemsize));
      if (!bits.empty())
        CHECK_THROWS(FormatError, bitlen_merge(itemsize, lens.data(), bits.data(),
                                               bits.size() - 1, n, zz.data()));
    }
    Bytes big(4, uint8_t(8 * itemsize + 1));
    CHECK_THROWS(FormatError, bitlen_bytes(itemsize, big.data(), big.size()));
  }
  CHECK_THROWS(std::invalid_argument, make_spec(4, int(Transform::kFP32), kDefault, 0, -1, 4));
  // Chunks against a reference: every layout and level, a slowly drifting "next checkpoint",
  // an identical one, an unrelated one, and every predictor forced.
  for (const Layout& l : kLayouts) {
    for (int level : {kFast, kDefault, kMax}) {
      const std::string what = "ref transform=" + std::to_string(int(l.t)) +
                               " itemsize=" + std::to_string(l.itemsize) +
                               " level=" + std::to_string(level);
      const uint64_t cb = uint64_t(l.itemsize) * 4096;
      const size_t n = 4096 * 2 + 77;
      const Bytes prev = weights(rng, l.t, l.itemsize, n);
      Bytes next = prev;
      for (size_t i = 0; i < next.size(); i += size_t(l.itemsize))
        if (rng.below(3)) next[i] = uint8_t(next[i] + rng.below(5) - 2);
      for (int pred = -1; pred < kNumPredictors; ++pred) {
        const ChunkSpec spec = make_spec(l.itemsize, int(l.t), level, 64, -1, pred);
        const std::string w = what + " predictor=" + std::to_string(pred);
        ref_roundtrip(next, prev, spec, cb, w + " drift");
        ref_roundtrip(prev, prev, spec, cb, w + " same");
        ref_roundtrip(weights(rng, l.t, l.itemsize, n), prev, spec, cb, w + " unrelated");
        Bytes noise(prev.size());
        for (auto& v : noise) v = uint8_t(rng.next());
        ref_roundtrip(noise, prev, spec, cb, w + " noise");
        ref_roundtrip(Bytes(), Bytes(), spec, cb, w + " empty");
      }
    }
  }
  // A blob that grew (a JSON log): zstd with the reference as its dictionary.
  if (zstd::available()) {
    std::string log;
    for (int i = 0; i < 300; ++i)
      log += "{\"step\": " + std::to_string(10 * i) + ", \"loss\": " + std::to_string(rng.uniform()) + "},\n";
    const Bytes prev(log.begin(), log.end());
    for (int i = 0; i < 30; ++i) log += "{\"step\": " + std::to_string(5000 + i) + "},\n";
    const Bytes next(log.begin(), log.end());
    const ChunkSpec spec = make_spec(1, int(Transform::kBytes), kDefault, 0);
    for (uint64_t cb : {uint64_t(1) << 20, uint64_t(4096)}) {
      const size_t with = ref_roundtrip(next, prev, spec, cb, "grown log cb=" + std::to_string(cb));
      const EncodedChunks indep = encode_chunks(next.data(), next.size(), spec, cb, 1);
      CHECK_MSG(with < indep.size / 3, std::to_string(with) + " vs " + std::to_string(indep.size));
    }
    const EncodedChunks a = encode_chunks(next.data(), next.size(), spec, 1 << 20, 1, prev.data(),
                                          prev.size());
    CHECK(a.payload.get()[0] == kConditioned && a.payload.get()[1] == 0);
  }
  // A drifting FP32 tensor long enough for contexts: the automatic choice beats independent.
  {
    const size_t n = 300000;
    const Bytes prev = weights(rng, Transform::kFP32, 4, n);
    Bytes next = prev;
    for (size_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, next.data() + 4 * i, 4);
      f += float(rng.normal() * 1e-4);
      std::memcpy(next.data() + 4 * i, &f, 4);
    }
    const ChunkSpec spec = make_spec(4, int(Transform::kFP32), kDefault, 0);
    const size_t with = ref_roundtrip(next, prev, spec, 1 << 20, "long fp32 drift");
    const EncodedChunks indep = encode_chunks(next.data(), next.size(), spec, 1 << 20, 1);
    CHECK_MSG(with < indep.size, std::to_string(with) + " vs " + std::to_string(indep.size));
    // A conditioned payload with a bad predictor byte or a plain flag outside XOR.
    EncodedChunks a = encode_chunks(next.data(), next.size(), spec, 1 << 20, 1, prev.data(),
                                    prev.size());
    CHECK(a.payload.get()[0] == kConditioned);
    uint64_t tab[4] = {0, a.size, next.size(), a.table[0].checksum};
    Bytes out(next.size());
    for (uint8_t bad : {uint8_t(0), uint8_t(kNumPredictors), uint8_t(0x7f)}) {
      const uint8_t keep = a.payload.get()[1];
      a.payload.get()[1] = bad;
      CHECK_THROWS(FormatError, decode_chunks(a.payload.get(), a.size, tab, 1, spec, out.data(),
                                              out.size(), 1, true, prev.data(), prev.size()));
      a.payload.get()[1] = keep;
    }
    CHECK_THROWS(FormatError, decode_chunks(a.payload.get(), a.size, tab, 1, spec, out.data(),
                                            out.size(), 1, true, prev.data(), prev.size() - 4));
    Bytes bigger(prev.size() + 4, 0);  // not the entry's size: read as a dictionary, not aligned
    CHECK_THROWS(FormatError, decode_chunks(a.payload.get(), a.size, tab, 1, spec, out.data(),
                                            out.size(), 1, true, bigger.data(), bigger.size()));
    for (size_t cut : {size_t(1), size_t(2), size_t(5), a.size / 2}) {
      tab[1] = cut;
      CHECK_THROWS(FormatError, decode_chunks(a.payload.get(), a.size, tab, 1, spec, out.data(),
                                              out.size(), 1, true, prev.data(), prev.size()));
    }
  }
}

void test_xxh64() {
  // Reference values of XXH64 (seed 0).
  CHECK(xxh64(nullptr, 0) == 0xEF46DB3751D8E999ULL);
  CHECK(xxh64(reinterpret_cast<const uint8_t*>("abc"), 3) == 0x44BC2CF5AD770999ULL);
  CHECK(chunk_checksum(reinterpret_cast<const uint8_t*>("abc"), 3) == 0xAD770999ULL);
}

}  // namespace

int main() {
  run("xxh64", test_xxh64);
  run("rans models", test_rans_models);
  run("rans distributions", test_rans_distributions);
  run("rans corrupt", test_rans_corrupt);
  run("rans_indexed", test_rans_indexed);
  run("cm", test_cm);
  run("chunks roundtrip", test_chunks_roundtrip);
  run("chunks errors", test_chunks_errors);
  run("predictors, references", test_predict);
  std::printf("%d checks, %d failed (zstd %s)\n", g_checks, g_failures,
              zstd::available() ? "available" : "not available");
  std::printf("digest %016" PRIx64 "\n", g_digest);
  return g_failures ? 1 : 0;
}
