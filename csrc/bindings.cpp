// weightzip._C: the only file that knows about Python. Buffers come in through the buffer
// protocol (no copies), the GIL is released for all coding work, and C++ errors map to
// weightzip.errors.FormatError / ChecksumError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "arm.hpp"
#include "chunks.hpp"
#include "lanes.hpp"
#include "lossy.hpp"
#include "rans_indexed.hpp"
#include "synthesis.hpp"
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
                           int force_method, py::object ref, int predictor) {
  const ChunkSpec spec = make_spec(itemsize, transform, level, row, force_method, predictor);
  py::buffer_info info = data.request();
  const View in = contiguous(info, "data");
  py::buffer_info rinfo;
  View rv{nullptr, 0};
  if (!ref.is_none()) {  // the same entry of a reference (see chunks.hpp)
    rinfo = ref.cast<py::buffer>().request();
    rv = contiguous(rinfo, "ref");
  }
  EncodedChunks enc;
  {
    py::gil_scoped_release nogil;
    enc = wz::encode_chunks(in.ptr, in.size, spec, chunk_bytes, threads, rv.ptr, rv.size);
  }
  const size_t n = enc.table.size();
  py::array_t<uint64_t> table({py::ssize_t(n), py::ssize_t(3)});
  static_assert(sizeof(ChunkEntry) == 3 * sizeof(uint64_t), "ChunkEntry is 3 x u64");
  if (n) std::memcpy(table.mutable_data(), enc.table.data(), n * sizeof(ChunkEntry));
  return py::make_tuple(to_numpy(std::move(enc.payload), enc.size), table);
}

// Many entries in one call: entry i is parts[i] (a buffer), coded with row i of specs, a
// uint64[n, 3] of itemsize, transform, row -> (payload, table) as encode_chunks returns them,
// all chunks in order (chunks.hpp's encode_segments).
py::tuple py_encode_segments(const py::sequence& parts,
                             py::array_t<uint64_t, py::array::c_style | py::array::forcecast> specs,
                             int level, uint64_t chunk_bytes, int threads) {
  const size_t n = size_t(py::len(parts));
  if (specs.ndim() != 2 || specs.shape(1) != 3 || size_t(specs.shape(0)) != n)
    throw std::invalid_argument("specs must be (len(parts), 3)");
  const uint64_t* sp = specs.data();
  std::vector<py::buffer_info> infos;
  std::vector<Segment> segs;
  infos.reserve(n);
  segs.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    infos.push_back(parts[i].cast<py::buffer>().request());
    const View v = contiguous(infos.back(), "part");
    if (sp[3 * i] > 16 || sp[3 * i + 1] > 255 || sp[3 * i + 2] > UINT32_MAX)
      throw std::invalid_argument("bad segment spec");
    segs.push_back({v.ptr, v.size, int(sp[3 * i]), int(sp[3 * i + 1]), uint32_t(sp[3 * i + 2])});
  }
  EncodedChunks enc;
  {
    py::gil_scoped_release nogil;
    enc = wz::encode_segments(segs.data(), n, level, chunk_bytes, threads);
  }
  const size_t k = enc.table.size();
  py::array_t<uint64_t> table({py::ssize_t(k), py::ssize_t(3)});
  if (k) std::memcpy(table.mutable_data(), enc.table.data(), k * sizeof(ChunkEntry));
  return py::make_tuple(to_numpy(std::move(enc.payload), enc.size), table);
}

// table: uint64[n, 4] = offset into payload, csize, rsize, checksum; see chunks.hpp.
void py_decode_chunks(py::buffer payload, py::array_t<uint64_t, py::array::c_style> table,
                      int itemsize, int transform, py::buffer out, int threads, bool verify,
                      py::object ref) {
  const ChunkSpec spec = make_spec(itemsize, transform, kDefault, 0, -1);
  py::buffer_info pin = payload.request();
  const View src = contiguous(pin, "payload");
  py::buffer_info oinfo = out.request(true);
  const View dst = contiguous(oinfo, "out");
  if (table.ndim() != 2 || table.shape(1) != py::ssize_t(kDecodeColumns))
    throw std::invalid_argument("table must be (n, 4)");
  const size_t n = size_t(table.shape(0));
  const uint64_t* tab = table.data();
  py::buffer_info rinfo;
  View rv{nullptr, 0};
  if (!ref.is_none()) {
    rinfo = ref.cast<py::buffer>().request();
    rv = contiguous(rinfo, "ref");
  }
  py::gil_scoped_release nogil;
  wz::decode_chunks(src.ptr, src.size, tab, n, spec, const_cast<uint8_t*>(dst.ptr), dst.size,
                    threads, verify, rv.ptr, rv.size);
}

