// CudaConvOps GroupNorm and GroupNorm + swish. One block of 512 threads per (b, group); the
// group's (C / groups) * HW values are contiguous in x, and the threads walk them with a stride
// of the block size (coalesced). Two passes, as the reference: the mean, then the biased
// variance about it. Each pass is a compensated (Kahan) float sum per thread (about 500 values
// per thread at the largest level of a 256 px image) combined by a fixed tree (warp
// butterflies, then the 16 warp sums in order): identical on every run. The values are
// summed relative to a pivot, the group's first value, and the mean is kept as pivot + shift:
// a group whose mean is large against its spread (activations around 50 with spread 1) would
// otherwise lose the low bits of x - mean to the float mean's rounding. No double is needed.
// The third pass writes y = ((x - pivot) - shift) * rstd * gamma[c] + beta[c], then swish when
// asked; every value is read by the thread that writes it and only after both reductions, so
// y may alias x.
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The block-wide sum of each thread's v, returned to every thread. `partial` holds kWarps
// floats; the trailing __syncthreads lets the caller reuse it for the next sum.
__device__ inline float block_sum(float v, float* partial) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kWarps; w++) total += partial[w];  // same order in every thread
  __syncthreads();
  return total;
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

__device__ inline float swish(float v) { return v * (1.0f / (1.0f + expf(-v))); }

template <bool kSwish>
__global__ void __launch_bounds__(kThreads)
    group_norm_kernel(int C, int64_t HW, int groups, float eps,
                      const float* x,      // (B, C, HW)
                      const float* gamma,  // (C)
                      const float* beta,   // (C)
                      float* y) {          // (B, C, HW)
  __shared__ float partial[kWarps];
  const int64_t bg = blockIdx.x;  // b * groups + g
  const int per_group = C / groups;
  const int g = (int)(bg % groups);
  const int64_t n = (int64_t)per_group * HW;      // values of this (b, group)
  const int64_t first = bg * n;                   // = (b C + g per_group) HW
  const float* xg = x + first;                    // (per_group, HW)
  float* yg = y + first;                          // (per_group, HW)

  const float pivot = xg[0];  // every thread reads the same value (n >= 1)
  CompensatedSum s;
  for (int64_t t = threadIdx.x; t < n; t += kThreads) s.add(xg[t] - pivot);
  const float shift = block_sum(s.sum, partial) / (float)n;  // mean = pivot + shift

  CompensatedSum q;
  for (int64_t t = threadIdx.x; t < n; t += kThreads) {
    const float d = (xg[t] - pivot) - shift;
    q.add(d * d);
  }
  const float var = block_sum(q.sum, partial) / (float)n;
  const float rstd = 1.0f / sqrtf(var + eps);

  for (int64_t t = threadIdx.x; t < n; t += kThreads) {
    const int c = g * per_group + (int)(t / HW);
    float v = ((xg[t] - pivot) - shift) * rstd * gamma[c] + beta[c];
    if (kSwish) v = swish(v);
    yg[t] = v;
  }
}

void launch_group_norm(bool with_swish, int B, int C, int64_t HW, int groups, float eps,
                       const float* x, const float* gamma, const float* beta, float* y) {
  CB_CHECK(B >= 0 && C >= 0 && HW >= 0 && groups >= 1 && C % groups == 0,
           "cuda group_norm: invalid shape (B " + std::to_string(B) + ", C " + std::to_string(C) +
               ", HW " + std::to_string(HW) + ", groups " + std::to_string(groups) + ")");
  if (B == 0 || C == 0 || HW == 0) return;
  const int64_t blocks = (int64_t)B * groups;
  CB_CHECK(blocks < (int64_t(1) << 31), "cuda group_norm: too many (b, group) pairs");
  if (with_swish) {
    group_norm_kernel<true><<<(unsigned)blocks, kThreads, 0, launch_stream()>>>(
        C, HW, groups, eps, x, gamma, beta, y);
  } else {
    group_norm_kernel<false><<<(unsigned)blocks, kThreads, 0, launch_stream()>>>(
        C, HW, groups, eps, x, gamma, beta, y);
  }
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaConvOps::group_norm(int B, int C, int64_t HW, int groups, float eps, const float* x,
                             const float* gamma, const float* beta, float* y) {
  launch_group_norm(false, B, C, HW, groups, eps, x, gamma, beta, y);
}

void CudaConvOps::group_norm_swish(int B, int C, int64_t HW, int groups, float eps,
                                   const float* x, const float* gamma, const float* beta,
                                   float* y) {
  launch_group_norm(true, B, C, HW, groups, eps, x, gamma, beta, y);
}

}  // namespace cb
