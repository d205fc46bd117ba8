// SIMD rANS coders: decoders for AVX-512 (16 states per vector) and AVX2 (8 per vector),
// encoders for both. They are compiled per function and picked at run time, so the
// library still runs on any x86-64 (and builds elsewhere, scalar only); their output is
// identical to the scalar code's.
//
// One decoding step for a vector of states: gather the slot entries (one 32-bit gather
// gives freq, offset and symbol), x = freq * (x >> scale) + offset, then the states that
// fell below 2^16 take the next 16-bit words in lane order (AVX-512: expand; AVX2: a
// permutation looked up by the lane mask). On Zen 4 the gathers (~2.5 G lookups/s) bound
// the speed; everything else is kept off the critical path.
// GCC 12 flags its own AVX-512 intrinsics as reading uninitialised values (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <cstdlib>
#include <cstring>

#include "rans.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace wz::rans {

namespace {

using State = Decoder::State;

// AVX2 renormalisation: for each mask of lanes needing a word, lane j takes word number
// popcount(mask & ((1 << j) - 1)) of the 8 words loaded at the stream position.
struct Perm {
  alignas(32) uint32_t idx[256][8];
  Perm() {
    for (int m = 0; m < 256; ++m)
      for (int j = 0, k = 0; j < 8; ++j) idx[m][j] = (m >> j) & 1 ? uint32_t(k++) : 0;
  }
};
const Perm kPerm;

template <Source S, bool Wide>
__attribute__((target("avx2,popcnt"))) size_t groups_avx2(State& s, uint8_t* out,
                                                           size_t count, const uint8_t* side) {
  const int* tab = reinterpret_cast<const int*>(s.tab);
  const __m256i slot_mask = _mm256_set1_epi32((1 << s.scale) - 1);
  const __m128i shift = _mm_cvtsi32_si128(s.scale);
  const __m256i lo8 = _mm256_set1_epi32(0xff), lo12 = _mm256_set1_epi32(0xfff);
  const __m256i lo16 = _mm256_set1_epi32(0xffff);
  const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi32(-1);
  const __m256i cmask = _mm256_set1_epi32(s.ctx.mask), cbase = _mm256_set1_epi32(s.ctx.base);
  const __m256i cmax = _mm256_set1_epi32(s.ctx.n - 1);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256i x[4], prev[4];
  for (int v = 0; v < 4; ++v) {
    x[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.x + 8 * v));
    prev[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.prev + 8 * v));
  }
  const uint8_t* p = s.p;
  size_t i = 0;
  for (; count - i >= kLanes && size_t(s.end - p) >= 2 * kLanes; i += kLanes) {
    __m256i sym[4];
    for (int v = 0; v < 4; ++v) {
      __m256i idx = _mm256_and_si256(x[v], slot_mask);
      if constexpr (S == Source::kPrev || S == Source::kSide) {
        __m256i ref = prev[v];
        if constexpr (S == Source::kSide)
          ref = _mm256_cvtepu8_epi32(
              _mm_loadl_epi64(reinterpret_cast<const __m128i*>(side + i + 8 * v)));
        __m256i c = _mm256_sub_epi32(_mm256_and_si256(ref, cmask), cbase);
        c = _mm256_min_epi32(_mm256_max_epi32(c, zero), cmax);
        idx = _mm256_or_si256(idx, _mm256_sll_epi32(c, shift));
      }
      if constexpr (S == Source::kPos)
        idx = _mm256_or_si256(idx, _mm256_set1_epi32(int(s.ctx_off[s.ctx.pos_ref(s.pos + i)])));
      const __m256i e = _mm256_mask_i32gather_epi32(zero, tab, idx, ones, 4);
      __m256i freq, bias;
      if constexpr (Wide) {
        sym[v] = _mm256_and_si256(
            _mm256_mask_i32gather_epi32(zero, reinterpret_cast<const int*>(s.sym), idx, ones, 1),
            lo8);
        freq = _mm256_srli_epi32(e, 16);
        bias = _mm256_and_si256(e, lo16);
      } else {
        sym[v] = _mm256_and_si256(_mm256_srli_epi32(e, 12), lo8);
        freq = _mm256_srli_epi32(e, 20);
        bias = _mm256_and_si256(e, lo12);
      }
      __m256i xv = _mm256_mullo_epi32(freq, _mm256_srl_epi32(x[v], shift));
      xv = _mm256_add_epi32(xv, bias);
      const __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(xv, 16), zero);
      const int m = _mm256_movemask_ps(_mm256_castsi256_ps(need));
      __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      w = _mm256_permutevar8x32_epi32(
          w, _mm256_load_si256(reinterpret_cast<const __m256i*>(kPerm.idx[m])));
      x[v] = _mm256_blendv_epi8(xv, _mm256_or_si256(_mm256_slli_epi32(xv, 16), w), need);
      p += 2 * _mm_popcnt_u32(unsigned(m));
      if constexpr (S == Source::kPrev) prev[v] = sym[v];
    }
    // 4 x 8 dwords -> 32 bytes: the packs interleave 128-bit halves, the permute undoes it.
    __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(sym[0], sym[1]),
                                    _mm256_packus_epi32(sym[2], sym[3]));
    b = _mm256_permutevar8x32_epi32(b, order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), b);
  }
  for (int v = 0; v < 4; ++v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.x + 8 * v), x[v]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.prev + 8 * v), prev[v]);
  }
  s.p = p;
  return i;
}

