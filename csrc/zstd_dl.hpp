// zstd as one of the per-stream candidate codecs.
//
// libzstd is loaded at run time (dlopen of the system's libzstd.so.1, present on every
// mainstream Linux) so that building weightzip needs no zstd headers. Only the stable API is
// used, with one kept compression and decompression context per thread. Without libzstd (or
// with WEIGHTZIP_NO_ZSTD=1) the encoder never picks zstd, and decoding a zstd stream raises
// FormatError naming the missing library.
#pragma once
#include <cstdint>

#include "common.hpp"

namespace wz::zstd {

bool available();

// Compress into out; returns false if the result is not smaller than cap.
bool compress(const uint8_t* in, size_t n, int level, Bytes& out, size_t cap);

// Decompress exactly n bytes; throws FormatError otherwise.
void decompress(const uint8_t* in, size_t len, uint8_t* out, size_t n);

// The same with dict (dsize bytes of raw content, e.g. the same file in a reference
// checkpoint) as a dictionary: ZSTD_compress_usingDict / ZSTD_decompress_usingDict.
bool compress_dict(const uint8_t* in, size_t n, const uint8_t* dict, size_t dsize, int level,
                   Bytes& out, size_t cap);
void decompress_dict(const uint8_t* in, size_t len, const uint8_t* dict, size_t dsize,
                     uint8_t* out, size_t n);

}  // namespace wz::zstd
