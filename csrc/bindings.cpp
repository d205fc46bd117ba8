// weightzip._C: the only file that knows about Python. Buffers come in through the buffer
// protocol (no copies), the GIL is released for all coding work, and C++ errors map to
// weightzip.errors.FormatError / ChecksumError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "chunks.hpp"
#include "rans_indexed.hpp"
#include "xxhash64.hpp"
#include "zstd_dl.hpp"

namespace py = pybind11;
using namespace wz;

namespace {

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

// A malloc'ed buffer handed to numpy, which frees it with the array.
py::array_t<uint8_t> to_numpy(MallocBytes buf, size_t n) {
  uint8_t* p = buf.get();
  py::capsule free_when_done(p, [](void* q) { std::free(q); });
  buf.release();  // the capsule owns it now
  return py::array_t<uint8_t>({py::ssize_t(n)}, {py::ssize_t(1)}, p, free_when_done);
}

// Returns (payload uint8[total], table uint64[n, 3] = csize, rsize, checksum); see chunks.hpp.
py::tuple py_encode_chunks(py::buffer data, int itemsize, int transform,
                           uint64_t chunk_bytes, int level, uint32_t row, int threads,
                           int force_method) {
  const ChunkSpec spec = make_spec(itemsize, transform, level, row, force_method);
  py::buffer_info info = data.request();
  const View in = contiguous(info, "data");
  EncodedChunks enc;
  {
    py::gil_scoped_release nogil;
    enc = wz::encode_chunks(in.ptr, in.size, spec, chunk_bytes, threads);
  }
  const size_t n = enc.table.size();
  py::array_t<uint64_t> table({py::ssize_t(n), py::ssize_t(3)});
  static_assert(sizeof(ChunkEntry) == 3 * sizeof(uint64_t), "ChunkEntry is 3 x u64");
  if (n) std::memcpy(table.mutable_data(), enc.table.data(), n * sizeof(ChunkEntry));
  return py::make_tuple(to_numpy(std::move(enc.payload), enc.size), table);
}

// table: uint64[n, 4] = offset into payload, csize, rsize, checksum; see chunks.hpp.
void py_decode_chunks(py::buffer payload, py::array_t<uint64_t, py::array::c_style> table,
                      int itemsize, int transform, py::buffer out, int threads, bool verify) {
  const ChunkSpec spec = make_spec(itemsize, transform, kDefault, 0, -1);
  py::buffer_info pin = payload.request();
  const View src = contiguous(pin, "payload");
  py::buffer_info oinfo = out.request(true);
  const View dst = contiguous(oinfo, "out");
  if (table.ndim() != 2 || table.shape(1) != py::ssize_t(kDecodeColumns))
    throw std::invalid_argument("table must be (n, 4)");
  const size_t n = size_t(table.shape(0));
  const uint64_t* tab = table.data();
  py::gil_scoped_release nogil;
  wz::decode_chunks(src.ptr, src.size, tab, n, spec, const_cast<uint8_t*>(dst.ptr), dst.size,
                    threads, verify);
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
  m.def("encode_chunks", &py_encode_chunks, py::arg("data"), py::arg("itemsize"),
        py::arg("transform"), py::arg("chunk_bytes"), py::arg("level"), py::arg("row") = 0,
        py::arg("threads") = 0, py::arg("force_method") = -1);
  m.def("decode_chunks", &py_decode_chunks, py::arg("payload"), py::arg("table"),
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