// Contexts are computed on bytes (saturating subtract, min), the cheap 128-bit domain.
template <Source S, bool Wide>
__attribute__((target("avx512f,avx512bw,avx512vl,popcnt"))) size_t groups_avx512(
    State& s, uint8_t* out, size_t count, const uint8_t* side) {
  const int* tab = reinterpret_cast<const int*>(s.tab);
  const __m512i slot_mask = _mm512_set1_epi32((1 << s.scale) - 1);
  const __m128i shift = _mm_cvtsi32_si128(s.scale);
  const __m512i lo12 = _mm512_set1_epi32(0xfff), L = _mm512_set1_epi32(1 << 16);
  const __m512i lo16 = _mm512_set1_epi32(0xffff);
  // Gathers merge into their destination: with a zeroed one (kept by the opaque mask) each
  // vector's gather does not wait for whatever last used that register.
  const __m512i zero = _mm512_setzero_si512();
  __mmask16 all = 0xffff;
  asm("" : "+k"(all));
  const __m128i cmask = _mm_set1_epi8(char(s.ctx.mask)), cbase = _mm_set1_epi8(char(s.ctx.base));
  const __m128i cmax = _mm_set1_epi8(char(s.ctx.n - 1));
  __m512i x[2];
  __m128i prev[2];
  for (int v = 0; v < 2; ++v) {
    x[v] = _mm512_loadu_si512(s.x + 16 * v);
    prev[v] = _mm512_cvtepi32_epi8(_mm512_loadu_si512(s.prev + 16 * v));
  }
  const uint8_t* p = s.p;
  size_t i = 0;
  for (; count - i >= kLanes && size_t(s.end - p) >= 2 * kLanes; i += kLanes) {
    for (int v = 0; v < 2; ++v) {
      __m512i idx = _mm512_and_si512(x[v], slot_mask);
      if constexpr (S == Source::kPrev || S == Source::kSide) {
        __m128i c = S == Source::kPrev
                        ? prev[v]
                        : _mm_loadu_si128(reinterpret_cast<const __m128i*>(side + i + 16 * v));
        c = _mm_min_epu8(_mm_subs_epu8(_mm_and_si128(c, cmask), cbase), cmax);
        idx = _mm512_or_si512(idx, _mm512_sll_epi32(_mm512_cvtepu8_epi32(c), shift));
      }
      if constexpr (S == Source::kPos)
        idx = _mm512_or_si512(idx, _mm512_set1_epi32(int(s.ctx_off[s.ctx.pos_ref(s.pos + i)])));
      const __m512i e = _mm512_mask_i32gather_epi32(zero, all, idx, tab, 4);
      __m128i sym;
      __m512i xv;
      if constexpr (Wide) {
        sym = _mm512_cvtepi32_epi8(_mm512_mask_i32gather_epi32(zero, all, idx, s.sym, 1));
        xv = _mm512_mullo_epi32(_mm512_srli_epi32(e, 16), _mm512_srl_epi32(x[v], shift));
        xv = _mm512_add_epi32(xv, _mm512_and_si512(e, lo16));
      } else {
        sym = _mm512_cvtepi32_epi8(_mm512_srli_epi32(e, 12));
        xv = _mm512_mullo_epi32(_mm512_srli_epi32(e, 20), _mm512_srl_epi32(x[v], shift));
        xv = _mm512_add_epi32(xv, _mm512_and_si512(e, lo12));
      }
      const __mmask16 need = _mm512_cmplt_epu32_mask(xv, L);
      const __m512i w = _mm512_cvtepu16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      x[v] = _mm512_mask_or_epi32(xv, need, _mm512_slli_epi32(xv, 16),
                                  _mm512_maskz_expand_epi32(need, w));
      p += 2 * _mm_popcnt_u32(need);
      if constexpr (S == Source::kPrev) prev[v] = sym;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 16 * v), sym);
    }
  }
  for (int v = 0; v < 2; ++v) {
    _mm512_storeu_si512(s.x + 16 * v, x[v]);
    _mm512_storeu_si512(s.prev + 16 * v, _mm512_cvtepu8_epi32(prev[v]));
  }
  s.p = p;
  return i;
}

