// Fixed-point autoregressive latent coder (ARM) for overfitted image codecs (Cool-chic / C3
// style). Plain C++17, no Python. docs/arm_coder.md has the same specification, with the
// reasons behind it.
//
// A pyramid of integer latent grids (levels) is coded with one tiny MLP (the ARM): for each
// latent, in raster order, the MLP reads a causal neighbourhood of already-decoded latents of
// the same grid and outputs the location mu and the log2-scale of a discretised Laplace
// distribution over the alphabet [-A, A]. Everything is integer arithmetic, so the encoder and
// every decoder (any machine, compiler, thread count) compute the same probabilities.
//
// ---- Fixed point ("x >> s" is a floor shift, floor(x / 2^s), also for negative x) --------
//   kFracW = 12   weights:        W = round(w * 2^12), int32
//   kFracA = 8    activations:    a = round(v * 2^8) (network inputs, hidden units, outputs)
//   biases:       kFracW + kFracA = 20 fractional bits, int32: b = round(b_float * 2^20)
// Layer l (l = 0 .. L-1; layers 0 .. L-2 are hidden, L-1 is the output layer with 2 units),
// weights W_l int32 [out_l][in_l] (row-major, PyTorch's nn.Linear layout), bias b_l int32[out_l]:
//   a_0[j]   = x_j * 2^8, x_j = the latent at context offset j (dy_j, dx_j), 0 outside the grid
//   acc_i    = b_l[i] + sum_j W_l[i][j] * a_l[j]            (exact in int64, see validation)
//   hidden:  a_{l+1}[i] = min(max((acc_i + 2^11) >> 12, 0), 2^31 - 1)    (ReLU, round half up)
//   output:  o_i = (acc_i + 2^11) >> 12,  i = 0, 1
//   mu = clamp(o_0, -A * 2^8, A * 2^8)     Laplace location, 8 fractional bits
//   ls = clamp(o_1, kLogScaleMin, kLogScaleMax) = [-2048, 3584]: log2 of the Laplace scale b,
//        8 fractional bits (b = 2^(ls / 256) in [2^-8, 2^14])
// A residual inside the ReLU (Cool-chic's relu(W a + b + a)) folds into the weights: W + 2^12 I.
// Validation (std::invalid_argument): 1 <= n_ctx <= 64 context offsets, each causal
// (dy < 0, or dy == 0 and dx < 0) with |dy|, |dx| <= 16; 1 <= L <= 9 layers; hidden widths in
// [1, 64]; output width 2; sizes consistent; and for every layer and unit i
//   sum_j |W_l[i][j]| * X_l + |b_l[i]| + 2^11 <= 2^63 - 1,  X_0 = 4096 * 2^8, X_l = 2^31 - 1,
// so no accumulation can overflow int64 (whatever the inputs and the summation order).
//
// ---- Probabilities: discretised Laplace, 16-bit frequencies, closed-form CDF --------------
//   r = RECIP[ls & 255] >> ((ls >> 8) + 8)        log2(e) / b with 32 fractional bits
//   EXP(u) = 2^-u for u >= 0 with 40 fractional bits, as 32 fractional bits:
//            i = u >> 40; EXP(u) = 0 if i >= 33, else with f = (u >> 24) & 0xffff:
//            (EXP_HI[f >> 8] * EXP_LO[f & 255]) >> (30 + i)
//   RECIP[f]  = round(log2(e) * 2^(-f / 256) * 2^40)    (tables: exact values rounded to
//   EXP_HI[h] = round(2^31 * 2^(-h / 256))                nearest, hard-coded in arm.cpp;
//   EXP_LO[l] = round(2^31 * 2^(-l / 65536))              no libm involved anywhere)
//   N = 2A + 1 symbols s = -A .. A, index k = s + A; M = 2^16 - N.
//   Q(0) = 0, Q(N) = M; for 0 < k < N, with the bin boundary beta = (k - A) * 2^8 - 2^7
//   (s - 1/2 in 8 fractional bits) and delta = beta - mu:
//       H(d) = (M * EXP(d * r)) >> 33       (M/2 times the Laplace tail 2^(-|delta| r))
//       Q(k) = H(-delta) if delta < 0, else M - H(delta)
//   C(k) = k + Q(k) (cumulative frequency of the symbols below index k), freq(k) =
//   C(k+1) - C(k) = 1 + Q(k+1) - Q(k) >= 1 (Q is non-decreasing), C(N) = 2^16 exactly. The
//   mass beyond +-A is folded into the edge symbols. Decoding finds k by a galloping search
//   from round(mu) (usually 2 evaluations of C, at most ~2 log2 N).
//
// ---- rANS and byte layout -----------------------------------------------------------------
// One stream per level (levels are independent: they can be coded in parallel; the bytes do
// not depend on the thread count). Byte-wise rANS with a 32-bit state (ryg's rans_byte):
// L = 2^23, state in [L, 2^31), 16-bit frequencies. A stream of a level with n > 0 latents:
//   u32 LE   the encoder's final state = the decoder's initial state, in [L, 2^31)
//   bytes    the renormalisation bytes, in the order the decoder reads them
// Decoding symbol k of latent i: slot = x & 0xffff, C(k) <= slot < C(k+1),
// x = freq(k) * (x >> 16) + slot - C(k), then while x < L: x = (x << 8) | next byte.
// A level without latents has an empty stream. The payload for n_levels levels (the decoder
// knows n_levels and every shape from elsewhere):
//   varint   the byte length of stream l, for l = 0 .. n_levels - 2 (unsigned LEB128)
//   bytes    stream 0, stream 1, ..., stream n_levels - 1 (the last one runs to the end)
// No magic, no version: the container around it carries those. Decoding throws FormatError
// unless every read is inside the payload, the lengths add up, every state starts in
// [L, 2^31) and ends at L with its stream consumed exactly. Bad nets, shapes or alphabets throw
// std::invalid_argument; so do latents outside [-A, A] given to the encoder.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"

