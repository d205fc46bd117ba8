// The upsampler and synthesis of an overfitted image decoder (Cool-chic style), in exact
// fixed point. Plain C++17, no Python. The numpy reference is
// neurocodec/runtime/coolchic/decoder.py (upsample_stack, synthesis): the results here are
// bit for bit the same, on every SIMD path (WEIGHTZIP_SIMD=none or =avx2 caps it).
//
// ---- Fixed point (kFracA = 12 fractional bits; ">> k" floors, also for negatives) ----------
// Every value is an integer. Round(acc, k) = (acc + 2^(k-1)) >> k (no rounding term if k = 0);
// Clamp(v) = min(max(v, -2^30), 2^30).
// * upsampler: the L latent levels (finest first, level l is h_l x w_l, h_l <= 2 h_{l+1},
//   w_l <= 2 w_{l+1}) enter as x << 12. Doubling a grid along the width, then along the height
//   (edge samples repeated, taps t_0..t_3):
//     out[2n]     = Clamp(Round(t0 x[n-2] + t1 x[n-1] + t2 x[n]   + t3 x[n+1], k_up))
//     out[2n + 1] = Clamp(Round(t3 x[n-1] + t2 x[n]   + t1 x[n+1] + t0 x[n+2], k_up))
//   cropped to the next level's size. The synthesis input is L planes at h_0 x w_0, coarsest
//   first: plane p is level L-1-p (<< 12) doubled L-1-p times (each plane on its own).
// * synthesis layer (out O, in C, odd kernel k, weights W[o][c][dy][dx], biases b[o]):
//     acc = (b[o] << 12) + sum_{c,dy,dx} W[o][c][dy][dx] a[c][y+dy-k/2][x+dx-k/2]  (edges repeated)
//     a'  = Round(acc, k_syn); a' += a[o] if residual (flags bit 1, needs O == C);
//     a'  = max(a', 0) if ReLU (flags bit 0); a' = Clamp(a')
//   The first layer reads the L planes; the last layer's O is the number of image planes.
// * pixels: clip((a * 255 + 2^11) >> 12, 0, 255), uint8 [H][W][planes] (interleaved).
//
// ---- Exactness ------------------------------------------------------------------------------
// The kernels compute in double: activations are within 2^30, levels within 2^18 (so x << 12
// too), taps, weights and biases within 2^12, and C k^2 <= 1024, so every partial sum is an
// integer below 2^53 in magnitude and exact in any order, with or without FMA; floor(v * 2^-k)
// is then exactly v >> k. Anything outside those limits throws std::invalid_argument.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace wz::syn {

constexpr int kFracA = 12;              // fractional bits of every activation
constexpr int64_t kClamp = 1 << 30;     // activations are clamped to [-kClamp, kClamp]
constexpr int32_t kMaxParam = 1 << 12;  // |tap|, |weight|, |bias| bound
constexpr int32_t kMaxLevel = 1 << 18;  // |latent| bound (x << 12 stays within kClamp)
constexpr int kMaxShift = 30;           // k_up, k_syn in [0, kMaxShift]
constexpr int kMaxFanIn = 1024;         // C k^2 bound of a layer
constexpr size_t kMaxSide = size_t(1) << 20;

struct Grid {  // one latent level, row-major int32 [h][w]
  const int32_t* data;
  size_t h, w;
};

struct Layer {
  int out, in, k, flags;  // flags: bit 0 ReLU, bit 1 residual
  const int32_t* w;       // [out][in][k][k]
  const int32_t* b;       // [out]
};

// std::invalid_argument unless the shapes are valid (1 <= L <= 32, 1 <= h, w <= 2^20 and each
// level at most twice the next); values are checked by the functions below.
void check_shapes(const std::vector<Grid>& levels);
// std::invalid_argument unless the layers chain from n_in planes (see above) and k_syn is valid.
void check_layers(const std::vector<Layer>& layers, size_t n_in, int k_syn);

// The synthesis input, int32 [L][h_0][w_0] (coarsest level first).
void upsample(const std::vector<Grid>& levels, const int32_t taps[4], int k_up, int32_t* out);
// The synthesis of x, int32 [n_in][h][w] (|x| <= 2^30): the last layer's activations,
// int32 [planes][h][w].
void forward(const int32_t* x, size_t n_in, size_t h, size_t w, const std::vector<Layer>& layers,
             int k_syn, int32_t* out);
// Levels to pixels (upsample, forward, conversion): uint8 [h_0][w_0][planes].
void decode(const std::vector<Grid>& levels, const int32_t taps[4], int k_up,
            const std::vector<Layer>& layers, int k_syn, uint8_t* out);

const char* kernel_name();  // "avx512", "avx2" or "generic": the path in use

}  // namespace wz::syn
