// The GroupNorm statistics of one (b, group), shared by the forward (conv_norm.cu) and the
// backward (conv_elementwise_backward.cu), which must get the same floats. One block per (b,
// group); the group's n values are contiguous and the threads walk them with a stride of the
// block size (coalesced). Two passes, as the reference: the mean, then the biased variance about
// it. Each pass is a compensated (Kahan) float sum per thread combined by the fixed tree of
// conv_reduce.cuh: identical on every run. The values are summed relative to a pivot, the
// group's first value, and the mean is kept as pivot + shift: a group whose mean is large
// against its spread (activations around 50 with spread 1) would otherwise lose the low bits of
// x - mean to the float mean's rounding. No double is needed.
#pragma once

#include <cstdint>

#include "conv_reduce.cuh"

namespace cb {
namespace conv_group_norm {

// x - mean = (x - pivot) - shift; rstd = 1 / sqrt(var + eps).
struct Stats {
  float pivot, shift, rstd;
  __device__ float centered(float x) const { return (x - pivot) - shift; }
};

// The statistics of xg (n >= 1 values) for a block of kThreads threads, returned to every
// thread; `partial` (shared) holds kThreads / 32 floats, free again on return.
template <int kThreads>
__device__ inline Stats group_stats(const float* xg, int64_t n, float eps, float* partial) {
  using conv_reduce::block_sum;
  using conv_reduce::CompensatedSum;
  Stats st;
  st.pivot = xg[0];  // every thread reads the same value
  CompensatedSum s;
  for (int64_t t = threadIdx.x; t < n; t += kThreads) s.add(xg[t] - st.pivot);
  st.shift = block_sum<kThreads>(s.sum, partial) / (float)n;
  CompensatedSum q;
  for (int64_t t = threadIdx.x; t < n; t += kThreads) {
    const float d = st.centered(xg[t]);
    q.add(d * d);
  }
  const float var = block_sum<kThreads>(q.sum, partial) / (float)n;
  st.rstd = 1.0f / sqrtf(var + eps);
  return st;
}

}  // namespace conv_group_norm
}  // namespace cb
