#include "lossy.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "cabac.hpp"
#include "parallel.hpp"

namespace wz::lossy {

namespace {

struct Parsed {
  Info info;
  int seg_log2;
  std::vector<const uint8_t*> seg;  // segment streams
  std::vector<size_t> seg_len;
  std::vector<quant::Exception> exc;
};

Parsed parse(const uint8_t* p, size_t len) {
  Reader rd(p, len);
  Parsed r;
  if (rd.u8() != 1) throw FormatError("lossy: unknown payload version");
  const uint8_t f = rd.u8();
  if (f >> 4) throw FormatError("lossy: bad flags");
  r.info.dtype = quant::DType(f & 3);
  r.info.domain = quant::Domain((f >> 2) & 1);
  r.info.predicted = (f >> 3) & 1;
  r.seg_log2 = rd.u8();
  if (r.seg_log2 < 8 || r.seg_log2 > 30) throw FormatError("lossy: bad segment size");
  const uint64_t sb = load_u64(rd.take(8));
  std::memcpy(&r.info.step, &sb, 8);
  if (!std::isfinite(r.info.step) || !(r.info.step >= 0)) throw FormatError("lossy: bad step");
  r.info.n = rd.varint();
  const uint64_t row = rd.varint();
  if (row > 0xffffffffu) throw FormatError("lossy: bad row length");
  r.info.row = uint32_t(row);
  const uint64_t seg = 1ULL << r.seg_log2;
  const uint64_t nseg = r.info.n / seg + (r.info.n % seg != 0);
  if (nseg > rd.left()) throw FormatError("lossy: truncated segment table");
  uint64_t total = 0;
  for (uint64_t i = 0; i < nseg; ++i) {
    const uint64_t l = rd.varint();
    if (l > len) throw FormatError("lossy: bad segment length");
    r.seg_len.push_back(size_t(l));
    total += l;
  }
  if (total > rd.left()) throw FormatError("lossy: truncated segments");
  const uint8_t* at = rd.take(size_t(total));
  for (size_t l : r.seg_len) {
    r.seg.push_back(at);
    at += l;
  }
  const uint64_t ne = rd.varint();
  const size_t isz = size_t(quant::itemsize(r.info.dtype));
  if (ne > r.info.n || ne > rd.left() / (isz + 1)) throw FormatError("lossy: bad exception count");
  r.exc.reserve(size_t(ne));
  uint64_t prev = ~0ULL;
  for (uint64_t i = 0; i < ne; ++i) {
    const uint64_t gap = rd.varint();
    if (gap >= r.info.n - (prev + 1)) throw FormatError("lossy: exception index out of range");
    prev = prev + 1 + gap;
    uint64_t bits = 0;
    std::memcpy(&bits, rd.take(isz), isz);
    r.exc.push_back({prev, bits});
  }
  if (rd.left()) throw FormatError("lossy: trailing bytes");
  r.info.exceptions = ne;
  return r;
}

}  // namespace

Bytes encode(const uint8_t* x, size_t n, const uint8_t* pred, const quant::Spec& spec,
             uint32_t row, int threads, uint8_t* recon, int seg_log2) {
  quant::check_spec(spec);
  if (seg_log2 < 8 || seg_log2 > 30) throw std::invalid_argument("lossy: seg_log2 must be in 8..30");
  const size_t seg = size_t(1) << seg_log2, nseg = (n + seg - 1) / seg;
  const size_t isz = size_t(quant::itemsize(spec.dtype));
  std::vector<Bytes> streams(nseg);
  std::vector<std::vector<quant::Exception>> excs(nseg);
  parallel_for(nseg, threads, [&](size_t s, int) {
    const size_t off = s * seg, m = std::min(seg, n - off);
    std::vector<int32_t> q(m);
    std::vector<uint8_t> cls(pred ? m : 0);
    const uint8_t* pr = pred ? pred + off * isz : nullptr;
    quant::quantise(spec, x + off * isz, pr, m, q.data(), recon + off * isz, excs[s], off);
    if (pred) quant::pred_classes(spec, pr, m, cls.data());
    cabac::encode(q.data(), m, pred ? cls.data() : nullptr, row, streams[s]);
  });
  Bytes out;
  put_u8(out, 1);
  put_u8(out, uint8_t(uint8_t(spec.dtype) | uint8_t(spec.domain) << 2 | uint8_t(pred != nullptr) << 3));
  put_u8(out, uint8_t(seg_log2));
  uint64_t sb;
  std::memcpy(&sb, &spec.step, 8);
  for (int i = 0; i < 8; ++i) put_u8(out, uint8_t(sb >> (8 * i)));
  put_varint(out, n);
  put_varint(out, row);
  for (const Bytes& b : streams) put_varint(out, b.size());
  for (const Bytes& b : streams) out.insert(out.end(), b.begin(), b.end());
  size_t ne = 0;
  for (const auto& e : excs) ne += e.size();
  put_varint(out, ne);
  uint64_t next = 0;
  for (const auto& es : excs) {
    for (const quant::Exception& e : es) {
      put_varint(out, e.index - next);
      next = e.index + 1;
      for (size_t i = 0; i < isz; ++i) put_u8(out, uint8_t(e.bits >> (8 * i)));
    }
  }
  return out;
}

Info info(const uint8_t* p, size_t len) { return parse(p, len).info; }

void decode(const uint8_t* p, size_t len, size_t n, quant::DType dtype, const uint8_t* pred,
            uint8_t* out, int threads) {
  const Parsed r = parse(p, len);
  if (r.info.n != n) throw FormatError("lossy: element count mismatch");
  if (r.info.dtype != dtype) throw FormatError("lossy: dtype mismatch");
  if (r.info.predicted != (pred != nullptr))
    throw FormatError(r.info.predicted ? "lossy: payload needs its reference"
                                       : "lossy: payload is not predicted, but a reference was given");
  quant::Spec spec;
  spec.dtype = dtype;
  spec.domain = r.info.domain;
  spec.step = r.info.step;
  const size_t seg = size_t(1) << r.seg_log2, isz = size_t(quant::itemsize(dtype));
  parallel_for(r.seg.size(), threads, [&](size_t s, int) {
    const size_t off = s * seg, m = std::min(seg, n - off);
    std::vector<int32_t> q(m);
    std::vector<uint8_t> cls(pred ? m : 0);
    const uint8_t* pr = pred ? pred + off * isz : nullptr;
    if (pred) quant::pred_classes(spec, pr, m, cls.data());
    cabac::decode(r.seg[s], r.seg_len[s], pred ? cls.data() : nullptr, r.info.row, q.data(), m);
    quant::reconstruct(spec, q.data(), pr, m, out + off * isz);
  });
  for (const quant::Exception& e : r.exc) std::memcpy(out + e.index * isz, &e.bits, isz);
}

}  // namespace wz::lossy
