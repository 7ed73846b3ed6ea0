// Device helpers of the mixed-precision kernels (mixed_ops.h): a kernel templated on its output
// type writes an fp32 result through out(), rounded to nearest (ties to even) for bf16.
#pragma once

#include <cuda_bf16.h>

#include "../model/mixed_ops.h"

namespace cb {

__device__ inline void out(float* p, float v) { *p = v; }
__device__ inline void out(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// The model's bf16_t storage seen as CUDA's bf16 type (both are the same two bytes).
inline __nv_bfloat16* device_bf16(bf16_t* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
inline const __nv_bfloat16* device_bf16(const bf16_t* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}

}  // namespace cb
