// Static rANS over bytes with up to 4 context classes: 32 interleaved 32-bit states,
// 16-bit renormalisation, so that SIMD decoders run 8 (AVX2) or 16 (AVX-512) lanes at once.
//
// Why rANS and not Huffman: exponent streams of trained weights have a dominant symbol
// (p ~ 0.25-0.4) and a long tail; Huffman loses 0.02-0.1 bit/symbol there, rANS stays
// within ~0.01% of the entropy. docs/design.md has the measurements.
//
// Context of symbol i: clamp((ref & mask) - base, 0, nctx - 1), where ref is
//   kPrev: the symbol kLanes positions earlier (the same state's previous symbol; 0 at first)
//   kSide: side[i], a byte the decoder already has (for floats: the value's exponent)
//   kPos:  min(i >> shift, 255), the segment of the stream: a piecewise-static model for
//          statistics that drift along a chunk (exponents of the tensors it spans).
//
// Stream layout (little-endian):
//   u8 scale (kMinScale..kMaxScale), u8 source, u8 nctx (1..4), u8 mask, u8 base, u8 shift
//   nctx frequency tables, bit-packed (see rans_table.cpp), padded to a whole byte
//   kLanes x u32 final encoder states
//   u16 words, in decoder order: symbol i belongs to state i % kLanes, and a state that
//   falls below 2^16 after decoding a symbol reads the next word.
#pragma once
#include <algorithm>
#include <cstdint>

#include "common.hpp"

namespace wz::rans {

constexpr int kLanes = 32;
constexpr int kMinScale = 8;
// Up to kPackedScale a decode-table entry packs freq, offset and symbol in 32 bits. Long
// tails (many rare symbols) need finer frequencies: up to kMaxScale, order 0 only, entries
// hold freq and offset and the symbols sit in a byte table (one more lookup per symbol).
constexpr int kPackedScale = 12;
constexpr int kMaxScale = 15;
constexpr int kMaxCtx = 4;
constexpr int kMaxGroup = 4;

enum class Source : uint8_t { kNone = 0, kPrev = 1, kSide = 2, kPos = 3 };

struct Context {
  Source src = Source::kNone;
  uint8_t n = 1, mask = 0xff, base = 0;
  uint8_t shift = 0;  // kPos only: segments of 2^shift >= kLanes symbols, so one per group
  uint32_t pos_ref(size_t i) const { return uint32_t(std::min<size_t>(i >> shift, 255)); }
  int of(uint32_t ref) const {
    int v = int(ref & mask) - int(base);
    return v < 0 ? 0 : v >= n ? n - 1 : v;
  }
};

// Everything the coder needs besides the symbols: per context, frequencies summing to
// 1 << scale, each below 1 << scale (so every table has at least two symbols).
struct Model {
  Context ctx;
  int scale = kPackedScale;
  uint8_t group[kMaxCtx] = {};  // table k gives groups of 2^group[k] symbols one frequency
  uint32_t freq[kMaxCtx][256];
};

// Encode n symbols; side[i] is read iff the model uses kSide. Returns false (out
// unspecified) if the result would exceed cap bytes.
bool encode(const uint8_t* in, size_t n, const uint8_t* side, const Model& m, Bytes& out,
            size_t cap);

// Decodes a stream in pieces, so that a chunk is rebuilt block by block while the decoded
// symbols are still in L1. Every read is bounds-checked; corrupt input throws FormatError.
class Decoder {
 public:
  Decoder(const uint8_t* in, size_t len);
  bool needs_side() const { return st_.ctx.src == Source::kSide; }
  // Decode the next count symbols (multiples of kLanes keep the SIMD path for the next
  // call). side: the side bytes of exactly these symbols (ignored unless needs_side()).
  void decode(uint8_t* out, size_t count, const uint8_t* side);
  // Check that the stream was consumed exactly and ended in the initial state.
  void finish() const;

  // Kernel state, shared with the SIMD decoders in rans_simd.cpp.
  struct State {
    const uint32_t* tab;  // nctx << scale entries: freq << 20 | symbol << 12 | slot - start
    const uint8_t* sym;   // scale > kPackedScale: the symbols, tab = freq << 16 | slot - start
    const uint8_t* p;
    const uint8_t* end;
    size_t pos;  // symbols decoded so far
    int scale;
    Context ctx;
    uint32_t x[kLanes];
    uint32_t prev[kLanes];   // last symbol of each state (kPrev context)
    uint32_t ctx_off[256];   // context of a reference byte << scale (scalar decoder)
  };

 private:
  std::vector<uint32_t> tab_;
  std::vector<uint8_t> sym_;
  State st_;
};

// Fast paths: decode whole groups of kLanes symbols while at least 2 * kLanes bytes of
// words remain (one group reads at most kLanes words). Return the number decoded.
using GroupKernel = size_t (*)(Decoder::State& s, uint8_t* out, size_t count,
                               const uint8_t* side);
GroupKernel simd_kernel();  // nullptr where no SIMD decoder applies

// Encoder tables for the SIMD encoder: fs[ctx * 256 + symbol] = freq | start << 16.
// window >= 0 (order 0 and kPos only): symbols window..window + 63 carry nearly all the
// frequency (exponents), so the encoder looks them up in registers rather than by a gather,
// which bounds its speed; a vector with a symbol outside still gathers.
struct EncTable {
  const uint32_t* fs;
  Context ctx;
  int scale;
  int window = -1;
};
constexpr int kWindow = 64;
// Words below the encoder's final position that a SIMD encoder may overwrite with scratch
// (the AVX2 one stores 8 words ending at its position, however few it sheds).
constexpr size_t kEncodeSlack = 8;
// Encode the whole groups in[0, n) (n a multiple of kLanes) backwards into the words ending
// at ptr (which must have room for n more) and the states x; returns the new ptr.
using EncodeKernel = uint16_t* (*)(const EncTable& t, const uint8_t* in, size_t n,
                                   const uint8_t* side, uint16_t* ptr, uint32_t* x);
EncodeKernel simd_encoder();  // nullptr where none applies

}  // namespace wz::rans
