// weightzip._C: the only file that knows about Python. Buffers come in through the buffer
// protocol (no copies), the GIL is released for all coding work, and C++ errors map to
// weightzip.errors.FormatError / ChecksumError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdlib>
#include <memory>

#include "chunk.hpp"
#include "parallel.hpp"
#include "rans_indexed.hpp"
#include "xxhash64.hpp"
#include "zstd_dl.hpp"

namespace py = pybind11;
using namespace wz;

namespace {

constexpr uint64_t kMaxChunkBytes = 1ULL << 30;

struct View {
  const uint8_t* ptr;
  size_t size;
};

View contiguous(const py::buffer_info& info, const char* what) {
  // Accept any C-contiguous buffer; it is read as raw bytes.
  py::ssize_t expect = info.itemsize;
  for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] > 1 && info.strides[d] != expect)
      throw std::invalid_argument(std::string(what) + " must be C-contiguous");
    expect *= info.shape[d];
  }
  return {static_cast<const uint8_t*>(info.ptr), size_t(info.size) * size_t(info.itemsize)};
}

uint64_t checksum(const uint8_t* p, size_t n) { return xxh64(p, n) & 0xffffffffu; }

// A malloc'ed buffer handed to numpy, which frees it with the array.
py::array_t<uint8_t> to_numpy(uint8_t* p, size_t n) {
  py::capsule free_when_done(p, [](void* q) { std::free(q); });
  return py::array_t<uint8_t>({py::ssize_t(n)}, {py::ssize_t(1)}, p, free_when_done);
}

ChunkSpec make_spec(int itemsize, int transform, int level, uint32_t row, int force) {
  ChunkSpec spec;
  spec.transform = Transform(transform);
  spec.itemsize = itemsize;
  spec.level = level;
  spec.row = row;
  spec.force_method = force;
  transform_width(spec.transform, itemsize);  // validates
  if (level < kFast || level > kMax) throw std::invalid_argument("level must be 0, 1 or 2");
  if (force >= kNumMethods) throw std::invalid_argument("unknown method");
  return spec;
}

// Returns (payload uint8[total], table uint64[n, 3] = csize, rsize, checksum). The checksum is
// the low 32 bits of xxh64 of the raw chunk: it catches corrupt payloads and decoder bugs alike.
py::tuple encode_chunks(py::buffer data, int itemsize, int transform, uint64_t chunk_bytes,
                        int level, uint32_t row, int threads, int force_method) {
  ChunkSpec spec = make_spec(itemsize, transform, level, row, force_method);
  py::buffer_info info = data.request();
  View in = contiguous(info, "data");
  if (chunk_bytes == 0 || chunk_bytes > kMaxChunkBytes || chunk_bytes % uint64_t(itemsize))
    throw std::invalid_argument("chunk_bytes must be a positive multiple of the item size");
  if (in.size % size_t(itemsize)) throw std::invalid_argument("data is not whole elements");
  const size_t nchunks = (in.size + chunk_bytes - 1) / chunk_bytes;
  py::array_t<uint64_t> table({py::ssize_t(nchunks), py::ssize_t(3)});
  uint64_t* tab = table.mutable_data();
  // Chunks are coded straight into one buffer: no per-chunk allocations, no zero-filled
  // pages. One worker writes them back to back; several write each at the offset its bound
  // allows, and the chunks are packed together afterwards.
  std::vector<size_t> at(nchunks + 1, 0);
  for (size_t i = 0; i < nchunks; ++i)
    at[i + 1] = at[i] + chunk_bound(std::min<size_t>(chunk_bytes, in.size - i * chunk_bytes), spec);
  std::unique_ptr<uint8_t, decltype(&std::free)> buf(
      static_cast<uint8_t*>(std::malloc(std::max<size_t>(at[nchunks], 1))), &std::free);
  if (!buf) throw std::bad_alloc();
  size_t total = 0;
  {
    py::gil_scoped_release nogil;
    const int nw = resolve_threads(threads);
    const bool serial = std::min(size_t(nw), nchunks) <= 1;  // parallel_for runs in order
    std::vector<Scratch> scratch(size_t(std::max(1, nw)));
    parallel_for(nchunks, threads, [&](size_t i, int w) {
      const size_t off = i * chunk_bytes;
      const size_t len = std::min<size_t>(chunk_bytes, in.size - off);
      uint8_t* out = buf.get() + (serial ? total : at[i]);
      const size_t csize = encode_chunk(in.ptr + off, len, spec, out, scratch[size_t(w)]);
      if (serial) total += csize;
      tab[3 * i + 0] = csize;
      tab[3 * i + 1] = len;
      tab[3 * i + 2] = checksum(in.ptr + off, len);
    });
    for (size_t i = 0; i < nchunks && !serial; ++i) {
      std::memmove(buf.get() + total, buf.get() + at[i], tab[3 * i]);
      total += tab[3 * i];
    }
  }
  uint8_t* p = buf.release();
  if (auto* q = static_cast<uint8_t*>(std::realloc(p, std::max<size_t>(total, 1)))) p = q;
  return py::make_tuple(to_numpy(p, total), table);
}