// table: uint64[n, 7] = offset into payload, csize, rsize, checksum, offset in out, itemsize,
// transform; see chunks.hpp's decode_segments.
void py_decode_segments(py::buffer payload, py::array_t<uint64_t, py::array::c_style | py::array::forcecast> table,
                        py::buffer out, int threads, bool verify) {
  if (table.ndim() != 2 || table.shape(1) != py::ssize_t(kSegmentColumns))
    throw std::invalid_argument("table must be (n, 7)");
  py::buffer_info pin = payload.request();
  const View src = contiguous(pin, "payload");
  py::buffer_info oinfo = out.request(true);
  const View dst = contiguous(oinfo, "out");
  const uint64_t* tab = table.data();
  const size_t n = size_t(table.shape(0));
  py::gil_scoped_release nogil;
  wz::decode_segments(src.ptr, src.size, tab, n, const_cast<uint8_t*>(dst.ptr), dst.size, threads, verify);
}

template <class T>
py::array_t<T> vec_to_numpy(const std::vector<T>& v) {
  return py::array_t<T>(py::ssize_t(v.size()), v.data());
}

// Lanes (in-memory GPU-friendly coding of a float tensor, lanes.hpp).
py::tuple lanes_encode(py::buffer data, int transform) {
  py::buffer_info info = data.request();
  const View v = contiguous(info, "data");
  const size_t k = transform == 3 ? 4 : 2;
  if (v.size % k) throw std::invalid_argument("data is not whole elements");
  lanes::Coded c;
  {
    py::gil_scoped_release nogil;
    c = lanes::encode(v.ptr, v.size / k, transform);
  }
  return py::make_tuple(vec_to_numpy(c.freqs), vec_to_numpy(c.offsets), vec_to_numpy(c.bytes), vec_to_numpy(c.raw));
}

void lanes_decode(py::array_t<uint16_t, py::array::c_style> freqs, py::array_t<uint32_t, py::array::c_style> offsets,
                  py::buffer bytes, py::buffer raw, int transform, py::buffer out, int threads) {
  py::buffer_info binfo = bytes.request(), rinfo = raw.request(), oinfo = out.request(true);
  const View b = contiguous(binfo, "bytes"), r = contiguous(rinfo, "raw"), o = contiguous(oinfo, "out");
  const size_t k = transform == 3 ? 4 : 2;
  const size_t n = o.size / k;
  if (freqs.size() != 256 || o.size % k || r.size != n * (k - 1) ||
      size_t(offsets.size()) != (n + lanes::kLaneSymbols - 1) / lanes::kLaneSymbols + 1)
    throw std::invalid_argument("lanes: sizes do not match");
  py::gil_scoped_release nogil;
  lanes::decode(freqs.data(), offsets.data(), b.ptr, b.size, r.ptr, n, transform, const_cast<uint8_t*>(o.ptr),
                threads);
}

uint64_t hash_buffer(py::buffer data) {
  py::buffer_info info = data.request();
  View v = contiguous(info, "data");
  py::gil_scoped_release nogil;
  return xxh64(v.ptr, v.size);
}

