// CUDA decoder of lanes (csrc/lanes.hpp): one thread per lane of 4096 exponent symbols, the
// decoder table in shared memory, each element merged with its raw planes and written as
// it is decoded. decode_lane() and merge_element() are the functions the CPU decoder runs
// (csrc/lanes.cpp), so the bits are the same. Built into the wheel as libwzlanes when CMake
// finds a CUDA compiler (CMakeLists.txt), else on demand by weightzip/cuda_lanes.py.
#include <cstdint>

#include "../lanes.hpp"

namespace {

__global__ void lanes_kernel(const uint16_t* __restrict__ freqs, const uint32_t* __restrict__ offsets,
                             const uint8_t* __restrict__ bytes, const uint8_t* __restrict__ raw, uint64_t n,
                             int transform, uint8_t* __restrict__ dst, int* __restrict__ failed) {
  using namespace wz::lanes;
  __shared__ uint32_t slots[kScale];  // 16 KiB
  __shared__ uint32_t start[257];
  if (threadIdx.x == 0) {
    uint32_t acc = 0;
    for (int s = 0; s < 256; ++s) start[s] = acc, acc += freqs[s];
    start[256] = acc;
  }
  __syncthreads();
  for (uint32_t s = threadIdx.x; s < 256; s += blockDim.x)
    for (uint32_t j = start[s]; j < start[s + 1] && j < kScale; ++j) slots[j] = pack_slot(s, freqs[s], start[s]);
  __syncthreads();
  const uint64_t lane = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t lanes = (n + kLaneSymbols - 1) / kLaneSymbols;
  if (lane >= lanes) return;
  const uint64_t lo = lane * kLaneSymbols;
  const uint32_t m = uint32_t(n - lo < kLaneSymbols ? n - lo : kLaneSymbols);
  const int k = transform == 3 ? 4 : 2;
  auto put = [&](uint32_t i, uint32_t e) {
    const uint64_t at = lo + i;
    const uint32_t v = merge_element(transform, e, raw[at], k > 2 ? raw[n + at] : 0, k > 2 ? raw[2 * n + at] : 0);
    if (k == 2) {
      reinterpret_cast<uint16_t*>(dst)[at] = uint16_t(v);
    } else {
      reinterpret_cast<uint32_t*>(dst)[at] = v;
    }
  };
  if (!decode_lane(bytes + offsets[lane], offsets[lane + 1] - offsets[lane], slots, m, put)) *failed = 1;
}

}  // namespace

// All pointers are device pointers; stream is a cudaStream_t (0: the default stream); failed
// is a device int set to 1 if a lane is corrupt. Returns a cudaError_t (0 on success).
extern "C" int wz_lanes_decode_cuda(const uint16_t* freqs, const uint32_t* offsets, const uint8_t* bytes,
                                    const uint8_t* raw, uint64_t n, int transform, uint8_t* dst, int* failed,
                                    void* stream) {
  if (n == 0) return 0;
  const uint64_t lanes = (n + wz::lanes::kLaneSymbols - 1) / wz::lanes::kLaneSymbols;
  const unsigned threads = 64;
  const unsigned blocks = unsigned((lanes + threads - 1) / threads);
  lanes_kernel<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(freqs, offsets, bytes, raw, n, transform,
                                                                          dst, failed);
  return int(cudaGetLastError());
}
