// Fixed-order sums shared by the VQ conv kernels: a warp's values meet in a butterfly (every
// lane gets the same total), a block's warp totals are then added in warp order, the same order
// in every thread. The result depends on the block size alone, so it is the same on every run;
// no atomics. Also the compensated (Kahan) float sum of the GroupNorm statistics
// (conv_group_norm.cuh).
#pragma once

namespace cb {
namespace conv_reduce {

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The block-wide sum of each thread's v, returned to every thread, for blocks of kThreads;
// `partial` (shared) holds kThreads / 32 values. The trailing __syncthreads lets the caller
// reuse it for the next sum.
template <int kThreads, typename T>
__device__ inline T block_sum(T v, T* partial) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < kWarps; w++) total += partial[w];  // same order in every thread
  __syncthreads();
  return total;
}

// The same for two sums at once; `partial` (shared) holds 2 kThreads / 32 doubles.
template <int kThreads>
__device__ inline void block_sum2(double* a, double* b, double* partial) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const double wa = warp_sum(*a), wb = warp_sum(*b);
  if (lane == 0) {
    partial[warp] = wa;
    partial[kWarps + warp] = wb;
  }
  __syncthreads();
  double ta = 0.0, tb = 0.0;
  for (int w = 0; w < kWarps; w++) {
    ta += partial[w];
    tb += partial[kWarps + w];
  }
  __syncthreads();
  *a = ta;
  *b = tb;
}

// Kahan summation: `sum` plus the running compensation `lost` (nvcc keeps the order: no
// fast-math here).
struct CompensatedSum {
  float sum = 0.0f, lost = 0.0f;
  __device__ void add(float v) {
    const float y = v - lost;
    const float t = sum + y;
    lost = (t - sum) - y;
    sum = t;
  }
};

}  // namespace conv_reduce
}  // namespace cb
