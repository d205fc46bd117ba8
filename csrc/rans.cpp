#include "rans.hpp"

#include <algorithm>

#include "rans_model.hpp"

namespace wz::rans {

namespace {

constexpr uint32_t kL = 1u << 16;  // states live in [kL, 2^32)

inline uint64_t mulhi64(uint64_t a, uint64_t b) {
  return uint64_t((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Encoder-side symbol: x / freq as the high half of x * rcp_freq with
// rcp_freq = ceil(2^64 / freq). The product overshoots x / freq by less than 2^-32 while
// the fraction of x / freq is at most 1 - 1 / freq, so the quotient is exact for x < 2^32.
// freq == 1 takes rcp = 2^64 - 1, i.e. q = x - 1, with the missing 1 folded into the bias.
struct EncSym {
  uint64_t rcp_freq;
  uint32_t x_max, bias, cmpl_freq;
};

void make_enc_sym(EncSym& e, uint32_t start, uint32_t freq, int scale) {
  const uint32_t M = 1u << scale;
  e.x_max = freq << (32 - scale);  // states at or above it shed 16 bits first
  e.cmpl_freq = M - freq;
  e.rcp_freq = freq < 2 ? ~0ULL : uint64_t(((unsigned __int128)1 << 64) / freq) + 1;
  e.bias = freq < 2 ? start + M - 1 : start;
}

// Decode whole groups of kLanes symbols without bounds checks (see GroupKernel). The state
// is copied to locals: stores through out (bytes) could alias anything reached through s.
template <Source S, bool Wide>
size_t groups_scalar(Decoder::State& s, uint8_t* out, size_t count, const uint8_t* side) {
  const uint32_t* tab = s.tab;
  const uint8_t* syms = s.sym;
  const uint32_t mask = (1u << s.scale) - 1;
  const int scale = s.scale;
  uint32_t ctx_off[256], x[kLanes], prev[kLanes];
  std::memcpy(ctx_off, s.ctx_off, sizeof ctx_off);
  std::memcpy(x, s.x, sizeof x);
  std::memcpy(prev, s.prev, sizeof prev);
  const uint8_t* p = s.p;
  const uint8_t* const end = s.end;
  size_t i = 0;
  for (; count - i >= kLanes && size_t(end - p) >= 2 * kLanes; i += kLanes) {
    const uint32_t pos_off = S == Source::kPos ? ctx_off[s.ctx.pos_ref(s.pos + i)] : 0;
    for (int j = 0; j < kLanes; ++j) {
      uint32_t idx = (x[j] & mask) | pos_off;
      if (S == Source::kPrev) idx |= ctx_off[prev[j]];
      if (S == Source::kSide) idx |= ctx_off[side[i + size_t(j)]];
      const uint32_t e = tab[idx];
      const uint8_t sym = Wide ? syms[idx] : uint8_t(e >> 12);
      out[i + size_t(j)] = sym;
      prev[j] = sym;
      const uint32_t xs = Wide ? (e >> 16) * (x[j] >> scale) + (e & 0xffff)
                               : (e >> 20) * (x[j] >> scale) + (e & 0xfff);
      // Branch-free renormalisation: whether a state takes a word is unpredictable.
      const uint32_t renorm = xs < kL;
      x[j] = (xs << (renorm << 4)) | (load_u16(p) & (0u - renorm));
      p += renorm << 1;
    }
  }
  std::memcpy(s.x, x, sizeof x);
  std::memcpy(s.prev, prev, sizeof prev);
  s.p = p;
  return i;
}

size_t groups_scalar_any(Decoder::State& s, uint8_t* out, size_t count, const uint8_t* side) {
  if (s.sym) return groups_scalar<Source::kNone, true>(s, out, count, side);
  switch (s.ctx.src) {
    case Source::kNone:
      return groups_scalar<Source::kNone, false>(s, out, count, side);
    case Source::kPrev:
      return groups_scalar<Source::kPrev, false>(s, out, count, side);
    case Source::kSide:
      return groups_scalar<Source::kSide, false>(s, out, count, side);
    case Source::kPos:
      return groups_scalar<Source::kPos, false>(s, out, count, side);
  }
  return 0;
}

// Encode one symbol into state x, storing the shed word at ptr[-1] unconditionally (the
// pointer moves only when it is kept: no unpredictable branch).
inline void put_symbol(const EncSym& e, uint32_t& x, uint16_t*& ptr) {
  uint32_t xs = x;
  const bool out = xs >= e.x_max;
  ptr[-1] = uint16_t(xs);
  ptr -= out;
  xs = out ? xs >> 16 : xs;
  const uint32_t q = uint32_t(mulhi64(xs, e.rcp_freq));
  x = xs + e.bias + q * e.cmpl_freq;
}

// Encode in[lo, n) backwards (lo a multiple of kLanes) into the words ending at ptr and the
// states x; tab(i) gives the symbol table of symbol i. Whole groups run with fixed lanes.
template <class Tab>
uint16_t* encode_symbols(const uint8_t* in, size_t lo, size_t n, Tab tab, uint16_t* ptr,
                         uint32_t* x) {
  size_t i = n;
  for (; i % kLanes; --i) put_symbol(tab(i - 1)[in[i - 1]], x[(i - 1) % kLanes], ptr);
  for (; i > lo; i -= kLanes) {
    const size_t g = i - kLanes;
    for (size_t j = kLanes; j-- > 0;) put_symbol(tab(g + j)[in[g + j]], x[j], ptr);
  }
  return ptr;
}

// The kWindow symbols that hold the most frequency over all tables, if they hold 99 % of it
// (a 16-symbol vector then misses the window in under 15 % of cases), else -1.
int register_window(const Model& m) {
  if (m.ctx.src != Source::kNone && m.ctx.src != Source::kPos) return -1;
  uint64_t mass[256];
  for (int s = 0; s < 256; ++s) {
    mass[s] = 0;
    for (int k = 0; k < m.ctx.n; ++k) mass[s] += m.freq[k][s];
  }
  uint64_t total = 0, in = 0, best = 0;
  int base = 0;
  for (int s = 0; s < 256; ++s) total += mass[s];
  for (int s = 0; s < kWindow; ++s) in += mass[s];
  best = in;
  for (int b = 1; b + kWindow <= 256; ++b) {
    in += mass[b + kWindow - 1] - mass[b - 1];
    if (in > best) best = in, base = b;
  }
  return 100 * best >= 99 * total ? base : -1;
}

}  // namespace

bool encode(const uint8_t* in, size_t n, const uint8_t* side, const Model& m, Bytes& out,
            size_t cap) {
  const Context& c = m.ctx;
  EncSym es[kMaxCtx][256];
  uint32_t fs[kMaxCtx * 256];
  for (int k = 0; k < c.n; ++k) {
    uint32_t start = 0;
    for (int s = 0; s < 256; ++s) {
      fs[k * 256 + s] = m.freq[k][s] | start << 16;
      if (m.freq[k][s]) {
        make_enc_sym(es[k][s], start, m.freq[k][s], m.scale);
        start += m.freq[k][s];
      }
    }
  }
  // Symbol tables by reference byte (or segment, for kPos).
  const EncSym* by_ref[256];
  for (int v = 0; v < 256; ++v) by_ref[v] = es[c.src == Source::kNone ? 0 : c.of(uint32_t(v))];

  out.clear();
  put_model(m, out);
  const size_t header = out.size() + 4 * kLanes;
  // Reused per thread: steady-state encoding allocates nothing. One spare slot in front
  // takes the dummy store of the last symbol, kEncodeSlack more the AVX2 encoder's scratch.
  thread_local std::vector<uint16_t> words;
  if (words.size() < n + 1 + kEncodeSlack) words.resize(n + 1 + kEncodeSlack);
  uint16_t* const end = words.data() + n + 1 + kEncodeSlack;
  uint32_t x[kLanes];
  for (auto& v : x) v = kL;
  // Symbols are encoded in reverse so that the decoder reads forward. The SIMD encoder,
  // where there is one, takes the whole groups after the scalar code did the last one.
  static const EncodeKernel simd = simd_encoder();
  const size_t lo = simd ? n - n % kLanes : 0;
  uint16_t* ptr = end;
  switch (c.src) {
    case Source::kNone:
      ptr = encode_symbols(in, lo, n, [&](size_t) { return es[0]; }, ptr, x);
      break;
    case Source::kPrev:
      ptr = encode_symbols(
          in, lo, n, [&](size_t i) { return by_ref[i >= kLanes ? in[i - kLanes] : 0]; }, ptr, x);
      break;
    case Source::kSide:
      ptr = encode_symbols(in, lo, n, [&](size_t i) { return by_ref[side[i]]; }, ptr, x);
      break;
    case Source::kPos:
      ptr = encode_symbols(in, lo, n, [&](size_t i) { return by_ref[c.pos_ref(i)]; }, ptr, x);
      break;
  }
  if (simd) ptr = simd(EncTable{fs, c, m.scale, register_window(m)}, in, lo, side, ptr, x);
  const size_t nwords = size_t(end - ptr);
  const size_t total = header + 2 * nwords;
  if (total > cap) return false;
  const size_t off = out.size();
  out.resize(total);
  for (int j = 0; j < kLanes; ++j) store_u32(&out[off + 4 * size_t(j)], x[j]);
  std::memcpy(&out[off + 4 * kLanes], ptr, 2 * nwords);
  return true;
}

Decoder::Decoder(const uint8_t* in, size_t len) {
  Reader r(in, len);
  Model m;
  get_model(r, m);
  const uint32_t M = 1u << m.scale;
  const bool wide = m.scale > kPackedScale;
  tab_.resize(size_t(m.ctx.n) * M);
  if (wide) sym_.resize(M + 3);  // + 3: SIMD decoders read symbols as 32-bit words
  for (int k = 0; k < m.ctx.n; ++k) {
    uint32_t* t = tab_.data() + size_t(k) * M;
    uint32_t start = 0;
    for (uint32_t s = 0; s < 256; ++s)
      for (uint32_t f = m.freq[k][s], b = 0; b < f; ++b, ++start) {
        t[start] = wide ? f << 16 | b : f << 20 | s << 12 | b;
        if (wide) sym_[start] = uint8_t(s);
      }
  }
  st_.tab = tab_.data();
  st_.sym = wide ? sym_.data() : nullptr;
  st_.scale = m.scale;
  st_.ctx = m.ctx;
  for (int v = 0; v < 256; ++v) st_.ctx_off[v] = uint32_t(m.ctx.of(uint32_t(v))) << m.scale;
  const uint8_t* states = r.take(4 * kLanes);
  for (int j = 0; j < kLanes; ++j) {
    st_.x[j] = load_u32(states + 4 * j);
    st_.prev[j] = 0;
  }
  st_.p = r.pos();
  st_.end = st_.p + r.left();
  st_.pos = 0;
  if (r.left() % 2) throw FormatError("rANS: ragged word stream");
}

void Decoder::decode(uint8_t* out, size_t count, const uint8_t* side) {
  static const GroupKernel simd = simd_kernel();
  if (needs_side() && !side) throw FormatError("rANS: stream needs a side stream");
  size_t i = 0;
  if (st_.pos % kLanes == 0) i = (simd ? simd : groups_scalar_any)(st_, out, count, side);
  State& s = st_;
  const uint32_t mask = (1u << s.scale) - 1;
  for (; i < count; ++i) {  // the tail, one symbol at a time with every read checked
    const size_t j = (s.pos + i) % kLanes;
    uint32_t x = s.x[j];
    uint32_t idx = x & mask;
    if (s.ctx.src == Source::kPrev) idx |= s.ctx_off[s.prev[j]];
    if (s.ctx.src == Source::kSide) idx |= s.ctx_off[side[i]];
    if (s.ctx.src == Source::kPos) idx |= s.ctx_off[s.ctx.pos_ref(s.pos + i)];
    const uint32_t e = s.tab[idx];
    const uint8_t sym = s.sym ? s.sym[idx] : uint8_t(e >> 12);
    out[i] = sym;
    s.prev[j] = sym;
    x = s.sym ? (e >> 16) * (x >> s.scale) + (e & 0xffff)
              : (e >> 20) * (x >> s.scale) + (e & 0xfff);
    if (x < kL) {
      if (s.end - s.p < 2) throw FormatError("rANS: stream truncated");
      x = (x << 16) | load_u16(s.p);
      s.p += 2;
    }
    s.x[j] = x;
  }
  s.pos += count;
}

void Decoder::finish() const {
  if (st_.p != st_.end) throw FormatError("rANS: trailing data");
  for (int j = 0; j < kLanes; ++j)
    if (st_.x[j] != kL) throw FormatError("rANS: final state mismatch (corrupt stream)");
}

}  // namespace wz::rans
