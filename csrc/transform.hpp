// Float-aware byte-plane transforms: an array of fixed-width values <-> k byte streams.
//
// For floats the sign bit is rotated below the exponent so that stream 0 holds exactly the
// exponent (ZipNN / DFloat11 observation: trained weights carry ~2.6 bits of information
// in the 8 exponent bits, and the rest is near-random mantissa). Other streams are byte planes.
#pragma once
#include <cstdint>

#include "common.hpp"

namespace wz {

// Stored in files: never renumber.
enum class Transform : uint8_t {
  kBytes = 0,  // identity byte planes (ints, bool, opaque bytes); k = item size
  kBF16 = 1,   // [exponent], [sign | mantissa 7]
  kFP16 = 2,   // [exponent 5 | mantissa hi 2 | sign], [mantissa lo 8]
  kFP32 = 3,   // [exponent], [sign | mantissa 22..16], [mantissa 15..8], [mantissa 7..0]
  kFP64 = 4,   // [exponent hi 8], [sign | exponent lo 3 | mantissa 51..48], 6 mantissa planes
  kFP8 = 5,    // [exponent | mantissa | sign]  (E4M3 and E5M2 alike)
};

// Number of streams / bytes per element for a transform and item size; throws on mismatch.
int transform_width(Transform t, int itemsize);

// Split n elements (n * k bytes at src) into k planes of n bytes each: planes[s] + i.
void split_planes(Transform t, int k, const uint8_t* src, size_t n, uint8_t* const* planes);

// Inverse of split_planes.
void merge_planes(Transform t, int k, const uint8_t* const* planes, size_t n, uint8_t* dst);

}  // namespace wz
