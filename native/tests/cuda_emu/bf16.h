// bfloat16 for the CUDA emulation (CUDA's cuda_bf16.h): the type, two bytes holding the high
// half of a float, and the conversions, bit-exact with CUDA's: float -> bf16 rounds to
// nearest with ties to even (denormals kept, a NaN becomes the canonical 0x7fff), bf16 ->
// float is exact.
#pragma once

#include <cstdint>
#include <cstring>

#include "vector_types.h"

namespace cb_emu {

inline unsigned short float_to_bf16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;  // NaN
  const uint32_t rest = u & 0xffffu, half = 0x8000u;
  uint32_t r = u >> 16;
  if (rest > half || (rest == half && (r & 1u))) r++;  // may carry into the exponent: inf
  return (unsigned short)r;
}

inline unsigned short float_to_bf16_rz(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  return (unsigned short)(u >> 16);
}

inline float bf16_to_float(unsigned short b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace cb_emu

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;  // trivial, so __shared__ arrays of it need no initialisation
  __nv_bfloat16(float f) : __x(::cb_emu::float_to_bf16_rn(f)) {}
  operator float() const { return ::cb_emu::bf16_to_float(__x); }
};
static_assert(sizeof(__nv_bfloat16) == 2, "bf16 is two bytes");

struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

inline __nv_bfloat16 cb_emu_bf16_from_bits(unsigned short bits) {
  __nv_bfloat16 h;
  h.__x = bits;
  return h;
}

inline __nv_bfloat16 __float2bfloat16(float f) {
  return cb_emu_bf16_from_bits(::cb_emu::float_to_bf16_rn(f));
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) {
  return cb_emu_bf16_from_bits(::cb_emu::float_to_bf16_rz(f));
}
inline float __bfloat162float(__nv_bfloat16 h) { return ::cb_emu::bf16_to_float(h.__x); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)};
}
inline __nv_bfloat162 __float22bfloat162_rn(float2 v) { return __floats2bfloat162_rn(v.x, v.y); }
inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
inline float2 __bfloat1622float2(__nv_bfloat162 v) {
  return float2{__bfloat162float(v.x), __bfloat162float(v.y)};
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short bits) {
  return cb_emu_bf16_from_bits(bits);
}