// a / b for 32-bit lanes, exact for the encoder's operands (see encode_avx512).
__attribute__((target("avx512f"))) inline __m256i div_half(__m256i a, __m256i b) {
  return _mm512_cvttpd_epu32(_mm512_div_pd(_mm512_cvtepu32_pd(a), _mm512_cvtepu32_pd(b)));
}
__attribute__((target("avx512f"))) inline __m512i div_u32(__m512i a, __m512i b) {
  const __m256i lo = div_half(_mm512_castsi512_si256(a), _mm512_castsi512_si256(b));
  const __m256i hi = div_half(_mm512_extracti64x4_epi64(a, 1), _mm512_extracti64x4_epi64(b, 1));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// Encoder: per vector, gather freq | start << 16, shed the low 16 bits of the states at or
// above freq << (32 - scale) (compressed to consecutive words, lane order), then
// x += start + (x / freq) * (M - freq); the quotient is exact in double precision (x < 2^32,
// and x / freq is never within 1 / freq >= 2^-15 below an integer, far above rounding).
// Window (t.window >= 0, order 0 and kPos): the entries of symbols window..window + 63 of the
// current table sit in four registers and two permutes replace the gather, the bottleneck
// (~28 cycles per 16 symbols on Zen 4); a vector with a symbol outside the window gathers.
template <Source S, bool Window>
__attribute__((target("avx512f,avx512bw,avx512vl,popcnt"))) uint16_t* encode_avx512(
    const EncTable& t, const uint8_t* in, size_t n, const uint8_t* side, uint16_t* ptr,
    uint32_t* xs) {
  const int* tab = reinterpret_cast<const int*>(t.fs);
  const __m512i lo16 = _mm512_set1_epi32(0xffff), M = _mm512_set1_epi32(1 << t.scale);
  const __m128i top = _mm_cvtsi32_si128(32 - t.scale);
  const __m128i cmask = _mm_set1_epi8(char(t.ctx.mask)), cbase = _mm_set1_epi8(char(t.ctx.base));
  const __m128i cmax = _mm_set1_epi8(char(t.ctx.n - 1));
  const __m512i zero = _mm512_setzero_si512();
  const __m512i wbase = _mm512_set1_epi32(Window ? t.window : 0);
  const __m512i wsize = _mm512_set1_epi32(kWindow), upper = _mm512_set1_epi32(kWindow / 2);
  __m512i w[4] = {zero, zero, zero, zero};
  int wctx = -1;  // the table whose window w holds
  __mmask16 all = 0xffff;
  asm("" : "+k"(all));  // see groups_avx512
  __m512i x[2] = {_mm512_loadu_si512(xs), _mm512_loadu_si512(xs + 16)};
  for (size_t g = n; g > 0;) {
    g -= kLanes;
    const int gctx = S == Source::kPos ? t.ctx.of(t.ctx.pos_ref(g)) : 0;
    if (Window && gctx != wctx) {
      for (int r = 0; r < 4; ++r) w[r] = _mm512_loadu_si512(tab + gctx * 256 + t.window + 16 * r);
      wctx = gctx;
    }
    for (int v = 1; v >= 0; --v) {
      const uint8_t* p = in + g + 16 * v;
      __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      __m512i e;
      const __m512i rel = _mm512_sub_epi32(idx, wbase);  // outside the window: >= 64 unsigned
      if (Window && _mm512_cmplt_epu32_mask(rel, wsize) == 0xffff) {
        const __m512i a = _mm512_permutex2var_epi32(w[0], rel, w[1]);
        const __m512i b = _mm512_permutex2var_epi32(w[2], rel, w[3]);
        e = _mm512_mask_blend_epi32(_mm512_test_epi32_mask(rel, upper), a, b);
      } else {
        if constexpr (S == Source::kPrev || S == Source::kSide) {
          __m128i c = _mm_setzero_si128();  // the first group's kPrev references are 0
          const uint8_t* r = S == Source::kSide ? side + g + 16 * v : g ? p - kLanes : nullptr;
          if (r) c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r));
          c = _mm_min_epu8(_mm_subs_epu8(_mm_and_si128(c, cmask), cbase), cmax);
          idx = _mm512_or_si512(idx, _mm512_slli_epi32(_mm512_cvtepu8_epi32(c), 8));
        }
        if constexpr (S == Source::kPos) idx = _mm512_or_si512(idx, _mm512_set1_epi32(gctx << 8));
        e = _mm512_mask_i32gather_epi32(zero, all, idx, tab, 4);
      }
      const __m512i freq = _mm512_and_si512(e, lo16);
      const __mmask16 out = _mm512_cmpge_epu32_mask(_mm512_srl_epi32(x[v], top), freq);
      const unsigned cnt = _mm_popcnt_u32(out);
      ptr -= cnt;
      _mm256_mask_storeu_epi16(ptr, __mmask16((1u << cnt) - 1),
                               _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(out, x[v])));
      const __m512i xv = _mm512_mask_srli_epi32(x[v], out, x[v], 16);
      x[v] = _mm512_add_epi32(_mm512_add_epi32(xv, _mm512_srli_epi32(e, 16)),
                              _mm512_mullo_epi32(div_u32(xv, freq), _mm512_sub_epi32(M, freq)));
    }
  }
  _mm512_storeu_si512(xs, x[0]);
  _mm512_storeu_si512(xs + 16, x[1]);
  return ptr;
}