// table: uint64[n, 4] = offset into payload, csize, rsize, checksum.
void decode_chunks(py::buffer payload, py::array_t<uint64_t, py::array::c_style> table,
                   int itemsize, int transform, py::buffer out, int threads, bool verify) {
  ChunkSpec spec = make_spec(itemsize, transform, kDefault, 0, -1);
  py::buffer_info pin = payload.request();
  View src = contiguous(pin, "payload");
  py::buffer_info oinfo = out.request(true);
  View dstv = contiguous(oinfo, "out");
  uint8_t* dst = const_cast<uint8_t*>(dstv.ptr);
  if (table.ndim() != 2 || table.shape(1) != 4) throw std::invalid_argument("table must be (n, 4)");
  const size_t n = size_t(table.shape(0));
  const uint64_t* tab = table.data();
  std::vector<size_t> dst_off(n);
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t off = tab[4 * i], csize = tab[4 * i + 1], rsize = tab[4 * i + 2];
    if (off > src.size || csize > src.size - off) throw FormatError("chunk lies outside the file");
    if (rsize > kMaxChunkBytes || rsize % uint64_t(itemsize)) throw FormatError("bad chunk size");
    dst_off[i] = total;
    total += rsize;
  }
  if (total != dstv.size) throw FormatError("chunk sizes do not add up to the tensor size");
  {
    py::gil_scoped_release nogil;
    const int nw = resolve_threads(threads);
    std::vector<Scratch> scratch(size_t(std::max(1, nw)));
    parallel_for(n, threads, [&](size_t i, int w) {
      const uint8_t* p = src.ptr + tab[4 * i];
      const size_t csize = tab[4 * i + 1], rsize = tab[4 * i + 2];
      decode_chunk(p, csize, spec, dst + dst_off[i], rsize, scratch[size_t(w)]);
      if (verify && checksum(dst + dst_off[i], rsize) != tab[4 * i + 3])
        throw ChecksumError("checksum mismatch in chunk " + std::to_string(i) + " (corrupt data)");
    });
  }
}

uint64_t hash_buffer(py::buffer data) {
  py::buffer_info info = data.request();
  View v = contiguous(info, "data");
  py::gil_scoped_release nogil;
  return xxh64(v.ptr, v.size);
}

// ---- indexed-CDF rANS (learned codecs; CompressAI conventions, see rans_indexed.hpp) ----

using I32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

