#include "zstd_dl.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

namespace wz::zstd {

namespace {

struct Api {
  size_t (*compress_bound)(size_t) = nullptr;
  unsigned (*is_error)(size_t) = nullptr;
  void* (*create_cctx)() = nullptr;
  size_t (*free_cctx)(void*) = nullptr;
  void* (*create_dctx)() = nullptr;
  size_t (*free_dctx)(void*) = nullptr;
  size_t (*compress_dict)(void*, void*, size_t, const void*, size_t, const void*, size_t, int) =
      nullptr;
  size_t (*decompress_dict)(void*, void*, size_t, const void*, size_t, const void*, size_t) =
      nullptr;
  size_t (*compress_cctx)(void*, void*, size_t, const void*, size_t, int) = nullptr;
  size_t (*decompress_dctx)(void*, void*, size_t, const void*, size_t) = nullptr;
  bool ok = false, dict_ok = false;
};

// WEIGHTZIP_NO_ZSTD=1 makes the library count as absent (tests, and users who want files
// that decode without it).
bool forced_off() {
  const char* v = std::getenv("WEIGHTZIP_NO_ZSTD");
  return v && *v && std::strcmp(v, "0") != 0;
}

const Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = nullptr;
    if (forced_off()) return;
    for (const char* name : {"libzstd.so.1", "libzstd.so", "libzstd.1.dylib", "libzstd.dylib"}) {
      h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (h) break;
    }
    if (!h) return;
    a.compress_bound = reinterpret_cast<size_t (*)(size_t)>(dlsym(h, "ZSTD_compressBound"));
    a.is_error = reinterpret_cast<unsigned (*)(size_t)>(dlsym(h, "ZSTD_isError"));
    a.compress_cctx = reinterpret_cast<size_t (*)(void*, void*, size_t, const void*, size_t, int)>(
        dlsym(h, "ZSTD_compressCCtx"));
    a.decompress_dctx = reinterpret_cast<size_t (*)(void*, void*, size_t, const void*, size_t)>(
        dlsym(h, "ZSTD_decompressDCtx"));
    a.create_cctx = reinterpret_cast<void* (*)()>(dlsym(h, "ZSTD_createCCtx"));
    a.free_cctx = reinterpret_cast<size_t (*)(void*)>(dlsym(h, "ZSTD_freeCCtx"));
    a.create_dctx = reinterpret_cast<void* (*)()>(dlsym(h, "ZSTD_createDCtx"));
    a.free_dctx = reinterpret_cast<size_t (*)(void*)>(dlsym(h, "ZSTD_freeDCtx"));
    a.compress_dict = reinterpret_cast<size_t (*)(void*, void*, size_t, const void*, size_t,
                                                  const void*, size_t, int)>(
        dlsym(h, "ZSTD_compress_usingDict"));
    a.decompress_dict = reinterpret_cast<size_t (*)(void*, void*, size_t, const void*, size_t,
                                                    const void*, size_t)>(
        dlsym(h, "ZSTD_decompress_usingDict"));
    a.ok = a.compress_bound && a.is_error && a.create_cctx && a.free_cctx && a.create_dctx &&
           a.free_dctx && a.compress_cctx && a.decompress_dctx;
    a.dict_ok = a.ok && a.create_cctx && a.free_cctx && a.create_dctx && a.free_dctx &&
                a.compress_dict && a.decompress_dict;
  });
  return a;
}

// One compression and one decompression context per thread, kept: creating them per call
// (what ZSTD_compress does) costs more than compressing a small stream.
struct Contexts {
  void* c = nullptr;
  void* d = nullptr;
  ~Contexts() {
    if (c) api().free_cctx(c);
    if (d) api().free_dctx(d);
  }
};
thread_local Contexts tls;

void* cctx() {
  if (!tls.c && !(tls.c = api().create_cctx())) throw std::bad_alloc();
  return tls.c;
}

void* dctx() {
  if (!tls.d && !(tls.d = api().create_dctx())) throw std::bad_alloc();
  return tls.d;
}

}  // namespace

bool available() { return api().ok; }

bool compress(const uint8_t* in, size_t n, int level, Bytes& out, size_t cap) {
  const Api& a = api();
  if (!a.ok) return false;
  out.resize(a.compress_bound(n));
  size_t r = a.compress_cctx(cctx(), out.data(), out.size(), in, n, level);
  if (a.is_error(r) || r >= cap) return false;
  out.resize(r);
  return true;
}

void decompress(const uint8_t* in, size_t len, uint8_t* out, size_t n) {
  const Api& a = api();
  if (!a.ok) throw FormatError("stream is zstd-coded but libzstd.so.1 could not be loaded");
  // The frame header's content size is not trusted: the output buffer is exactly n bytes.
  size_t r = a.decompress_dctx(dctx(), out, n, in, len);
  if (a.is_error(r) || r != n) throw FormatError("zstd: corrupt stream");
}

bool compress_dict(const uint8_t* in, size_t n, const uint8_t* dict, size_t dsize, int level,
                   Bytes& out, size_t cap) {
  const Api& a = api();
  if (!a.dict_ok) return false;
  out.resize(a.compress_bound(n));
  const size_t r = a.compress_dict(cctx(), out.data(), out.size(), in, n, dict, dsize, level);
  if (a.is_error(r) || r >= cap) return false;
  out.resize(r);
  return true;
}

void decompress_dict(const uint8_t* in, size_t len, const uint8_t* dict, size_t dsize,
                     uint8_t* out, size_t n) {
  const Api& a = api();
  if (!a.dict_ok) throw FormatError("stream is zstd-coded with a dictionary but libzstd.so.1 could not be loaded");
  const size_t r = a.decompress_dict(dctx(), out, n, in, len, dict, dsize);
  if (a.is_error(r) || r != n) throw FormatError("zstd: corrupt stream");
}

}  // namespace wz::zstd