// The parts back to back in one new bytes object (weightzip.compress's result). Its pages are
// asked for as transparent huge pages before the copy: faulting tens of MB in 4 KiB at a time
// took a quarter of compress's time at the fast level.
py::bytes join_bytes(const py::sequence& parts) {
  std::vector<py::buffer_info> infos;
  std::vector<View> views;
  size_t total = 0;
  for (const auto& p : parts) {
    infos.push_back(p.cast<py::buffer>().request());
    views.push_back(contiguous(infos.back(), "part"));
    total += views.back().size;
  }
  PyObject* obj = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(total));
  if (!obj) throw py::error_already_set();
  py::bytes out = py::reinterpret_steal<py::bytes>(obj);
  char* dst = PyBytes_AS_STRING(obj);
  py::gil_scoped_release nogil;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(dst) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(dst) + total) & ~(kHuge - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#endif
  for (const View& v : views) {
    if (v.size) std::memcpy(dst, v.ptr, v.size);
    dst += v.size;
  }
  return out;
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

// A coder's output as a uint8 array that owns it (no copy).
py::array_t<uint8_t> bytes_to_numpy(std::unique_ptr<Bytes> out) {
  const py::ssize_t n = py::ssize_t(out->size());
  uint8_t* p = out->data();
  py::capsule owner(out.release(), [](void* q) { delete static_cast<Bytes*>(q); });
  return py::array_t<uint8_t>({n}, {py::ssize_t(1)}, p, owner);
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
  return bytes_to_numpy(std::move(out));
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


// ---- ARM latent coder (fixed-point autoregressive model, see arm.hpp) ----

// The net from context int32[n_ctx, 2] (dy, dx), weights [int32[out, in], ...] and biases
// [int32[out], ...] (copied: nets are tiny).
arm::ArmNet arm_net(const I32Array& context, const py::sequence& weights,
                    const py::sequence& biases) {
  if (context.ndim() != 2 || context.shape(1) != 2)
    throw std::invalid_argument("context must be (n_ctx, 2): one (dy, dx) row per input");
  arm::ArmNet net;
  const int32_t* c = context.data();
  for (py::ssize_t j = 0; j < context.shape(0); ++j)
    net.context.push_back({c[2 * j], c[2 * j + 1]});
  if (py::len(weights) != py::len(biases))
    throw std::invalid_argument("weights and biases need one array per layer");
  for (size_t l = 0; l < py::len(weights); ++l) {
    const auto w = py::cast<I32Array>(weights[l]);
    const auto b = py::cast<I32Array>(biases[l]);
    if (w.ndim() != 2 || b.ndim() != 1)
      throw std::invalid_argument("layer " + std::to_string(l) +
                                  ": weights must be 2-D (out, in), biases 1-D (out)");
    if (w.shape(0) != b.shape(0))
      throw std::invalid_argument("layer " + std::to_string(l) + ": weights have " +
                                  std::to_string(w.shape(0)) + " rows for " +
                                  std::to_string(b.shape(0)) + " biases");
    net.weights.emplace_back(w.data(), w.data() + w.size());
    net.biases.emplace_back(b.data(), b.data() + b.size());
  }
  return net;
}

arm::Shape arm_shape(py::handle h) {
  const auto t = py::cast<std::pair<py::ssize_t, py::ssize_t>>(h);
  if (t.first < 0 || t.second < 0) throw std::invalid_argument("negative level shape");
  return {size_t(t.first), size_t(t.second)};
}

py::array_t<uint8_t> arm_encode(const py::sequence& levels, const I32Array& context,
                                const py::sequence& weights, const py::sequence& biases,
                                int alphabet, int threads) {
  const arm::ArmNet net = arm_net(context, weights, biases);
  std::vector<I32Array> keep;
  std::vector<const int32_t*> ptrs;
  std::vector<arm::Shape> shapes;
  for (py::handle h : levels) {
    keep.push_back(py::cast<I32Array>(h));
    const I32Array& a = keep.back();
    if (a.ndim() != 2) throw std::invalid_argument("every level must be 2-D (h, w)");
    ptrs.push_back(a.data());
    shapes.push_back({size_t(a.shape(0)), size_t(a.shape(1))});
  }
  auto out = std::make_unique<Bytes>();
  {
    py::gil_scoped_release nogil;
    *out = arm::encode(ptrs, shapes, net, alphabet, threads);
  }
  return bytes_to_numpy(std::move(out));
}

py::list arm_decode(py::buffer payload, const py::sequence& shapes, const I32Array& context,
                    const py::sequence& weights, const py::sequence& biases, int alphabet,
                    int threads) {
  py::buffer_info info = payload.request();
  const View src = contiguous(info, "payload");
  const arm::ArmNet net = arm_net(context, weights, biases);
  std::vector<arm::Shape> sh;
  for (py::handle h : shapes) sh.push_back(arm_shape(h));
  arm::check_shapes(sh);  // before allocating the outputs
  py::list result;
  std::vector<int32_t*> out;
  for (const arm::Shape& s : sh) {
    py::array_t<int32_t> a({py::ssize_t(s.h), py::ssize_t(s.w)});
    out.push_back(a.mutable_data());
    result.append(a);
  }
  {
    py::gil_scoped_release nogil;
    arm::decode(src.ptr, src.size, sh, net, alphabet, out, threads);
  }
  return result;
}

py::tuple arm_params(const I32Array& level, const I32Array& context, const py::sequence& weights,
                     const py::sequence& biases, int alphabet) {
  if (level.ndim() != 2) throw std::invalid_argument("the level must be 2-D (h, w)");
  const arm::ArmNet net = arm_net(context, weights, biases);
  const arm::Shape s{size_t(level.shape(0)), size_t(level.shape(1))};
  py::array_t<int32_t> mu({level.shape(0), level.shape(1)}), ls({level.shape(0), level.shape(1)}),
      freq({level.shape(0), level.shape(1)});
  int32_t *pm = mu.mutable_data(), *pl = ls.mutable_data(), *pf = freq.mutable_data();
  {
    py::gil_scoped_release nogil;
    arm::params(level.data(), s, net, alphabet, pm, pl, pf);
  }
  return py::make_tuple(mu, ls, freq);
}

py::array_t<int32_t> arm_cdf(const I32Array& mu, const I32Array& ls, int alphabet) {
  arm::check_alphabet(alphabet);
  if (mu.ndim() != 1 || ls.ndim() != 1 || mu.shape(0) != ls.shape(0))
    throw std::invalid_argument("mu and log_scale must be 1-D, of the same length");
  const py::ssize_t n = mu.shape(0), row = 2 * py::ssize_t(alphabet) + 2;
  py::array_t<int32_t> out({n, row});
  int32_t* po = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    arm::cdf_table(mu.data(), ls.data(), size_t(n), alphabet, po);
  }
  return out;
}

py::tuple arm_tables() {
  auto copy = [](const uint64_t* t) {
    py::array_t<uint64_t> a(256);
    std::memcpy(a.mutable_data(), t, 256 * sizeof(uint64_t));
    return a;
  };
  return py::make_tuple(copy(arm::table_recip()), copy(arm::table_exp_hi()),
                        copy(arm::table_exp_lo()));
}

// ---- Upsampler and synthesis of overfitted image decoders (see synthesis.hpp) ----

// Latent levels: 2-D int32 arrays, finest first (kept alive by `keep`).
std::vector<syn::Grid> syn_levels(const py::sequence& levels, std::vector<I32Array>& keep) {
  std::vector<syn::Grid> out;
  for (py::handle h : levels) {
    keep.push_back(py::cast<I32Array>(h));
    const I32Array& a = keep.back();
    if (a.ndim() != 2) throw std::invalid_argument("every latent level must be 2-D (h, w)");
    out.push_back({a.data(), size_t(a.shape(0)), size_t(a.shape(1))});
  }
  syn::check_shapes(out);
  return out;
}

// Layers from weights [int32[out, in, k, k], ...], biases [int32[out], ...], flags [int, ...].
std::vector<syn::Layer> syn_layers(const py::sequence& weights, const py::sequence& biases,
                                   const py::sequence& flag_seq, std::vector<I32Array>& keep) {
  std::vector<int> flags;
  for (py::handle f : flag_seq) flags.push_back(py::cast<int>(f));
  if (py::len(weights) != py::len(biases) || py::len(weights) != flags.size())
    throw std::invalid_argument("weights, biases and flags need one entry per layer");
  std::vector<syn::Layer> out;
  for (size_t l = 0; l < flags.size(); ++l) {
    keep.push_back(py::cast<I32Array>(weights[l]));
    keep.push_back(py::cast<I32Array>(biases[l]));
    const I32Array& w = keep[keep.size() - 2];
    const I32Array& b = keep.back();
    if (w.ndim() != 4 || w.shape(2) != w.shape(3) || b.ndim() != 1 || b.shape(0) != w.shape(0))
      throw std::invalid_argument("synthesis layer " + std::to_string(l) +
                                  ": weights must be (out, in, k, k), biases (out,)");
    out.push_back({int(std::min<py::ssize_t>(w.shape(0), 1 << 20)),
                   int(std::min<py::ssize_t>(w.shape(1), 1 << 20)),
                   int(std::min<py::ssize_t>(w.shape(2), 1 << 20)), flags[l], w.data(), b.data()});
  }
  return out;
}

const int32_t* syn_taps(const I32Array& taps) {
  if (taps.ndim() != 1 || taps.shape(0) != 4) throw std::invalid_argument("taps must be int32[4]");
  return taps.data();
}

py::array_t<int32_t> synth_upsample(const py::sequence& levels, const I32Array& taps, int k_up) {
  std::vector<I32Array> keep;
  const auto lv = syn_levels(levels, keep);
  const int32_t* t = syn_taps(taps);
  py::array_t<int32_t> out({py::ssize_t(lv.size()), py::ssize_t(lv[0].h), py::ssize_t(lv[0].w)});
  int32_t* po = out.mutable_data();
  py::gil_scoped_release nogil;
  syn::upsample(lv, t, k_up, po);
  return out;
}

py::array_t<int32_t> synth_forward(const I32Array& x, const py::sequence& weights,
                                   const py::sequence& biases, const py::sequence& flags,
                                   int k_syn) {
  if (x.ndim() != 3) throw std::invalid_argument("the synthesis input must be 3-D (planes, h, w)");
  std::vector<I32Array> keep;
  const auto layers = syn_layers(weights, biases, flags, keep);
  syn::check_layers(layers, size_t(x.shape(0)), k_syn);  // before allocating the output
  const size_t h = size_t(x.shape(1)), w = size_t(x.shape(2));
  py::array_t<int32_t> out({py::ssize_t(layers.back().out), x.shape(1), x.shape(2)});
  int32_t* po = out.mutable_data();
  py::gil_scoped_release nogil;
  syn::forward(x.data(), size_t(x.shape(0)), h, w, layers, k_syn, po);
  return out;
}

py::array_t<uint8_t> synth_decode(const py::sequence& levels, const I32Array& taps, int k_up,
                                  const py::sequence& weights, const py::sequence& biases,
                                  const py::sequence& flags, int k_syn) {
  std::vector<I32Array> keep;
  const auto lv = syn_levels(levels, keep);
  const int32_t* t = syn_taps(taps);
  const auto layers = syn_layers(weights, biases, flags, keep);
  syn::check_layers(layers, lv.size(), k_syn);
  py::array_t<uint8_t> out(
      {py::ssize_t(lv[0].h), py::ssize_t(lv[0].w), py::ssize_t(layers.back().out)});
  uint8_t* po = out.mutable_data();
  py::gil_scoped_release nogil;
  syn::decode(lv, t, k_up, layers, k_syn, po);
  return out;
}

// ---- Lossy core: bound-checked quantiser + context-adaptive binary coder (lossy.hpp) ----

quant::DType lossy_dtype(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (s == "f32" || s == "float32") return quant::DType::kF32;
  if (s == "f16" || s == "float16") return quant::DType::kF16;
  if (s == "bf16" || s == "bfloat16") return quant::DType::kBF16;
  if (s == "f64" || s == "float64") return quant::DType::kF64;
  throw std::invalid_argument("lossy: dtype must be F32, F16, BF16 or F64, not " + s);
}

// An optional reference of exactly `size` bytes (nullptr for None).
const uint8_t* lossy_ref(const py::object& ref, py::buffer_info& keep, size_t size) {
  if (ref.is_none()) return nullptr;
  keep = ref.cast<py::buffer>().request();
  const View v = contiguous(keep, "pred");
  if (v.size != size) throw std::invalid_argument("pred must have as many bytes as the data");
  return v.ptr;
}

py::tuple lossy_encode(py::buffer data, const std::string& dtype, double step, double bound,
                       const std::string& domain, py::object pred, uint32_t row, int threads,
                       double theta) {
  quant::Spec spec;
  spec.dtype = lossy_dtype(dtype);
  if (domain != "linear" && domain != "sqrt")
    throw std::invalid_argument("lossy: domain must be 'linear' or 'sqrt'");
  spec.domain = domain == "sqrt" ? quant::Domain::kSqrt : quant::Domain::kLinear;
  spec.step = step;
  spec.bound = bound;
  spec.theta = theta;
  quant::check_spec(spec);
  py::buffer_info info = data.request(), pinfo;
  const View in = contiguous(info, "data");
  const size_t isz = size_t(quant::itemsize(spec.dtype));
  if (in.size % isz) throw std::invalid_argument("data is not whole elements");
  const uint8_t* pr = lossy_ref(pred, pinfo, in.size);
  py::array_t<uint8_t> recon(py::ssize_t(in.size));
  uint8_t* rp = recon.mutable_data();
  auto out = std::make_unique<Bytes>();
  {
    py::gil_scoped_release nogil;
    *out = lossy::encode(in.ptr, in.size / isz, pr, spec, row, threads, rp);
  }
  return py::make_tuple(bytes_to_numpy(std::move(out)), recon);
}

// The lossy form of encode_chunks -> (payload, table, recon): see chunks.hpp.
py::tuple py_encode_chunks_lossy(py::buffer data, int itemsize, int transform, uint64_t chunk_bytes,
                                 uint32_t row, int threads, double step, double bound,
                                 const std::string& domain, py::object pred) {
  const ChunkSpec spec = make_spec(itemsize, transform, kDefault, row, -1);
  quant::Spec q;
  q.dtype = quant_dtype(spec);
  if (domain != "linear" && domain != "sqrt")
    throw std::invalid_argument("lossy: domain must be 'linear' or 'sqrt'");
  q.domain = domain == "sqrt" ? quant::Domain::kSqrt : quant::Domain::kLinear;
  q.step = step;
  q.bound = bound;
  py::buffer_info info = data.request(), pinfo;
  const View in = contiguous(info, "data");
  const uint8_t* pr = lossy_ref(pred, pinfo, in.size);
  py::array_t<uint8_t> recon(py::ssize_t(in.size));
  uint8_t* rp = recon.mutable_data();
  EncodedChunks enc;
  {
    py::gil_scoped_release nogil;
    enc = wz::encode_chunks_lossy(in.ptr, in.size, spec, q, chunk_bytes, threads, pr, rp);
  }
  const size_t n = enc.table.size();
  py::array_t<uint64_t> table({py::ssize_t(n), py::ssize_t(3)});
  if (n) std::memcpy(table.mutable_data(), enc.table.data(), n * sizeof(ChunkEntry));
  return py::make_tuple(to_numpy(std::move(enc.payload), enc.size), table, recon);
}

py::array_t<uint8_t> lossy_decode(py::buffer payload, uint64_t n, const std::string& dtype,
                                  py::object pred, int threads) {
  const quant::DType dt = lossy_dtype(dtype);
  py::buffer_info info = payload.request(), pinfo;
  const View src = contiguous(info, "payload");
  const size_t isz = size_t(quant::itemsize(dt));
  if (n > (uint64_t(1) << 48)) throw std::invalid_argument("lossy: n is too large");
  const uint8_t* pr = lossy_ref(pred, pinfo, size_t(n) * isz);
  py::array_t<uint8_t> out(py::ssize_t(n * isz));
  uint8_t* op = out.mutable_data();
  py::gil_scoped_release nogil;
  lossy::decode(src.ptr, src.size, size_t(n), dt, pr, op, threads);
  return out;
}

py::dict lossy_info(py::buffer payload) {
  py::buffer_info info = payload.request();
  const View src = contiguous(info, "payload");
  const lossy::Info i = lossy::info(src.ptr, src.size);
  static const char* names[] = {"F32", "F16", "BF16", "F64"};
  py::dict d;
  d["dtype"] = names[int(i.dtype)];
  d["domain"] = i.domain == quant::Domain::kSqrt ? "sqrt" : "linear";
  d["predicted"] = i.predicted;
  d["step"] = i.step;
  d["n"] = i.n;
  d["row"] = i.row;
  d["exceptions"] = i.exceptions;
  return d;
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
        py::arg("threads") = 0, py::arg("force_method") = -1, py::arg("ref") = py::none(),
        py::arg("predictor") = -1);
  m.def("encode_segments", &py_encode_segments, py::arg("parts"), py::arg("specs"), py::arg("level"),
        py::arg("chunk_bytes"), py::arg("threads") = 0);
  m.def("decode_chunks", &py_decode_chunks, py::arg("payload"), py::arg("table"),
        py::arg("itemsize"), py::arg("transform"), py::arg("out"), py::arg("threads") = 0,
        py::arg("verify") = true, py::arg("ref") = py::none());
  m.def("decode_segments", &py_decode_segments, py::arg("payload"), py::arg("table"), py::arg("out"),
        py::arg("threads") = 0, py::arg("verify") = true);
  m.def("xxh64", &hash_buffer, py::arg("data"));
  m.def("join_bytes", &join_bytes, py::arg("parts"));
  m.def("lanes_encode", &lanes_encode, py::arg("data"), py::arg("transform"));
  m.def("lanes_decode", &lanes_decode, py::arg("freqs"), py::arg("offsets"), py::arg("bytes"), py::arg("raw"),
        py::arg("transform"), py::arg("out"), py::arg("threads") = 1);
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
  m.def("arm_encode", &arm_encode, py::arg("levels"), py::arg("context"), py::arg("weights"),
        py::arg("biases"), py::arg("alphabet"), py::arg("threads") = 1,
        "ARM-code int32 latent grids (arm.hpp) -> uint8 payload");
  m.def("arm_decode", &arm_decode, py::arg("payload"), py::arg("shapes"), py::arg("context"),
        py::arg("weights"), py::arg("biases"), py::arg("alphabet"), py::arg("threads") = 1,
        "Inverse of arm_encode -> list of int32 grids");
  m.def("arm_params", &arm_params, py::arg("level"), py::arg("context"), py::arg("weights"),
        py::arg("biases"), py::arg("alphabet"),
        "-> (mu, log_scale, freq) int32 grids of one level");
  m.def("arm_cdf", &arm_cdf, py::arg("mu"), py::arg("log_scale"), py::arg("alphabet"),
        "-> int32[n, 2A + 2]: the cumulative frequencies C(0..2A+1) of each (mu, log_scale)");
  m.def("arm_tables", &arm_tables, "-> (RECIP, EXP_HI, EXP_LO), uint64[256] each");
  m.def("synth_upsample", &synth_upsample, py::arg("levels"), py::arg("taps"), py::arg("k_up"),
        "Latent levels (finest first) -> the synthesis input, int32[L, H, W] (synthesis.hpp)");
  m.def("synth_forward", &synth_forward, py::arg("x"), py::arg("weights"), py::arg("biases"),
        py::arg("flags"), py::arg("k_syn"),
        "The synthesis of int32[L, H, W] -> the last layer's int32[planes, H, W]");
  m.def("synth_decode", &synth_decode, py::arg("levels"), py::arg("taps"), py::arg("k_up"),
        py::arg("weights"), py::arg("biases"), py::arg("flags"), py::arg("k_syn"),
        "Latent levels -> pixels, uint8[H, W, planes] (upsample, synthesis, conversion)");
  m.def("synth_kernel", &syn::kernel_name, "-> the synthesis kernels in use: avx512, avx2, generic");
  m.def("encode_chunks_lossy", &py_encode_chunks_lossy, py::arg("data"), py::arg("itemsize"),
        py::arg("transform"), py::arg("chunk_bytes"), py::arg("row"), py::arg("threads"),
        py::arg("step"), py::arg("bound"), py::arg("domain") = "linear", py::arg("pred") = py::none(),
        "Quantised chunks of a float buffer -> (payload, table uint64[n, 3], reconstruction)");
  m.def("lossy_encode", &lossy_encode, py::arg("data"), py::arg("dtype"), py::arg("step"),
        py::arg("bound"), py::arg("domain") = "linear", py::arg("pred") = py::none(),
        py::arg("row") = 0, py::arg("threads") = 1, py::arg("theta") = 0.5,
        "Bound-checked quantisation + CABAC of a float buffer -> (payload, recon), uint8 arrays");
  m.def("lossy_decode", &lossy_decode, py::arg("payload"), py::arg("n"), py::arg("dtype"),
        py::arg("pred") = py::none(), py::arg("threads") = 1,
        "Inverse of lossy_encode -> the reconstruction, uint8[n * itemsize]");
  m.def("lossy_info", &lossy_info, py::arg("payload"),
        "-> dict(dtype, domain, predicted, step, n, row, exceptions) of a lossy payload");
}
