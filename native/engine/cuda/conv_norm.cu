// CudaConvOps GroupNorm and GroupNorm + swish. One block of 512 threads per (b, group) (about
// 500 values per thread at the largest level of a 256 px image). The statistics are
// conv_group_norm.cuh's (shared with the backward): two passes, the mean as pivot + shift and
// the biased variance, compensated float sums in a fixed tree, identical on every run. A third
// pass writes y = ((x - pivot) - shift) * rstd * gamma[c] + beta[c], then swish when asked;
// every value is read by the thread that writes it and only after both reductions, so y may
// alias x.
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_group_norm.cuh"
#include "conv_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

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

  const conv_group_norm::Stats st = conv_group_norm::group_stats<kThreads>(xg, n, eps, partial);

  for (int64_t t = threadIdx.x; t < n; t += kThreads) {
    const int c = g * per_group + (int)(t / HW);
    float v = st.centered(xg[t]) * st.rstd * gamma[c] + beta[c];
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
