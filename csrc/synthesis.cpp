// Upsampler and synthesis of an overfitted image decoder (synthesis.hpp has the specification).
//
// Layout: activations are double (exact, see synthesis.hpp). A run of consecutive 1x1 layers is
// fused over chunks of up to kChunk pixels of a row (channel-planar buffers that stay in
// cache); a k x k layer reads a full-resolution image whose planes carry a border of edge
// copies, so its inner loops have no edge cases. The vector loops (synthesis_kernel.inc) are
// compiled for AVX-512, AVX2 and the baseline and picked once at run time.
#include "synthesis.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define WZ_SYN_X86 1
#endif

namespace wz::syn {
namespace {

struct Conv {  // one layer over n pixels (see block() in synthesis_kernel.inc)
  const double* src;
  size_t ldc;  // plane stride of src
  int C, T;    // input channels, taps (k^2)
  const ptrdiff_t* off;
  const double* w;     // [O][C][T]
  const double* init;  // (b << 12) + 2^(k_syn - 1)
  int O;
  double s;  // 2^-k_syn
  bool relu, res;
  double* out;
  size_t ldo, n;
};

struct UpPass {  // one doubling pass (up_width / up_height)
  const double* src;
  size_t h, w, lds;
  double* dst;
  size_t out_n, ldd;
  double t[4], r, s;
};

namespace generic {
constexpr int kLanes = 2;
typedef double V __attribute__((vector_size(16)));
inline V vfloor(V x) {
  for (int i = 0; i < kLanes; ++i) x[i] = __builtin_floor(x[i]);
  return x;
}
#include "synthesis_kernel.inc"
}  // namespace generic

#ifdef WZ_SYN_X86
#ifdef __clang__  // Clang ignores GCC's target pragma; this one applies to every function
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace avx2 {
constexpr int kLanes = 4;
typedef double V __attribute__((vector_size(32)));
inline V vfloor(V x) { return V(_mm256_floor_pd(__m256d(x))); }
#include "synthesis_kernel.inc"
}  // namespace avx2
#ifdef __clang__
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif
namespace avx512 {
constexpr int kLanes = 8;
typedef double V __attribute__((vector_size(64)));
inline V vfloor(V x) {  // the masked form: the plain one trips GCC 12's -Wmaybe-uninitialized
  return V(_mm512_mask_roundscale_pd(__m512d(x), 0xff, __m512d(x),
                                     _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
}
#include "synthesis_kernel.inc"
}  // namespace avx512
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

struct Kernels {
  const char* name;
  void (*conv)(const Conv&);
  void (*up_width)(const UpPass&, double*, double*, double*);
  void (*up_height)(const UpPass&);
  void (*to_pixels)(double*, size_t);
};
constexpr size_t kMaxNB = 16;   // the widest block (avx512: 2 x 8 doubles)
constexpr size_t kChunk = 256;  // pixels per chunk of a fused 1x1 run (a multiple of kMaxNB)

// The best kernels for this CPU; WEIGHTZIP_SIMD=none or =avx2 caps them (tests compare paths).
Kernels pick() {
  const Kernels g{"generic", generic::conv, generic::up_width, generic::up_height, generic::to_pixels};
#ifdef WZ_SYN_X86
  const char* env = std::getenv("WEIGHTZIP_SIMD");
  const std::string cap = env ? env : "";
  if (cap == "none") return g;
  __builtin_cpu_init();
  if (cap != "avx2" && __builtin_cpu_supports("avx512f"))
    return {"avx512", avx512::conv, avx512::up_width, avx512::up_height, avx512::to_pixels};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {"avx2", avx2::conv, avx2::up_width, avx2::up_height, avx2::to_pixels};
#endif
  return g;
}

const Kernels& kernels() {
  static const Kernels k = pick();
  return k;
}

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

void check_shift(int k, const char* name) {
  if (k < 0 || k > kMaxShift) bad(std::string(name) + " must be in [0, 30]");
}

void check_values(const int32_t* p, size_t n, int32_t bound, const std::string& what) {
  int32_t lo = 0, hi = 0;
  for (size_t i = 0; i < n; ++i) lo = std::min(lo, p[i]), hi = std::max(hi, p[i]);
  if (lo < -bound || hi > bound) bad(what + " must be within +-" + std::to_string(bound));
}

// A full-resolution image of C double planes, each with a border of B edge copies on every
// side (rows of stride S), plus slack so that whole blocks may read past the last pixel.
struct Image {
  size_t C = 0, H = 0, W = 0, B = 0, S = 0, plane = 0;
  std::vector<double> buf;
  void init(size_t c, size_t h, size_t w, size_t b) {
    C = c, H = h, W = w, B = b, S = w + 2 * b, plane = (h + 2 * b) * S;
    buf.assign(c * plane + S + 4 * kMaxNB, 0.0);
  }
  double* row(size_t c, size_t y) { return buf.data() + c * plane + (y + B) * S + B; }
  void pad_row(size_t c, size_t y) {  // after row y of plane c is written
    double* r = row(c, y);
    for (size_t i = 1; i <= B; ++i) r[-ptrdiff_t(i)] = r[0], r[W - 1 + i] = r[W - 1];
  }
  void pad_rows() {  // after every row is written
    for (size_t c = 0; c < C; ++c)
      for (size_t i = 1; i <= B; ++i) {
        std::memcpy(row(c, 0) - B - i * S, row(c, 0) - B, S * sizeof(double));
        std::memcpy(row(c, H - 1) - B + i * S, row(c, H - 1) - B, S * sizeof(double));
      }
  }
};

// Where the last layer's rows go: int32 planes [P][H][W] or uint8 pixels [H][W][P].
struct Sink {
  int32_t* act = nullptr;
  uint8_t* px = nullptr;
  size_t H = 0, W = 0, P = 0;
  void (*to_pixels)(double*, size_t) = nullptr;
  // v: n values, writable up to n rounded up to kMaxNB (converted in place for pixels)
  void put(size_t o, size_t y, size_t x0, double* v, size_t n) const {
    if (act) {
      int32_t* d = act + (o * H + y) * W + x0;
      for (size_t i = 0; i < n; ++i) d[i] = int32_t(v[i]);
      return;
    }
    to_pixels(v, n);
    uint8_t* d = px + (y * W + x0) * P + o;
    for (size_t i = 0; i < n; ++i) d[i * P] = uint8_t(v[i]);
  }
};

struct Prepared {  // a layer's parameters as doubles
  int O, C, k, T;
  bool relu, res;
  std::vector<double> w, init;
};

class Synthesis {
 public:
  Synthesis(const std::vector<Layer>& layers, int k_syn, size_t h, size_t w)
      : K_(kernels()), H_(h), W_(w) {
    const double r = k_syn > 0 ? std::ldexp(1.0, k_syn - 1) : 0.0;
    s_ = std::ldexp(1.0, -k_syn);
    for (const Layer& l : layers) {
      Prepared p{l.out, l.in, l.k, l.k * l.k, bool(l.flags & 1), bool(l.flags & 2), {}, {}};
      p.w.assign(l.w, l.w + size_t(p.O) * size_t(p.C) * size_t(p.T));
      for (int o = 0; o < p.O; ++o) p.init.push_back(std::ldexp(double(l.b[o]), kFracA) + r);
      B_ = std::max(B_, size_t(l.k / 2));
      maxc_ = std::max({maxc_, size_t(p.O), size_t(p.C)});
      net_.push_back(std::move(p));
    }
  }

  // x: int32 [n_in][H][W] -> the sink.
  void run(const int32_t* x, const Sink& sink) {
    const size_t n = net_.size();
    Image* cur = nullptr;
    for (size_t i = 0; i < n;) {
      Image* dst = nullptr;
      size_t j = i + 1;
      if (net_[i].k == 1) {
        while (j < n && net_[j].k == 1) ++j;
      } else if (!cur) {  // a first k x k layer reads a bordered copy of x
        cur = &img_[0];
        cur->init(size_t(net_[0].C), H_, W_, B_);
        for (size_t c = 0; c < cur->C; ++c)
          for (size_t y = 0; y < H_; ++y) {
            std::copy(x + (c * H_ + y) * W_, x + (c * H_ + y + 1) * W_, cur->row(c, y));
            cur->pad_row(c, y);
          }
        cur->pad_rows();
      }
      if (j < n) {
        dst = cur == &img_[0] ? &img_[1] : &img_[0];
        dst->init(size_t(net_[j - 1].O), H_, W_, B_);
      }
      if (net_[i].k == 1)
        pointwise(x, cur, i, j, dst, sink);
      else
        spatial(*cur, net_[i], dst, sink);
      cur = dst;
      i = j;
    }
  }

 private:
  void emit(Image* dst, const Sink& sink, size_t o, size_t y, size_t x0, double* v, size_t n) {
    dst ? void(std::memcpy(dst->row(o, y) + x0, v, n * sizeof(double))) : sink.put(o, y, x0, v, n);
  }

  // Layers [i, j), all 1x1, fused over chunks of a row; input x (int32) if src is null.
  void pointwise(const int32_t* x, Image* src, size_t i, size_t j, Image* dst, const Sink& sink) {
    std::vector<double> a(maxc_ * kChunk + kMaxNB, 0.0), b(a.size(), 0.0);
    const ptrdiff_t zero = 0;
    for (size_t y = 0; y < H_; ++y) {
      for (size_t x0 = 0; x0 < W_; x0 += kChunk) {
        const size_t n = std::min(kChunk, W_ - x0);
        for (size_t c = 0; c < size_t(net_[i].C); ++c) {
          double* d = a.data() + c * kChunk;
          if (src) {
            std::memcpy(d, src->row(c, y) + x0, n * sizeof(double));
          } else {
            const int32_t* s = x + (c * H_ + y) * W_ + x0;
            std::copy(s, s + n, d);
          }
        }
        for (size_t l = i; l < j; ++l) {
          const Prepared& p = net_[l];
          K_.conv(Conv{a.data(), kChunk, p.C, 1, &zero, p.w.data(), p.init.data(), p.O, s_,
                       p.relu, p.res, b.data(), kChunk, round_up(n, kMaxNB)});
          std::swap(a, b);
        }
        for (size_t o = 0; o < size_t(net_[j - 1].O); ++o)
          emit(dst, sink, o, y, x0, a.data() + o * kChunk, n);
      }
      if (dst)
        for (size_t o = 0; o < dst->C; ++o) dst->pad_row(o, y);
    }
    if (dst) dst->pad_rows();
  }

  // One k x k layer, row by row.
  void spatial(Image& src, const Prepared& p, Image* dst, const Sink& sink) {
    const ptrdiff_t r = p.k / 2, S = ptrdiff_t(src.S);
    std::vector<ptrdiff_t> off;
    for (ptrdiff_t dy = -r; dy <= r; ++dy)
      for (ptrdiff_t dx = -r; dx <= r; ++dx) off.push_back(dy * S + dx);
    const size_t wr = round_up(W_, kMaxNB);
    std::vector<double> out(size_t(p.O) * wr);
    for (size_t y = 0; y < H_; ++y) {
      K_.conv(Conv{src.row(0, y), src.plane, p.C, p.T, off.data(), p.w.data(), p.init.data(),
                   p.O, s_, p.relu, p.res, out.data(), wr, wr});
      for (size_t o = 0; o < size_t(p.O); ++o) {
        emit(dst, sink, o, y, 0, out.data() + o * wr, W_);
        if (dst) dst->pad_row(o, y);
      }
    }
    if (dst) dst->pad_rows();
  }

  const Kernels& K_;
  size_t H_, W_, B_ = 0, maxc_ = 1;
  double s_ = 1.0;
  std::vector<Prepared> net_;
  Image img_[2];
};

}  // namespace

void check_shapes(const std::vector<Grid>& levels) {
  if (levels.empty() || levels.size() > 32) bad("1 to 32 latent levels are needed");
  for (size_t l = 0; l < levels.size(); ++l) {
    const Grid& g = levels[l];
    if (g.h < 1 || g.w < 1 || g.h > kMaxSide || g.w > kMaxSide)
      bad("level " + std::to_string(l) + " must be 1 to 2^20 samples high and wide");
    if (l + 1 < levels.size() && (g.h > 2 * levels[l + 1].h || g.w > 2 * levels[l + 1].w))
      bad("level " + std::to_string(l) + " is more than twice the size of level " +
          std::to_string(l + 1));
  }
}

void check_layers(const std::vector<Layer>& layers, size_t n_in, int k_syn) {
  check_shift(k_syn, "k_syn");
  if (layers.empty() || layers.size() > 64) bad("1 to 64 synthesis layers are needed");
  size_t c = n_in;
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    const std::string at = "synthesis layer " + std::to_string(i);
    if (l.in < 1 || size_t(l.in) != c)
      bad(at + " has " + std::to_string(l.in) + " inputs, expected " + std::to_string(c));
    if (l.out < 1 || l.out > 1024) bad(at + " must have 1 to 1024 outputs");
    if (l.k < 1 || l.k % 2 == 0 || l.k > 31) bad(at + ": the kernel size must be odd, 1 to 31");
    if (size_t(l.in) * size_t(l.k * l.k) > size_t(kMaxFanIn))
      bad(at + ": in * k^2 must be at most 1024 (exactness bound)");
    if (l.flags < 0 || l.flags > 3) bad(at + ": flags must be 0 to 3");
    if ((l.flags & 2) && l.out != l.in) bad(at + " is residual but out != in");
    check_values(l.w, size_t(l.out) * size_t(l.in) * size_t(l.k * l.k), kMaxParam, at + " weights");
    check_values(l.b, size_t(l.out), kMaxParam, at + " biases");
    c = size_t(l.out);
  }
}

void upsample(const std::vector<Grid>& levels, const int32_t taps[4], int k_up, int32_t* out) {
  check_shapes(levels);
  check_shift(k_up, "k_up");
  check_values(taps, 4, kMaxParam, "upsampler taps");
  for (size_t l = 0; l < levels.size(); ++l)
    check_values(levels[l].data, levels[l].h * levels[l].w, kMaxLevel,
                 "the latents of level " + std::to_string(l));
  const Kernels& K = kernels();
  const size_t L = levels.size(), H = levels[0].h, W = levels[0].w, ld = round_up(W, kMaxNB);
  UpPass u{};
  for (int i = 0; i < 4; ++i) u.t[i] = taps[i];
  u.r = k_up > 0 ? std::ldexp(1.0, k_up - 1) : 0.0;
  u.s = std::ldexp(1.0, -k_up);
  // cur -> (width) half -> (height) cur; every buffer has rows of stride ld plus slack
  std::vector<double> cur(H * ld + kMaxNB), half(((H + 1) / 2 + 1) * ld + kMaxNB);
  std::vector<double> xp(W + 4 + 2 * kMaxNB), pe(W + 2 * kMaxNB), po(pe.size());
  for (size_t p = 0; p < L; ++p) {
    const Grid& g = levels[L - 1 - p];
    int32_t* plane = out + p * H * W;
    if (L - 1 - p == 0) {  // the finest level enters as it is
      for (size_t i = 0; i < H * W; ++i) plane[i] = g.data[i] * (1 << kFracA);
      continue;
    }
    size_t h = g.h, w = g.w;
    for (size_t y = 0; y < h; ++y)
      for (size_t i = 0; i < w; ++i) cur[y * ld + i] = std::ldexp(double(g.data[y * w + i]), kFracA);
    for (size_t m = L - 1 - p; m-- > 0;) {
      const size_t oh = levels[m].h, ow = levels[m].w;
      u.src = cur.data(), u.h = h, u.w = w, u.lds = ld, u.dst = half.data(), u.out_n = ow, u.ldd = ld;
      K.up_width(u, xp.data(), pe.data(), po.data());
      u.src = half.data(), u.w = ow, u.lds = ld, u.dst = cur.data(), u.out_n = oh, u.ldd = ld;
      K.up_height(u);
      h = oh, w = ow;
    }
    for (size_t y = 0; y < H; ++y)
      for (size_t i = 0; i < W; ++i) plane[y * W + i] = int32_t(cur[y * ld + i]);
  }
}

void forward(const int32_t* x, size_t n_in, size_t h, size_t w, const std::vector<Layer>& layers,
             int k_syn, int32_t* out) {
  if (h < 1 || w < 1 || h > kMaxSide || w > kMaxSide) bad("the image must be 1 to 2^20 high and wide");
  check_layers(layers, n_in, k_syn);
  check_values(x, n_in * h * w, int32_t(kClamp), "the synthesis input");
  Sink sink;
  sink.act = out, sink.H = h, sink.W = w, sink.P = size_t(layers.back().out);
  Synthesis(layers, k_syn, h, w).run(x, sink);
}

void decode(const std::vector<Grid>& levels, const int32_t taps[4], int k_up,
            const std::vector<Layer>& layers, int k_syn, uint8_t* out) {
  check_shapes(levels);
  check_layers(layers, levels.size(), k_syn);
  const size_t H = levels[0].h, W = levels[0].w;
  std::vector<int32_t> x(levels.size() * H * W);
  upsample(levels, taps, k_up, x.data());
  Sink sink;
  sink.px = out, sink.H = H, sink.W = W, sink.P = size_t(layers.back().out);
  sink.to_pixels = kernels().to_pixels;
  Synthesis(layers, k_syn, H, W).run(x.data(), sink);
}

const char* kernel_name() { return kernels().name; }

}  // namespace wz::syn
