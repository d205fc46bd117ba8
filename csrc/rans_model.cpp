// Model choice for rANS streams: one pass of statistics, then candidate contexts priced
// from them (entropy, then exact frequencies and table sizes for the winner).
#include "rans_model.hpp"

#include <algorithm>
#include <cmath>
#include <queue>
#include <utility>

namespace wz::rans {

namespace {

// log2(x) and x * log2(x), tabulated for frequencies and for the small counts that make up
// most context histograms: model choice prices many candidates.
struct Log2Tables {
  double lg[4098], xlg[4096];
  Log2Tables() {
    lg[0] = xlg[0] = 0;
    for (int i = 1; i < 4098; ++i) lg[i] = std::log2(double(i));
    for (int i = 1; i < 4096; ++i) xlg[i] = i * lg[i];
  }
  double log2(uint32_t x) const { return x < 4098 ? lg[x] : std::log2(double(x)); }
  double xlog2x(uint64_t x) const { return x < 4096 ? xlg[x] : double(x) * std::log2(double(x)); }
};
const Log2Tables kLog2;

// Order-0 entropy of a histogram, in bits, and its number of present symbols.
double entropy_bits(const uint32_t h[256], int* nsym) {
  uint64_t n = 0;
  double s = 0;
  int k = 0;
  for (int v = 0; v < 256; ++v)
    if (h[v]) {
      n += h[v];
      s += kLog2.xlog2x(h[v]);
      ++k;
    }
  *nsym = k;
  return kLog2.xlog2x(n) - s;
}

// Scale counts to frequencies summing to 1 << scale, each in [1, 1 << scale): a table needs
// two symbols, so a constant (or empty) context gets a dummy second one. The rounding error
// is spent one unit at a time where it costs the fewest bits.
void normalize(const uint32_t hist[256], int scale, uint32_t freq[256]) {
  const uint32_t M = 1u << scale;
  uint64_t n = 0;
  int nsym = 0, top = 0;
  for (int s = 0; s < 256; ++s) {
    freq[s] = 0;
    if (!hist[s]) continue;
    n += hist[s];
    ++nsym;
    if (hist[s] > hist[top]) top = s;
  }
  if (nsym < 2) {
    freq[top] = M - 1;
    freq[top ^ 1] = 1;
    return;
  }
  int64_t diff = M;
  for (int s = 0; s < 256; ++s)
    if (hist[s]) {
      freq[s] = uint32_t(std::max<uint64_t>(1, (uint64_t(hist[s]) * M + n / 2) / n));
      diff -= freq[s];
    }
  const int step = diff > 0 ? 1 : -1;
  // Bits saved by f -> f + 1 (or lost by f -> f - 1): pick the largest saving / least loss.
  auto delta = [&](int s) {
    const uint32_t f = freq[s];
    return step > 0 ? hist[s] * (kLog2.log2(f + 1) - kLog2.log2(f))
                    : -hist[s] * (kLog2.log2(f) - kLog2.log2(f - 1));
  };
  std::priority_queue<std::pair<double, int>> q;
  for (int s = 0; s < 256; ++s)
    if (hist[s] && (step > 0 || freq[s] > 1)) q.push({delta(s), s});
  for (; diff != 0; diff -= step) {
    int s = q.top().second;
    q.pop();
    freq[s] += uint32_t(step);
    if (step > 0 || freq[s] > 1) q.push({delta(s), s});
  }
}

// Exact cost in bits of coding hist with freq.
double cost_bits(const uint32_t hist[256], const uint32_t freq[256], int scale) {
  double bits = 0;
  for (int s = 0; s < 256; ++s)
    if (hist[s]) bits += hist[s] * (scale - kLog2.log2(freq[s]));
  return bits;
}

constexpr size_t kStateBytes = 4 * kLanes;  // final encoder states
// Decode-table entries in use at a time (32 KiB): two streams' tables share L1 when decoding.
constexpr size_t kMaxEntries = 8192;

// 256-bin histogram; sub-histograms hide store-to-load latency on repeated symbols.
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

// Bits of coding h with its best table at this scale (frequencies and grouping out).
double price_table(const uint32_t h[256], int scale, uint32_t f[256], uint8_t* group) {
  double best = 1e300;
  uint32_t t[256], hq[256];
  for (int g = 0; g <= kMaxGroup; g += g ? 1 : 2) {  // pairs never won
    std::fill(hq, hq + 256, 0u);
    for (int s = 0; s < 256; ++s) hq[s >> g] += h[s];
    if (g && std::find(hq, hq + (256 >> g), 0u) != hq + (256 >> g)) continue;  // not dense
    normalize(hq, scale - g, t);
    for (int s = 255; s >= 0; --s) t[s] = t[s >> g];
    const double bits = cost_bits(h, t, scale) + double(table_bits(t, g));
    if (bits < best) {
      best = bits;
      std::copy(t, t + 256, f);
      *group = uint8_t(g);
    }
  }
  return best;
}

}  // namespace

void gather_stats(const uint8_t* in, size_t n, Family family, const uint8_t* side,
                  const uint32_t side_hist[256], Stats& st) {
  if (n < 65536 || (family == Family::kSide && !side)) family = Family::kNone;
  st.family = family;
  if (family == Family::kNone) return histogram(in, n, st.hist);
  std::fill(&st.fine[0][0], &st.fine[0][0] + Stats::kFine * 256, 0u);
  if (family == Family::kPosition) {
    st.fs = 5;
    while ((size_t(8) << st.fs) < n) ++st.fs;
    for (size_t f = 0; f << st.fs < n; ++f)
      histogram(in + (f << st.fs), std::min(n - (f << st.fs), size_t(1) << st.fs), st.fine[f]);
  } else if (family == Family::kSide) {
    // Class of each side byte (a clamp the compiler vectorises), then a histogram of
    // class << 8 | symbol, block by block: twice as fast as one loop of table lookups.
    st.lo = std::clamp(int(std::max_element(side_hist, side_hist + 256) - side_hist) - 3, 0, 248);
    uint32_t* h0 = &st.fine[0][0];
    uint32_t h1[Stats::kFine * 256] = {};  // a second copy, as in histogram()
    uint16_t idx[4096];
    for (size_t b = 0; b < n; b += 4096) {
      const size_t m = std::min<size_t>(4096, n - b);
      for (size_t i = 0; i < m; ++i)
        idx[i] = uint16_t(std::clamp(int(side[b + i]) - st.lo, 0, 7) << 8 | in[b + i]);
      size_t i = 0;
      for (; i + 2 <= m; i += 2) h0[idx[i]]++, h1[idx[i + 1]]++;
      if (i < m) h0[idx[i]]++;
    }
    for (int j = 0; j < Stats::kFine * 256; ++j) h0[j] += h1[j];
  } else {  // kLowZeros: class of the state's previous symbol = its trailing zero bits
    uint8_t lut[256];
    for (int v = 0; v < 256; ++v) lut[v] = uint8_t(v ? __builtin_ctz(unsigned(v)) : 8);
    uint32_t h1[Stats::kFine][256] = {};
    size_t i = 0;
    for (; i < std::min<size_t>(n, kLanes); ++i) st.fine[lut[0]][in[i]]++;
    for (; i + 2 <= n; i += 2) {
      st.fine[lut[in[i - kLanes]]][in[i]]++;
      h1[lut[in[i + 1 - kLanes]]][in[i + 1]]++;
    }
    for (; i < n; ++i) st.fine[lut[in[i - kLanes]]][in[i]]++;
    for (int f = 0; f < Stats::kFine; ++f)
      for (int v = 0; v < 256; ++v) st.fine[f][v] += h1[f][v];
  }
  for (int v = 0; v < 256; ++v) {
    st.hist[v] = 0;
    for (int f = 0; f < Stats::kFine; ++f) st.hist[v] += st.fine[f][v];
  }
}

size_t choose_model(const Stats& st, Model& m) {
  // Exact size of the model with context c for the class histograms h, at the best scale:
  // coarser frequencies cost some coding loss but make smaller tables, both in the stream
  // and in L1 (the tables in use at a time stay within kMaxEntries, for decoding speed).
  auto price = [&](const Context& c, const uint32_t (*h)[256], Model& out) {
    double best = 1e300;
    Model t;
    t.ctx = c;
    const size_t live = c.src == Source::kPos ? 1 : c.n;
    int top = kPackedScale;
    while ((live << top) > kMaxEntries) --top;
    auto attempt = [&](double margin) {
      double bits = 48;  // the header
      for (int k = 0; k < c.n; ++k) bits += price_table(h[k], t.scale, t.freq[k], &t.group[k]);
      if (bits / 8 < margin * best) best = bits / 8, out = t;
    };
    // One scale lower only ever paid for single tables (small streams); lower never did.
    for (t.scale = top; t.scale >= top - (c.n == 1); --t.scale) attempt(1);
    // A long tail that the packed scales cannot resolve (>1% above the entropy) tries the
    // wide ones, which must save 1% to pay for their slower decoding.
    int nsym;
    if (c.src == Source::kNone && best > 1.01 * entropy_bits(h[0], &nsym) / 8 + 64)
      for (t.scale = kPackedScale + 1; t.scale <= kMaxScale; ++t.scale) attempt(0.99);
    return best + 1;  // the table padding
  };
  const double order0 = price(Context{}, &st.hist, m);
  if (st.family == Family::kNone) return kStateBytes + size_t(order0);

  // Every candidate context is a union of fine classes: f holds a reference byte of each
  // fine class (or its segment), so that Context::of maps it to the candidate's class.
  std::vector<Context> cands;
  int ref[Stats::kFine];
  for (int f = 0; f < Stats::kFine; ++f) ref[f] = f;
  if (st.family == Family::kPosition) {  // merge the 8 segments 1, 2 or 4 at a time
    for (int d = 0; d <= 2; ++d)
      for (int k = 2; k <= std::min(kMaxCtx, 8 >> d); ++k)
        cands.push_back({Source::kPos, uint8_t(k), 0xff, 0, uint8_t(st.fs + d)});
  } else if (st.family == Family::kLowZeros) {  // the previous symbol has t low zero bits
    for (int f = 0; f < Stats::kFine; ++f) ref[f] = f < 8 ? 1 << f : 0;
    for (int t = 1; t <= 8; ++t)
      cands.push_back({Source::kPrev, 2, uint8_t((1u << t) - 1), 0, 0});
  } else {  // kSide: up to 4 classes of side values around the most frequent one
    for (int f = 0; f < Stats::kFine; ++f) ref[f] = f < 8 ? st.lo + f : 256;
    for (int k = 2; k <= kMaxCtx; ++k)
      for (int b = st.lo; b <= st.lo + 8 - k; ++b)
        cands.push_back({Source::kSide, uint8_t(k), 0xff, uint8_t(b), 0});
  }
  uint32_t cls[kMaxCtx][256];
  auto gather = [&](const Context& c) {
    std::fill(&cls[0][0], &cls[0][0] + kMaxCtx * 256, 0u);
    for (int f = 0; f < Stats::kFine; ++f) {
      const int r = c.src == Source::kPos ? ref[f] >> (c.shift - st.fs) : ref[f];
      if (r > 255) continue;  // no such class
      uint32_t* d = cls[c.of(uint32_t(r))];
      for (int s = 0; s < 256; ++s) d[s] += st.fine[f][s];
    }
  };
  // Rank the candidates by entropy plus a rough table cost; then price the winner exactly.
  auto rough = [](const uint32_t hc[256]) {
    int nsym;
    const double bits = entropy_bits(hc, &nsym);
    return bits / 8 + (nsym >= 128 ? 16 : 2 + 1.2 * nsym);  // dense tables are grouped
  };
  double best = rough(st.hist);
  const Context* pick = nullptr;
  for (const Context& c : cands) {
    gather(c);
    double est = 0;
    for (int k = 0; k < c.n; ++k) est += rough(cls[k]);
    if (est < best) best = est, pick = &c;
  }
  if (!pick) return kStateBytes + size_t(order0);
  gather(*pick);
  Model cm;
  const double ctx_size = price(*pick, cls, cm);
  if (ctx_size >= order0) return kStateBytes + size_t(order0);
  m = cm;
  return kStateBytes + size_t(ctx_size);
}

}  // namespace wz::rans
