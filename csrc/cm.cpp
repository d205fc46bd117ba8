#include "cm.hpp"

namespace wz::cm {

namespace {

// Logistic function 4096 / (1 + e^(-d/256)) sampled every 128 steps, rounded: integer
// interpolation keeps the model identical on every platform (no libm in the loop).
constexpr int kSquashPts[33] = {1,    2,    4,    6,    10,   17,   27,   45,   74,   120,  194,
                                311,  488,  747,  1102, 1546, 2048, 2550, 2994, 3349, 3608, 3785,
                                3902, 3976, 4022, 4051, 4069, 4079, 4086, 4090, 4092, 4094, 4095};

inline int squash(int d) {
  if (d > 2047) return 4095;
  if (d < -2047) return 1;
  int w = d & 127;
  int i = (d >> 7) + 16;
  return (kSquashPts[i] * (128 - w) + kSquashPts[i + 1] * w + 64) >> 7;
}

struct StretchTable {
  int16_t t[4096];
  StretchTable() {  // inverse of squash, by an integer scan
    int pi = 0;
    for (int x = -2047; x <= 2047; ++x) {
      int v = squash(x);
      for (int j = pi; j <= v; ++j) t[j] = int16_t(x);
      pi = v + 1;
    }
    for (int j = pi; j < 4096; ++j) t[j] = 2047;
  }
};
const StretchTable kStretch;

// Adaptive probability: high 22 bits P(1), low 10 bits hit count. The adaptation rate
// starts at 1/1.5 and falls to 1/(limit + 1.5): fast learning, then stable estimates.
constexpr uint32_t kLimit = 255;
struct RateTable {
  int32_t r[1024];
  RateTable() {
    for (int n = 0; n < 1024; ++n) r[n] = int32_t(131072 / (2 * n + 3));  // 2^16 * 2/(2n+3)
  }
};
const RateTable kRate;

inline int p12(uint32_t t) { return int(t >> 20); }
inline void update(uint32_t& t, int y) {
  uint32_t n = t & 1023;
  int64_t p = t >> 10;
  int64_t target = y ? (1 << 22) - 1 : 0;
  p += ((target - p) * kRate.r[n]) >> 16;
  t = (uint32_t(p) << 10) | (n < kLimit ? n + 1 : n);
}

constexpr uint8_t kPrev = 1, kAbove = 2, kSide = 4;
constexpr int kMaxInputs = 5;  // order-0, prev, above, side, bias
constexpr int kLearn = 10;

struct Model {
  uint8_t flags;
  std::vector<uint32_t> t0, t1, t2, t3;
  std::vector<int32_t> w;  // [256 nodes][kMaxInputs]
  int st[kMaxInputs];
  uint32_t* slot[kMaxInputs - 1];
  int nin = 0, pr = 2048;
  int32_t* wsel = nullptr;

  explicit Model(uint8_t f)
      : flags(f),
        t0(256, 1u << 31),
        t1(f & kPrev ? 65536 : 0, 1u << 31),
        t2(f & kAbove ? 65536 : 0, 1u << 31),
        t3(f & kSide ? 65536 : 0, 1u << 31),
        w(256 * kMaxInputs, 22000) {}

  // Probability (12 bits) that the next bit is 1, given node c0 and the byte contexts.
  int predict(uint32_t c0, uint32_t prev, uint32_t above, uint32_t side) {
    nin = 0;
    slot[nin++] = &t0[c0];
    if (flags & kPrev) slot[nin++] = &t1[prev << 8 | c0];
    if (flags & kAbove) slot[nin++] = &t2[above << 8 | c0];
    if (flags & kSide) slot[nin++] = &t3[side << 8 | c0];
    wsel = &w[c0 * kMaxInputs];
    int64_t dot = 0;
    for (int j = 0; j < nin; ++j) {
      st[j] = kStretch.t[p12(*slot[j])];
      dot += int64_t(wsel[j]) * st[j];
    }
    st[nin] = 256;  // bias input
    dot += int64_t(wsel[nin]) * 256;
    int d = int(dot >> 16);
    pr = squash(d < -2047 ? -2047 : d > 2047 ? 2047 : d);
    return pr;
  }

