// Seed corpora of the csrc harnesses, in their frames (frames.hpp): valid inputs made with
// the real encoders, so that fuzzing starts from streams that decode. Every seed is checked
// to decode before it is written. Usage: make_seeds OUTDIR (writes OUTDIR/<target>/seed_*).
//
// Context models (kPrev, kSide, kPos) are chosen by the encoder only for streams of 64 Ki
// symbols and more, so small seeds with them are made with hand-built models.
#include <cmath>
#include <cstdio>
#include <string>
#include <sys/stat.h>

#include "../../../csrc/cm.hpp"
#include "../../../csrc/rans_indexed.hpp"
#include "../../../csrc/rans_model.hpp"
#include "../../../csrc/zstd_dl.hpp"
#include "frames.hpp"

namespace {

using fz::Bytes;
std::string g_out;
int g_count = 0;

void save(const std::string& target, const Bytes& b) {
  const std::string dir = g_out + "/" + target;
  mkdir(dir.c_str(), 0755);
  char name[64];
  std::snprintf(name, sizeof name, "/seed_%03d", g_count++);
  FILE* f = std::fopen((dir + name).c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(b.data(), 1, b.size(), f);
  std::fclose(f);
}

// Data of the kinds weights files hold, as raw element bytes.
Bytes weights(const fz::Spec& sp, size_t n, int pattern, uint32_t seed) {
  fz::Rng rng(seed);
  Bytes out(n * size_t(sp.itemsize));
  for (size_t i = 0; i < n; ++i) {
    double u1 = (rng.next() + 1.0) / 4294967297.0, u2 = rng.next() / 4294967296.0;
    double g = std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307 * u2) * 0.03;
    if (pattern == 1) g = double(int(i % 7) - 3) * 0.25;  // few distinct values
    if (pattern == 2) g = i < n / 2 ? 0.01 * (i % 3) : 4.0 * (i % 3);  // exponents drift
    uint8_t* p = out.data() + i * size_t(sp.itemsize);
    const float f = float(g);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    switch (sp.t) {
      case wz::Transform::kFP32: std::memcpy(p, &f, 4); break;
      case wz::Transform::kFP64: std::memcpy(p, &g, 8); break;
      case wz::Transform::kBF16: fz::put16(p, u >> 16); break;
      case wz::Transform::kFP16: fz::put16(p, (u >> 16 & 0x8000) | ((u >> 13) & 0x7fff)); break;
      case wz::Transform::kFP8: p[0] = uint8_t(u >> 24 | ((u >> 20) & 0x7)); break;
      case wz::Transform::kBytes: {
        const int64_t v = pattern == 0 ? int64_t(rng.below(5)) - 2 : int64_t(i % 300);
        std::memcpy(p, &v, size_t(sp.itemsize));
        break;
      }
    }
  }
  return out;
}

Bytes decode_or_die(const uint8_t* pl, size_t len, const wz::ChunkSpec& spec, size_t nbytes) {
  Bytes out(nbytes + 1);
  wz::Scratch s;
  wz::decode_chunk(pl, len, spec, out.data(), nbytes, s);  // a seed that does not decode: abort
  out.resize(nbytes);
  return out;
}

void chunk_seed(uint8_t sel, const Bytes& payload, size_t nbytes) {
  const wz::ChunkSpec spec = fz::chunk_spec(sel);
  const Bytes raw = decode_or_die(payload.data(), payload.size(), spec, nbytes);
  Bytes f(fz::kChunkHead);
  f[0] = sel;
  fz::put32(&f[1], uint32_t(nbytes));
  fz::put32(&f[5], fz::hash32(raw.data(), raw.size()));
  f.insert(f.end(), payload.begin(), payload.end());
  save("chunk", f);
}

void encoded_chunk(uint8_t sel, const Bytes& raw, int level, int force) {
  wz::ChunkSpec spec = fz::chunk_spec(sel);
  spec.level = level;
  spec.force_method = force;
  wz::Scratch s;
  Bytes out(wz::chunk_bound(raw.size(), spec));
  size_t n;
  try {
    n = wz::encode_chunk(raw.data(), raw.size(), spec, out.data(), s);
  } catch (const std::invalid_argument&) {
    return;  // the forced method cannot code this data
  }
  out.resize(n);
  chunk_seed(sel, out, raw.size());
}

// A model for the symbols in[0, n) with context c: per context, the histogram scaled to
// 2^scale (every present symbol >= 1; a second symbol added where only one is present).
wz::rans::Model hand_model(const uint8_t* in, size_t n, const uint8_t* side, wz::rans::Context c,
                           int scale) {
  wz::rans::Model m;
  m.ctx = c;
  m.scale = scale;
  uint64_t h[wz::rans::kMaxCtx][256] = {};
  for (size_t i = 0; i < n; ++i) {
    uint32_t ref = 0;
    if (c.src == wz::rans::Source::kPrev) ref = i >= size_t(wz::rans::kLanes) ? in[i - wz::rans::kLanes] : 0;
    if (c.src == wz::rans::Source::kSide) ref = side[i];
    if (c.src == wz::rans::Source::kPos) ref = c.pos_ref(i);
    ++h[c.src == wz::rans::Source::kNone ? 0 : c.of(ref)][in[i]];
  }
  const uint32_t M = 1u << scale;
  for (int k = 0; k < c.n; ++k) {
    uint64_t tot = 0;
    int present = 0;
    for (int s = 0; s < 256; ++s) tot += h[k][s], present += h[k][s] != 0;
    if (present < 2) {  // two symbols at least
      h[k][h[k][0] ? 1 : 0] += 1;
      h[k][h[k][7] ? 8 : 7] += 1;
      tot += 2;
    }
    uint32_t sum = 0;
    int big = 0;
    for (int s = 0; s < 256; ++s) {
      m.freq[k][s] = h[k][s] ? std::max<uint32_t>(1, uint32_t(h[k][s] * (M / 2) / tot)) : 0;
      sum += m.freq[k][s];
      if (m.freq[k][s] > m.freq[k][big]) big = s;
    }
    for (; sum > M; --sum) {  // many rare symbols: take the excess from the largest
      for (int s = 0; s < 256; ++s)
        if (m.freq[k][s] > m.freq[k][big]) big = s;
      --m.freq[k][big];
    }
    m.freq[k][big] += M - sum;
  }
  return m;
}

Bytes rans_stream(const Bytes& sym, const uint8_t* side, wz::rans::Context c, int scale) {
  const wz::rans::Model m = hand_model(sym.data(), sym.size(), side, c, scale);
  Bytes out;
  if (!wz::rans::encode(sym.data(), sym.size(), side, m, out, SIZE_MAX)) std::abort();
  return out;
}

void rans_seed(const Bytes& sym, const Bytes& side, wz::rans::Context c, int scale, uint8_t split) {
  Bytes sd(side);
  sd.push_back(0);  // never a null side pointer, even for n = 0
  const Bytes st = rans_stream(sym, sd.data(), c, scale);
  wz::rans::Decoder d(st.data(), st.size());  // must decode
  Bytes chk(sym.size() + 1);
  d.decode(chk.data(), sym.size(), sd.data());
  d.finish();
  Bytes f = {uint8_t(sym.size()), uint8_t(sym.size() >> 8), split};
  f.insert(f.end(), side.begin(), side.end());
  f.insert(f.end(), st.begin(), st.end());
  save("rans", f);
}

void chunk_seeds() {
  for (uint8_t sel = 0; sel < fz::kNumSpecs; ++sel) {
    const fz::Spec sp = fz::kSpecs[sel];
    for (size_t n : {size_t(1), size_t(45), size_t(700)}) {
      const Bytes raw = weights(sp, n, int(n % 3), uint32_t(n * 31 + sel));
      for (int level = 0; level < 3; ++level) encoded_chunk(uint8_t(sel + fz::kNumSpecs * level), raw, level, -1);
      if (n == 45)
        for (int force = 0; force < wz::kNumMethods; ++force) encoded_chunk(sel, raw, 2, force);
    }
  }
  // Several 16 KiB blocks in one chunk (few distinct values: the seed stays small).
  encoded_chunk(6, weights(fz::kSpecs[6], 9000, 1, 5), 1, -1);
  encoded_chunk(4, weights(fz::kSpecs[4], 20000, 2, 6), 2, -1);
  encoded_chunk(1, weights(fz::kSpecs[1], 9000, 1, 7), 1, 2);
  // BF16 with context models in both streams: exponents by position, mantissas by exponent.
  const size_t n = 600;
  Bytes raw = weights(fz::kSpecs[4], n, 2, 9), planes(2 * n);
  uint8_t* wp[2] = {planes.data(), planes.data() + n};
  wz::split_planes(wz::Transform::kBF16, 2, raw.data(), n, wp);
  const Bytes e(planes.begin(), planes.begin() + long(n)), mant(planes.begin() + long(n), planes.end());
  const Bytes s0 = rans_stream(e, nullptr, {wz::rans::Source::kPos, 3, 0xff, 0, 7}, 11);
  const Bytes s1 = rans_stream(mant, e.data(), {wz::rans::Source::kSide, 4, 0xff, 120, 0}, 12);
  Bytes pl = {2, 2, 0, 0, 0, 0};
  fz::put32(&pl[2], uint32_t(s0.size()));
  pl.insert(pl.end(), s0.begin(), s0.end());
  pl.insert(pl.end(), s1.begin(), s1.end());
  chunk_seed(4, pl, raw.size());
}

void rans_seeds() {
  fz::Rng rng(3);
  using S = wz::rans::Source;
  for (size_t n : {size_t(0), size_t(1), size_t(33), size_t(64), size_t(500), size_t(3000)}) {
    Bytes sym(n), side(n);
    for (size_t i = 0; i < n; ++i) {
      side[i] = uint8_t(118 + rng.below(8));
      sym[i] = uint8_t(i < n / 2 ? rng.below(4) : 100 + rng.below(3) * rng.below(3));
    }
    rans_seed(sym, side, {S::kNone, 1, 0xff, 0, 0}, 10, uint8_t(n));
    rans_seed(sym, side, {S::kPrev, 4, 0x03, 0, 0}, 11, uint8_t(n + 1));
    rans_seed(sym, side, {S::kSide, 4, 0xff, 119, 0}, 12, uint8_t(n + 2));
    rans_seed(sym, side, {S::kPos, 2, 0xff, 0, 6}, 9, uint8_t(n + 3));
    if (n >= 500) {  // long tails: scales above 12 (the symbol-table kernels)
      for (size_t i = 0; i < n; ++i) sym[i] = uint8_t(rng.below(256) * rng.below(2));
      rans_seed(sym, side, {S::kNone, 1, 0xff, 0, 0}, 15, 7);
      rans_seed(sym, side, {S::kNone, 1, 0xff, 0, 0}, 8, 9);
    }
  }
}

void cm_seeds() {
  fz::Rng rng(4);
  for (size_t n : {size_t(1), size_t(40), size_t(700), size_t(2500)}) {
    Bytes sym(n), side(n);
    for (size_t i = 0; i < n; ++i) {
      side[i] = uint8_t(120 + rng.below(4));
      sym[i] = uint8_t((side[i] * 3 + rng.below(3) * (i % 5)) & 0xff);
    }
    for (int with_side = 0; with_side < 2; ++with_side)
      for (uint32_t row : {0u, 16u}) {
        Bytes st;
        if (!wz::cm::encode(sym.data(), n, with_side ? side.data() : nullptr, row, st, SIZE_MAX)) std::abort();
        Bytes f = {uint8_t(n), uint8_t(n >> 8), uint8_t(with_side)};
        if (with_side) f.insert(f.end(), side.begin(), side.end());
        f.insert(f.end(), st.begin(), st.end());
        save("cm", f);
      }
  }
}

void indexed_seed(int mode, size_t n_cdfs, size_t max_len, uint32_t nlow, uint32_t seed, bool skewed) {
  fz::Rng rng(seed);
  Bytes f = {uint8_t(mode), uint8_t(n_cdfs - 1), uint8_t(max_len - 3)};
  for (size_t k = 0; k < n_cdfs; ++k) {
    f.push_back(uint8_t(rng.below(256)));  // length selector
    f.push_back(uint8_t(rng.below(256)));  // offset
    for (size_t j = 0; j + 1 < max_len; ++j) f.push_back(uint8_t(skewed ? (j == 1 ? 255 : 0) : rng.below(256)));
  }
  f.push_back(uint8_t(nlow)), f.push_back(uint8_t(nlow >> 8));
  for (int i = 0; i < 4; ++i) f.push_back(uint8_t(rng.below(256)));
  fz::IndexedFrame fr;
  if (!fz::parse_indexed(f.data(), f.size(), fr)) std::abort();
  std::vector<int32_t> sym(fr.n);
  for (size_t i = 0; i < fr.n; ++i) {
    const int32_t k = fr.indexes[i], L = fr.lengths[size_t(k)];
    const uint32_t r = rng.below(100);
    // Mostly in range (the likely symbol when skewed), a few escapes of every size.
    const int32_t v = skewed && r < 99 ? 1 : r < 90 ? int32_t(rng.below(uint32_t(L - 2))) :
                      r < 95 ? -1 - int32_t(rng.below(1u << rng.below(20))) : L + int32_t(rng.below(1u << rng.below(24)));
    sym[i] = fr.offsets[size_t(k)] + v;
  }
  wz::rans_indexed::Tables t{fr.cdfs.data(), fr.lengths.data(), fr.offsets.data(), fr.n_cdfs, fr.max_len};
  const wz::Bytes pl = wz::rans_indexed::encode(sym.data(), fr.indexes.data(), fr.n, t);
  std::vector<int32_t> back(fr.n + 1);
  wz::rans_indexed::decode(pl.data(), pl.size(), fr.indexes.data(), fr.n, t, back.data());
  f.insert(f.end(), pl.begin(), pl.end());
  save("rans_indexed", f);
}

void indexed_seeds() {
  indexed_seed(0, 1, 3, 0, 1, false);
  indexed_seed(0, 1, 8, 1, 2, false);
  indexed_seed(0, 3, 12, 40, 3, false);
  indexed_seed(0, 8, 32, 900, 4, false);
  indexed_seed(8, 4, 20, 300, 5, false);
  indexed_seed(0, 2, 16, 2000, 6, true);
  indexed_seed(2, 2, 6, 10, 7, true);  // 65546 symbols: the interleaved coder
}

void transform_seeds() {
  for (uint8_t sel = 0; sel < fz::kNumSpecs; ++sel) {
    Bytes f = {sel};
    const Bytes raw = weights(fz::kSpecs[sel], 40, 0, sel);
    f.insert(f.end(), raw.begin(), raw.end());
    save("transform", f);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds OUTDIR\n");
    return 2;
  }
  g_out = argv[1];
  mkdir(g_out.c_str(), 0755);
  chunk_seeds();
  rans_seeds();
  cm_seeds();
  indexed_seeds();
  transform_seeds();
  std::printf("%d seeds (zstd %s)\n", g_count, wz::zstd::available() ? "available" : "missing");
  return 0;
}
