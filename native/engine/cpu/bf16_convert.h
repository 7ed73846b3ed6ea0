// float <-> bfloat16 on the CPU: rounding to nearest, ties to even, denormals kept, NaN stays a
// (quiet) NaN. The scalar functions are the definition; the span loops in bf16_convert.cc do
// the same per element (compiled for AVX-512 and for the baseline, picked at load).
#pragma once

#include <cstdint>
#include <cstring>

#include "../model/mixed_ops.h"

namespace cb {

inline bf16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  // Adding 0x7fff plus the lowest kept bit rounds the dropped half to nearest, ties to even;
  // a NaN would round into Inf, so it keeps its sign and top bits with the quiet bit set.
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  return bf16_t{uint16_t(nan ? (u >> 16) | 0x40u : rounded)};
}

inline float bf16_to_float(bf16_t h) {
  const uint32_t u = uint32_t(h.bits) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The float nearest to x in bf16 (float_to_bf16 then back).
inline float round_to_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

// dst[i] = float_to_bf16(src[i]) for i < n.
void float_to_bf16_span(const float* src, bf16_t* dst, int64_t n);

}  // namespace cb