  void learn(int y) {
    int err = ((y << 12) - pr) * kLearn;
    for (int j = 0; j <= nin; ++j) wsel[j] += (st[j] * err) >> 16;
    for (int j = 0; j < nin; ++j) update(*slot[j], y);
  }
};

inline int clamp_p(int p) { return p < 1 ? 1 : p > 4095 ? 4095 : p; }

template <class CodeBit>
void run_model(Model& m, size_t n, const uint8_t* side, uint32_t row, const uint8_t* hist,
               uint8_t* sink, CodeBit code_bit) {
  // hist: the bytes coded so far (input for the encoder, output for the decoder).
  for (size_t i = 0; i < n; ++i) {
    uint32_t prev = i ? hist[i - 1] : 0;
    uint32_t above = (row && i >= row) ? hist[i - row] : 0;
    uint32_t sd = side ? side[i] : 0;
    uint32_t c0 = 1;
    for (int b = 7; b >= 0; --b) {
      int p = clamp_p(m.predict(c0, prev, above, sd));
      int y = code_bit(i, b, p);
      m.learn(y);
      c0 = (c0 << 1) | uint32_t(y);
    }
    if (sink) sink[i] = uint8_t(c0);
  }
}

}  // namespace

bool encode(const uint8_t* in, size_t n, const uint8_t* side, uint32_t row, Bytes& out,
            size_t cap) {
  uint8_t flags = kPrev;
  if (row && row < n) flags |= kAbove;
  else row = 0;
  if (side) flags |= kSide;
  out.clear();
  put_u8(out, flags);
  put_u32(out, row);
  Model m(flags);
  uint32_t x1 = 0, x2 = 0xffffffff;
  bool overflow = false;
  run_model(m, n, side, row, in, nullptr, [&](size_t i, int b, int p) {
    int y = (in[i] >> b) & 1;
    uint32_t xmid = x1 + uint32_t((uint64_t(x2 - x1) * uint32_t(p)) >> 12);
    y ? (x2 = xmid) : (x1 = xmid + 1);
    while (((x1 ^ x2) & 0xff000000) == 0) {
      out.push_back(uint8_t(x2 >> 24));
      x1 <<= 8;
      x2 = (x2 << 8) | 255;
    }
    if (out.size() > cap) overflow = true;
    return y;
  });
  if (overflow) return false;
  for (int k = 0; k < 4; ++k) out.push_back(uint8_t(x1 >> (24 - 8 * k)));
  return out.size() <= cap;
}

void decode(const uint8_t* in, size_t len, const uint8_t* side, uint8_t* out, size_t n) {
  Reader r(in, len);
  uint8_t flags = r.u8();
  uint32_t row = r.u32();
  if (flags & ~(kPrev | kAbove | kSide)) throw FormatError("cm: unknown model flags");
  if (bool(flags & kSide) != (side != nullptr)) throw FormatError("cm: side stream mismatch");
  if (!(flags & kAbove)) row = 0;
  const uint8_t* p = r.pos();
  const size_t avail = r.left();
  if (avail < 4) throw FormatError("cm: stream truncated");
  size_t pos = 0;
  auto next = [&]() -> uint32_t { return pos < avail ? p[pos++] : (pos++, 0u); };
  uint32_t x1 = 0, x2 = 0xffffffff, x = 0;
  for (int k = 0; k < 4; ++k) x = (x << 8) | next();
  Model m(flags);
  run_model(m, n, side, row, out, out, [&](size_t, int, int pr) {
    uint32_t xmid = x1 + uint32_t((uint64_t(x2 - x1) * uint32_t(pr)) >> 12);
    int y = x <= xmid;
    y ? (x2 = xmid) : (x1 = xmid + 1);
    while (((x1 ^ x2) & 0xff000000) == 0) {
      x1 <<= 8;
      x2 = (x2 << 8) | 255;
      x = (x << 8) | next();
    }
    return y;
  });
  if (pos != avail) throw FormatError("cm: stream length mismatch (corrupt stream)");
}

}  // namespace wz::cm
