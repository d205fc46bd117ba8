// libFuzzer harness: the float-aware byte-plane transforms (csrc/transform.hpp). Frame: u8
// spec (frames.hpp), then element bytes. Both directions are bijections on whole elements:
// merge(split(x)) == x for any bytes, and split(merge(planes)) == planes for any planes (the
// decoder merges planes it has not validated, so every plane byte must survive).
#include <cstring>

#include "frames.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return -1;
  const wz::ChunkSpec spec = fz::chunk_spec(data[0]);
  const int k = wz::transform_width(spec.transform, spec.itemsize);
  const size_t n = (size - 1) / size_t(k), nbytes = n * size_t(k);
  const uint8_t* src = data + 1;
  fz::Bytes planes(nbytes + 1, fz::kFillA), back(nbytes + 1, fz::kFillB), again(nbytes + 1);
  uint8_t* wp[16];
  const uint8_t* rp[16];
  for (int b = 0; b < k; ++b) rp[b] = wp[b] = planes.data() + size_t(b) * n;
  wz::split_planes(spec.transform, k, src, n, wp);
  wz::merge_planes(spec.transform, k, rp, n, back.data());
  if (std::memcmp(back.data(), src, nbytes) != 0) fz::finding("merge(split(x)) != x");
  // The input read as planes: merge, then split must give them back.
  for (int b = 0; b < k; ++b) rp[b] = src + size_t(b) * n;
  wz::merge_planes(spec.transform, k, rp, n, back.data());
  for (int b = 0; b < k; ++b) wp[b] = again.data() + size_t(b) * n;
  wz::split_planes(spec.transform, k, back.data(), n, wp);
  if (std::memcmp(again.data(), src, nbytes) != 0) fz::finding("split(merge(planes)) != planes");
  return 0;
}