namespace wz::arm {

constexpr int kFracW = 12;                 // fractional bits of the weights
constexpr int kFracA = 8;                  // fractional bits of activations, mu and ls
constexpr int kPrecision = 16;             // frequencies sum to 1 << kPrecision
constexpr int kMaxAlphabet = 4096;         // A <= 2^12
constexpr int kMaxContext = 64;            // context offsets (network inputs)
constexpr int kMaxWidth = 64;              // hidden units per layer
constexpr int kMaxLayers = 9;              // hidden layers + the output layer
constexpr int kMaxReach = 16;              // |dy|, |dx| of a context offset
constexpr int kMaxLevels = 64;
constexpr size_t kMaxSide = size_t(1) << 20;      // grid height and width
constexpr size_t kMaxLatents = size_t(1) << 30;   // per grid
constexpr int32_t kActMax = INT32_MAX;     // hidden activations are clamped to [0, kActMax]
constexpr int32_t kLogScaleMin = -8 * 256;  // b >= 2^-8
constexpr int32_t kLogScaleMax = 14 * 256;  // b <= 2^14
constexpr uint32_t kStateLow = uint32_t(1) << 23;  // rANS L

struct Offset {
  int32_t dy, dx;
};

// The ARM. Layer l has weights[l] (out_l x in_l, row-major) and biases[l] (out_l); in_0 is
// context.size(), in_l = out_{l-1}, and the last layer has 2 outputs (mu, ls).
struct ArmNet {
  std::vector<Offset> context;
  std::vector<std::vector<int32_t>> weights;
  std::vector<std::vector<int32_t>> biases;
};

struct Shape {
  size_t h = 0, w = 0;
};

// Throws std::invalid_argument unless the net follows the rules above.
void validate(const ArmNet& net);
// Throws std::invalid_argument unless 0 <= alphabet <= kMaxAlphabet.
void check_alphabet(int alphabet);
// Throws std::invalid_argument for more than kMaxLevels levels or a level over kMaxSide or
// kMaxLatents.
void check_shapes(const std::vector<Shape>& shapes);

// The discretised Laplace of one latent, ready for C(k).
struct Laplace {
  int64_t mu;     // clamped, 8 fractional bits
  uint64_t r;     // log2(e) / b, 32 fractional bits
  int32_t a;      // the alphabet bound A
  uint32_t n;     // 2A + 1
  uint32_t m;     // 2^16 - n
};
// mu and ls are clamped as the network's outputs are.
Laplace laplace(int64_t mu, int64_t ls, int alphabet);
// C(k) for k in [0, n]; C(0) = 0, C(n) = 2^16.
uint32_t cum_freq(const Laplace& d, uint32_t k);
// EXP(u) (above), exposed for tests.
uint64_t exp2_neg(uint64_t u);
// The three 256-entry tables RECIP, EXP_HI, EXP_LO.
const uint64_t* table_recip();
const uint64_t* table_exp_hi();
const uint64_t* table_exp_lo();

// Encodes levels[l] (shapes[l].h x shapes[l].w int32 latents, raster order). Up to `threads`
// workers code levels in parallel (0: one per core); the bytes do not depend on it.
Bytes encode(const std::vector<const int32_t*>& levels, const std::vector<Shape>& shapes,
             const ArmNet& net, int alphabet, int threads = 1);

// Decodes a payload of encode() into out[l] (shapes[l].h x shapes[l].w int32 each). Never
// reads outside data[0..size); corrupt or truncated data throws FormatError (out is then
// unspecified). The output does not depend on `threads`.
void decode(const uint8_t* data, size_t size, const std::vector<Shape>& shapes,
            const ArmNet& net, int alphabet, const std::vector<int32_t*>& out,
            int threads = 1);

// For one level: every latent's mu and ls (after clamping) and the frequency of its value
// (the exact rate is sum(16 - log2(freq)) bits, plus the stream's ~4-byte flush). Any of the
// outputs may be null. Latents outside [-A, A] throw std::invalid_argument.
void params(const int32_t* level, Shape shape, const ArmNet& net, int alphabet, int32_t* mu,
            int32_t* ls, int32_t* freq);

// The network on one context vector x[0 .. n_ctx) (the latents at the context offsets):
// *mu, *ls as params() reports them.
void net_outputs(const ArmNet& net, const int32_t* x, int alphabet, int32_t* mu, int32_t* ls);

// The whole cumulative table of each of n (mu, ls) pairs: out[i * (2A + 2) + k] = C(k).
void cdf_table(const int32_t* mu, const int32_t* ls, size_t n, int alphabet, int32_t* out);

}  // namespace wz::arm