// AVX2 encoder: as encode_avx512 with 8 lanes per vector (four per group, lanes 24..31
// first), a gather per vector (no window), the quotient from two 4-lane double divisions, and
// the shed words packed by a shuffle looked up by the lane mask. The packed words are stored
// right-aligned as 16 bytes ending at ptr, so up to 7 words below the new ptr get scratch
// values that later stores overwrite (the buffer has room for them: rans.cpp kEncodeSlack).
struct Pack {
  alignas(16) uint8_t shuf[256][16];
  Pack() {
    for (int m = 0; m < 256; ++m) {
      const int cnt = __builtin_popcount(unsigned(m));
      for (int b = 0; b < 16; ++b) shuf[m][b] = 0x80;  // zero
      for (int j = 0, k = 8 - cnt; j < 8; ++j)
        if ((m >> j) & 1) {
          shuf[m][2 * k] = uint8_t(2 * j);
          shuf[m][2 * k + 1] = uint8_t(2 * j + 1);
          ++k;
        }
    }
  }
};
const Pack kPack;

__attribute__((target("avx2"))) inline __m128i div_avx2_half(__m256d a, __m256d b) {
  return _mm256_cvttpd_epi32(_mm256_div_pd(a, b));
}

// unsigned 32-bit lanes to doubles (AVX2 converts signed ones)
__attribute__((target("avx2"))) inline __m256d u32_pd(__m128i v) {
  const __m128i flip = _mm_set1_epi32(int(0x80000000u));
  return _mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(v, flip)), _mm256_set1_pd(2147483648.0));
}