rans_indexed::Tables indexed_tables(const I32Array& cdfs, const I32Array& lengths,
                                    const I32Array& offsets) {
  if (cdfs.ndim() != 2) throw std::invalid_argument("cdfs must be 2-D (n_cdfs, max_len)");
  const py::ssize_t n_cdfs = cdfs.shape(0);
  if (lengths.ndim() != 1 || lengths.shape(0) != n_cdfs)
    throw std::invalid_argument("cdf_lengths must be 1-D with one entry per CDF table");
  if (offsets.ndim() != 1 || offsets.shape(0) != n_cdfs)
    throw std::invalid_argument("offsets must be 1-D with one entry per CDF table");
  rans_indexed::Tables t;
  t.cdfs = cdfs.data();
  t.lengths = lengths.data();
  t.offsets = offsets.data();
  t.n_cdfs = size_t(n_cdfs);
  t.max_len = size_t(cdfs.shape(1));
  return t;
}

py::array_t<uint8_t> indexed_encode(const I32Array& symbols, const I32Array& indexes,
                                    const I32Array& cdfs, const I32Array& cdf_lengths,
                                    const I32Array& offsets) {
  if (symbols.size() != indexes.size())
    throw std::invalid_argument("symbols and indexes must have the same number of elements");
  const rans_indexed::Tables t = indexed_tables(cdfs, cdf_lengths, offsets);
  auto out = std::make_unique<Bytes>();
  {
    py::gil_scoped_release nogil;
    *out = rans_indexed::encode(symbols.data(), indexes.data(), size_t(symbols.size()), t);
  }
  const py::ssize_t n = py::ssize_t(out->size());
  uint8_t* p = out->data();
  py::capsule owner(out.release(), [](void* q) { delete static_cast<Bytes*>(q); });
  return py::array_t<uint8_t>({n}, {py::ssize_t(1)}, p, owner);
}

py::array_t<int32_t> indexed_decode(py::buffer payload, const I32Array& indexes,
                                    const I32Array& cdfs, const I32Array& cdf_lengths,
                                    const I32Array& offsets) {
  py::buffer_info info = payload.request();
  const View src = contiguous(info, "payload");
  const rans_indexed::Tables t = indexed_tables(cdfs, cdf_lengths, offsets);
  const size_t n = size_t(indexes.size());
  py::array_t<int32_t> out{py::ssize_t(n)};
  int32_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    rans_indexed::decode(src.ptr, src.size, indexes.data(), n, t, dst);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "weightzip entropy-coding core (private; use the weightzip package)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ChecksumError& e) {
      py::object cls = py::module_::import("weightzip.errors").attr("ChecksumError");
      PyErr_SetString(cls.ptr(), e.what());
    } catch (const FormatError& e) {
      py::object cls = py::module_::import("weightzip.errors").attr("FormatError");
      PyErr_SetString(cls.ptr(), e.what());
    }
  });
  m.def("encode_chunks", &encode_chunks, py::arg("data"), py::arg("itemsize"),
        py::arg("transform"), py::arg("chunk_bytes"), py::arg("level"), py::arg("row") = 0,
        py::arg("threads") = 0, py::arg("force_method") = -1);
  m.def("decode_chunks", &decode_chunks, py::arg("payload"), py::arg("table"),
        py::arg("itemsize"), py::arg("transform"), py::arg("out"), py::arg("threads") = 0,
        py::arg("verify") = true);
  m.def("xxh64", &hash_buffer, py::arg("data"));
  m.def("zstd_available", &zstd::available);
  m.def("stream_count", [](int transform, int itemsize) {
    return transform_width(Transform(transform), itemsize);
  }, py::arg("transform"), py::arg("itemsize"));
  m.def("indexed_encode", &indexed_encode, py::arg("symbols"), py::arg("indexes"),
        py::arg("cdfs"), py::arg("cdf_lengths"), py::arg("offsets"),
        "rANS-encode int32 symbols with CompressAI-style indexed CDF tables -> uint8 array");
  m.def("indexed_decode", &indexed_decode, py::arg("payload"), py::arg("indexes"),
        py::arg("cdfs"), py::arg("cdf_lengths"), py::arg("offsets"),
        "Inverse of indexed_encode -> int32 array of indexes.size symbols");
}