template <Source S>
__attribute__((target("avx2,popcnt"))) uint16_t* encode_avx2(const EncTable& t, const uint8_t* in,
                                                              size_t n, const uint8_t* side,
                                                              uint16_t* ptr, uint32_t* xs) {
  const int* tab = reinterpret_cast<const int*>(t.fs);
  const __m256i lo16 = _mm256_set1_epi32(0xffff), M = _mm256_set1_epi32(1 << t.scale);
  const __m128i top = _mm_cvtsi32_si128(32 - t.scale);
  const __m128i cmask = _mm_set1_epi8(char(t.ctx.mask)), cbase = _mm_set1_epi8(char(t.ctx.base));
  const __m128i cmax = _mm_set1_epi8(char(t.ctx.n - 1));
  // the low 16 bits of each 32-bit lane, gathered into the low 64 bits of each 128-bit half
  const __m256i low_words = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                             0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  __m256i x[4];
  for (int v = 0; v < 4; ++v) x[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 8 * v));
  for (size_t g = n; g > 0;) {
    g -= kLanes;
    const int gctx = S == Source::kPos ? t.ctx.of(t.ctx.pos_ref(g)) : 0;
    for (int v = 3; v >= 0; --v) {
      const uint8_t* p = in + g + 8 * v;
      __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
      if constexpr (S == Source::kPrev || S == Source::kSide) {
        __m128i c = _mm_setzero_si128();  // the first group's kPrev references are 0
        const uint8_t* r = S == Source::kSide ? side + g + 8 * v : g ? p - kLanes : nullptr;
        if (r) c = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(r));
        c = _mm_min_epu8(_mm_subs_epu8(_mm_and_si128(c, cmask), cbase), cmax);
        idx = _mm256_or_si256(idx, _mm256_slli_epi32(_mm256_cvtepu8_epi32(c), 8));
      }
      if constexpr (S == Source::kPos) idx = _mm256_or_si256(idx, _mm256_set1_epi32(gctx << 8));
      const __m256i e = _mm256_i32gather_epi32(tab, idx, 4);
      const __m256i freq = _mm256_and_si256(e, lo16);
      // x >> (32 - scale) < 2^15 and freq < 2^16: a signed compare is exact
      const __m256i keep = _mm256_cmpgt_epi32(freq, _mm256_srl_epi32(x[v], top));
      const unsigned out = ~unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(keep))) & 0xff;
      const unsigned cnt = unsigned(_mm_popcnt_u32(out));
      const __m256i w = _mm256_shuffle_epi8(x[v], low_words);
      const __m128i words = _mm_unpacklo_epi64(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
      const __m128i packed =
          _mm_shuffle_epi8(words, _mm_load_si128(reinterpret_cast<const __m128i*>(kPack.shuf[out])));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(ptr - 8), packed);
      ptr -= cnt;
      const __m256i xv = _mm256_blendv_epi8(_mm256_srli_epi32(x[v], 16), x[v], keep);
      const __m256d fl = _mm256_cvtepi32_pd(_mm256_castsi256_si128(freq));
      const __m256d fh = _mm256_cvtepi32_pd(_mm256_extracti128_si256(freq, 1));
      const __m128i ql = div_avx2_half(u32_pd(_mm256_castsi256_si128(xv)), fl);
      const __m128i qh = div_avx2_half(u32_pd(_mm256_extracti128_si256(xv, 1)), fh);
      const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(ql), qh, 1);
      x[v] = _mm256_add_epi32(_mm256_add_epi32(xv, _mm256_srli_epi32(e, 16)),
                              _mm256_mullo_epi32(q, _mm256_sub_epi32(M, freq)));
    }
  }
  for (int v = 0; v < 4; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs + 8 * v), x[v]);
  return ptr;
}

uint16_t* encode_avx2_any(const EncTable& t, const uint8_t* in, size_t n, const uint8_t* side,
                          uint16_t* ptr, uint32_t* x) {
  switch (t.ctx.src) {
    case Source::kNone: return encode_avx2<Source::kNone>(t, in, n, side, ptr, x);
    case Source::kPrev: return encode_avx2<Source::kPrev>(t, in, n, side, ptr, x);
    case Source::kSide: return encode_avx2<Source::kSide>(t, in, n, side, ptr, x);
    case Source::kPos: return encode_avx2<Source::kPos>(t, in, n, side, ptr, x);
  }
  return ptr;
}

// Per-source dispatch; calls across target attributes cannot be inlined anyway.
size_t decode_avx2(State& s, uint8_t* out, size_t count, const uint8_t* side) {
  if (s.sym) return groups_avx2<Source::kNone, true>(s, out, count, side);
  switch (s.ctx.src) {
    case Source::kNone: return groups_avx2<Source::kNone, false>(s, out, count, side);
    case Source::kPrev: return groups_avx2<Source::kPrev, false>(s, out, count, side);
    case Source::kSide: return groups_avx2<Source::kSide, false>(s, out, count, side);
    case Source::kPos: return groups_avx2<Source::kPos, false>(s, out, count, side);
  }
  return 0;
}
size_t decode_avx512(State& s, uint8_t* out, size_t count, const uint8_t* side) {
  if (s.sym) return groups_avx512<Source::kNone, true>(s, out, count, side);
  switch (s.ctx.src) {
    case Source::kNone: return groups_avx512<Source::kNone, false>(s, out, count, side);
    case Source::kPrev: return groups_avx512<Source::kPrev, false>(s, out, count, side);
    case Source::kSide: return groups_avx512<Source::kSide, false>(s, out, count, side);
    case Source::kPos: return groups_avx512<Source::kPos, false>(s, out, count, side);
  }
  return 0;
}
uint16_t* encode_avx512_any(const EncTable& t, const uint8_t* in, size_t n, const uint8_t* side,
                            uint16_t* ptr, uint32_t* x) {
  const bool win = t.window >= 0 && t.window + kWindow <= 256;
  switch (t.ctx.src) {
    case Source::kNone:
      return win ? encode_avx512<Source::kNone, true>(t, in, n, side, ptr, x)
                 : encode_avx512<Source::kNone, false>(t, in, n, side, ptr, x);
    case Source::kPrev: return encode_avx512<Source::kPrev, false>(t, in, n, side, ptr, x);
    case Source::kSide: return encode_avx512<Source::kSide, false>(t, in, n, side, ptr, x);
    case Source::kPos:
      return win ? encode_avx512<Source::kPos, true>(t, in, n, side, ptr, x)
                 : encode_avx512<Source::kPos, false>(t, in, n, side, ptr, x);
  }
  return ptr;
}

// The best instruction set here; WEIGHTZIP_SIMD=avx2 or =none caps it (tests compare paths).
int simd_level() {
  const char* env = std::getenv("WEIGHTZIP_SIMD");
  const int cap = !env ? 2 : !std::strcmp(env, "avx2") ? 1 : !std::strcmp(env, "none") ? 0 : 2;
  __builtin_cpu_init();
  if (cap >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return 2;
  return cap >= 1 && __builtin_cpu_supports("avx2") ? 1 : 0;
}

}  // namespace

GroupKernel simd_kernel() {
  const int level = simd_level();
  return level == 2 ? decode_avx512 : level == 1 ? decode_avx2 : nullptr;
}

EncodeKernel simd_encoder() {
  const int level = simd_level();
  return level == 2 ? encode_avx512_any : level == 1 ? encode_avx2_any : nullptr;
}

}  // namespace wz::rans

#else

namespace wz::rans {
GroupKernel simd_kernel() { return nullptr; }
EncodeKernel simd_encoder() { return nullptr; }
}  // namespace wz::rans

#endif
