// CudaConvOps backward row ops: GroupNorm (+ swish), swish, nearest 2x upsampling, l2 row
// normalisation and the pixel loss.
//
// GroupNorm (+ swish): one block of 512 threads per (b, group), as the forward (conv_norm.cu),
// whose statistics it recomputes with the same code (conv_group_norm.cuh), so rstd and x - mean
// are the forward's floats. With xm = x - mean, xhat = xm rstd, dv
// the gradient at the affine output (dy, or dy swish'(v) for the fused pair, v = the forward's
// output before the swish) and g = dv gamma_c:
//   dx = rstd (g - mean(g) - xhat mean(g xhat))     means over the group's n values
//      = (g - mean(g)) rstd + xm B1,  B1 = -rstd^2 mean(g xhat),
// with g = dv gamma_c rounded once (no FMA) and mean(g) rounded to float, so that g - mean(g) is
// exactly 0 where the two agree (a group of one value: dx is 0, not rstd times a rounding).
// Per channel the block sums dv and dv xm (double per thread, then the fixed tree); those sums
// give mean(g), mean(g xhat) and the channel's dbeta and dgamma terms, which go to scratch
// (B, C, 2); a second kernel adds them into dgamma, dbeta per channel in image order. The dx pass
// starts after every sum of the group is complete, and each value of dy is read by the thread
// that writes that dx, so dx may alias dy.
//
// pixel_loss: the values in chunks of kLossChunk; block chunk sums its chunk (double per thread,
// fixed tree) into scratch, then one block adds the chunks' sums in a fixed order. The chunking
// depends on count alone, so the sums repeat bit for bit.
//
// The others are grid-stride loops with one thread per output value (or row) at a time.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_group_norm.cuh"
#include "conv_ops_cuda.h"
#include "conv_reduce.cuh"
#include "grid_stride.cuh"
#include "stream.h"

namespace cb {
namespace {

using conv_reduce::block_sum2;

// swish'(v) = s (1 + v (1 - s)), s = sigmoid(v) = 1 / (1 + e), e = exp(-v); 1 - s = e s, which
// keeps its precision as s -> 1. Where e overflows (v < -88), s is 0 and 1 - s is 1 (e s would
// be inf 0 = NaN). Explicitly rounded operations: the GroupNorm kernel evaluates it twice per
// value and needs the same float both times, whatever the compiler would contract.
__device__ inline float swish_grad(float v) {
  const float e = expf(-v);
  const float s = 1.0f / (1.0f + e);
  const float one_minus_s = isinf(e) ? 1.0f : __fmul_rn(e, s);
  return __fmul_rn(s, __fmaf_rn(v, one_minus_s, 1.0f));
}

// The gradient at the affine output of GroupNorm (+ swish) for one value: dy, or dy swish'(v)
// with v = xm rstd gamma + beta, the forward's output before the swish.
template <bool kSwish>
__device__ inline float affine_grad(float dy, float xm, float rstd, float gamma, float beta) {
  if (!kSwish) return dy;
  return __fmul_rn(dy, swish_grad(__fmaf_rn(__fmul_rn(xm, rstd), gamma, beta)));
}

// ---- GroupNorm ---------------------------------------------------------------------------------

constexpr int kNormThreads = 512;
constexpr int kNormWarps = kNormThreads / 32;

template <bool kSwish>
__global__ void __launch_bounds__(kNormThreads)
    group_norm_backward_kernel(int C, int64_t HW, int groups, float eps,
                               const float* x,      // (B, C, HW)
                               const float* gamma,  // (C)
                               const float* beta,   // (C)
                               const float* dy,     // (B, C, HW)
                               float* dx,           // (B, C, HW), may be dy
                               double* part) {      // (B, C, 2): sum dv xhat, sum dv
  __shared__ float partial[kNormWarps];
  __shared__ double partial2[2 * kNormWarps];
  const int64_t bg = blockIdx.x;  // b * groups + g
  const int per_group = C / groups;
  const int g = (int)(bg % groups);
  const int64_t b = bg / groups;
  const int64_t n = (int64_t)per_group * HW;  // values of this (b, group)
  const int64_t first = bg * n;               // = (b C + g per_group) HW
  const float* xg = x + first;                // (per_group, HW)
  const float* dyg = dy + first;              // (per_group, HW)
  float* dxg = dx + first;                    // (per_group, HW)

  // The forward's statistics (conv_group_norm.cuh), the same floats.
  const conv_group_norm::Stats st =
      conv_group_norm::group_stats<kNormThreads>(xg, n, eps, partial);
  const float rstd = st.rstd;

  // Per channel: sum dv and sum dv xm; over the group: sum g and sum g xm.
  double sum_g = 0.0, sum_gx = 0.0;
  for (int cc = 0; cc < per_group; cc++) {
    const int c = g * per_group + cc;
    const float* xc = xg + (int64_t)cc * HW;    // (HW)
    const float* dyc = dyg + (int64_t)cc * HW;  // (HW)
    const float gc = gamma[c], bc = beta[c];
    double s0 = 0.0, s1 = 0.0;
    for (int64_t t = threadIdx.x; t < HW; t += kNormThreads) {
      const float xm = st.centered(xc[t]);
      const float dv = affine_grad<kSwish>(dyc[t], xm, rstd, gc, bc);
      s0 += (double)dv;
      s1 += (double)dv * (double)xm;
    }
    block_sum2<kNormThreads>(&s0, &s1, partial2);
    if (threadIdx.x == 0) {
      part[(b * C + c) * 2 + 0] = s1 * (double)rstd;
      part[(b * C + c) * 2 + 1] = s0;
    }
    sum_g += (double)gc * s0;
    sum_gx += (double)gc * s1;
  }
  // Every thread has the same sums; every read of dy for them is done (block_sum2 ends with
  // __syncthreads), so dx may now overwrite dy.
  const double r = (double)rstd;
  const float mean_g = (float)(sum_g / (double)n);
  const float B1 = (float)(-r * r * (sum_gx * r / (double)n));
  for (int cc = 0; cc < per_group; cc++) {
    const int c = g * per_group + cc;
    const int64_t at = (int64_t)cc * HW;
    const float gc = gamma[c], bc = beta[c];
    for (int64_t t = threadIdx.x; t < HW; t += kNormThreads) {
      const float xm = st.centered(xg[at + t]);
      const float dv = affine_grad<kSwish>(dyg[at + t], xm, rstd, gc, bc);  // as in the sums
      dxg[at + t] = __fsub_rn(__fmul_rn(dv, gc), mean_g) * rstd + xm * B1;
    }
  }
}

// dgamma[c] += sum over b of part[b, c, 0]; dbeta[c] += of part[b, c, 1]; images in order.
__global__ void add_channel_partials_kernel(int B, int C,
                                            const double* part,  // (B, C, 2)
                                            float* dgamma,       // (C), +=
                                            float* dbeta) {      // (C), +=
  for (int64_t c = grid_stride::thread_index(); c < C; c += grid_stride::thread_stride()) {
    double sg = 0.0, sb = 0.0;
    for (int b = 0; b < B; b++) {
      sg += part[((int64_t)b * C + c) * 2 + 0];
      sb += part[((int64_t)b * C + c) * 2 + 1];
    }
    dgamma[c] += (float)sg;
    dbeta[c] += (float)sb;
  }
}

// ---- elementwise -------------------------------------------------------------------------------

using grid_stride::blocks_for;
using grid_stride::thread_index;
using grid_stride::thread_stride;

// dx may be dy (each value is read by the thread that writes it).
__global__ void swish_backward_kernel(int64_t count, const float* x, const float* dy,
                                      float* dx) {
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    dx[e] = dy[e] * swish_grad(x[e]);
  }
}

// Element e of dx (B C, H, W) is (plane, Y, X); its 2x2 block of dy (B C, 2H, 2W) starts at row
// 2Y, column 2X of the plane.
__global__ void upsample_nearest2x_backward_kernel(int H, int W, int64_t count,
                                                   const float* dy,  // (B C, 2H, 2W)
                                                   float* dx) {      // (B C, H, W)
  const int64_t W2 = 2 * (int64_t)W;
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int64_t X = e % W, row = e / W;  // row = plane H + Y
    const float* top = dy + row * 2 * W2 + 2 * X;  // rows 2Y and 2Y + 1 of the plane
    const float* bottom = top + W2;
    dx[e] = (top[0] + top[1]) + (bottom[0] + bottom[1]);
  }
}

// One thread per row, in double: y = x / |x|, so dx = (dy - y (y . dy)) / |x| = (dy - x (x . dy)
// / |x|^2) / |x|, rounded once to float; rows of |x| <= 1e-12 are divided by the clamp.
__global__ void l2_normalize_rows_backward_kernel(int64_t n, int d,
                                                  const float* x,   // (n, d)
                                                  const float* dy,  // (n, d)
                                                  float* dx) {      // (n, d)
  for (int64_t r = thread_index(); r < n; r += thread_stride()) {
    const float* xr = x + r * d;   // (d)
    const float* gr = dy + r * d;  // (d)
    float* out = dx + r * d;       // (d)
    double sq = 0.0, dot = 0.0;
    for (int j = 0; j < d; j++) {
      sq += (double)xr[j] * (double)xr[j];
      dot += (double)xr[j] * (double)gr[j];
    }
    const double norm = sqrt(sq);
    if (norm > 1e-12) {
      const double along = dot / sq;
      for (int j = 0; j < d; j++) out[j] = (float)(((double)gr[j] - (double)xr[j] * along) / norm);
    } else {
      for (int j = 0; j < d; j++) out[j] = (float)((double)gr[j] / 1e-12);
    }
  }
}

// ---- pixel loss --------------------------------------------------------------------------------

constexpr int kLossThreads = 256;
constexpr int64_t kLossChunk = 4096;  // values per chunk (16 per thread)

// Chunk z (blocks stride over the chunks): drec for its values, and part[z] = {sum d^2, sum |d|}
// in double (d = rec - target, exact in double). drec may be rec (each value is read by the
// thread that writes it).
__global__ void __launch_bounds__(kLossThreads)
    pixel_loss_chunks_kernel(int64_t count, int64_t chunks,
                             const float* rec,     // (count)
                             const float* target,  // (count)
                             float l2_twice, float l1,
                             float* drec,          // (count)
                             double* part) {       // (chunks, 2)
  __shared__ double partial2[2 * (kLossThreads / 32)];
  for (int64_t z = blockIdx.x; z < chunks; z += gridDim.x) {
    const int64_t i0 = z * kLossChunk, i1 = min(count, i0 + kLossChunk);
    double s2 = 0.0, s1 = 0.0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += kLossThreads) {
      const float r = rec[i], t = target[i];
      const double dd = (double)r - (double)t;
      s2 += dd * dd;
      s1 += fabs(dd);
      const float d = r - t;  // 0 exactly when r == t
      const float sign = (d > 0.0f ? 1.0f : 0.0f) - (d < 0.0f ? 1.0f : 0.0f);
      drec[i] = l2_twice * d + l1 * sign;
    }
    block_sum2<kLossThreads>(&s2, &s1, partial2);
    if (threadIdx.x == 0) {
      part[2 * z] = s2;
      part[2 * z + 1] = s1;
    }
  }
}

// One block: sums = the chunks' sums, thread t taking chunks t, t + 256, ... in order, then the
// fixed tree.
__global__ void __launch_bounds__(kLossThreads)
    pixel_loss_finish_kernel(int64_t chunks,
                             const double* part,  // (chunks, 2)
                             float* sums) {       // (2)
  __shared__ double partial2[2 * (kLossThreads / 32)];
  double s2 = 0.0, s1 = 0.0;
  for (int64_t z = threadIdx.x; z < chunks; z += kLossThreads) {
    s2 += part[2 * z];
    s1 += part[2 * z + 1];
  }
  block_sum2<kLossThreads>(&s2, &s1, partial2);
  if (threadIdx.x == 0) {
    sums[0] = (float)s2;
    sums[1] = (float)s1;
  }
}

void launch_group_norm_backward(bool with_swish, int B, int C, int64_t HW, int groups, float eps,
                                const float* x, const float* gamma, const float* beta,
                                const float* dy, float* dx, float* dgamma, float* dbeta,
                                double* part) {
  const int64_t blocks = (int64_t)B * groups;
  CB_CHECK(blocks < (int64_t(1) << 31), "cuda group_norm_backward: too many (b, group) pairs");
  if (with_swish) {
    group_norm_backward_kernel<true><<<(unsigned)blocks, kNormThreads, 0, launch_stream()>>>(
        C, HW, groups, eps, x, gamma, beta, dy, dx, part);
  } else {
    group_norm_backward_kernel<false><<<(unsigned)blocks, kNormThreads, 0, launch_stream()>>>(
        C, HW, groups, eps, x, gamma, beta, dy, dx, part);
  }
  CB_CUDA_CHECK_LAUNCH();
  add_channel_partials_kernel<<<blocks_for(C), grid_stride::kThreads, 0, launch_stream()>>>(
      B, C, part, dgamma, dbeta);
  CB_CUDA_CHECK_LAUNCH();
}

std::string norm_shape(int B, int C, int64_t HW, int groups) {
  return "B " + std::to_string(B) + ", C " + std::to_string(C) + ", HW " + std::to_string(HW) +
         ", groups " + std::to_string(groups);
}

}  // namespace

void CudaConvOps::group_norm_backward(int B, int C, int64_t HW, int groups, float eps,
                                      const float* x,      // (B, C, HW)
                                      const float* gamma,  // (C)
                                      const float* beta,   // (C)
                                      const float* dy,     // (B, C, HW)
                                      float* dx,           // (B, C, HW), may be dy
                                      float* dgamma,       // (C), +=
                                      float* dbeta) {      // (C), +=
  CB_CHECK(B >= 0 && C >= 0 && HW >= 0 && groups >= 1 && C % groups == 0,
           "cuda group_norm_backward: invalid shape (" + norm_shape(B, C, HW, groups) + ")");
  if (B == 0 || C == 0 || HW == 0) return;
  double* part = scratch_doubles((int64_t)B * C * 2);  // (B, C, 2)
  launch_group_norm_backward(false, B, C, HW, groups, eps, x, gamma, beta, dy, dx, dgamma,
                             dbeta, part);
}

void CudaConvOps::group_norm_swish_backward(int B, int C, int64_t HW, int groups, float eps,
                                            const float* x,      // (B, C, HW)
                                            const float* gamma,  // (C)
                                            const float* beta,   // (C)
                                            const float* dy,     // (B, C, HW), at the swish
                                            float* dx,           // (B, C, HW), may be dy
                                            float* dgamma,       // (C), +=
                                            float* dbeta) {      // (C), +=
  CB_CHECK(B >= 0 && C >= 0 && HW >= 0 && groups >= 1 && C % groups == 0,
           "cuda group_norm_swish_backward: invalid shape (" + norm_shape(B, C, HW, groups) +
               ")");
  if (B == 0 || C == 0 || HW == 0) return;
  double* part = scratch_doubles((int64_t)B * C * 2);  // (B, C, 2)
  launch_group_norm_backward(true, B, C, HW, groups, eps, x, gamma, beta, dy, dx, dgamma, dbeta,
                             part);
}

void CudaConvOps::swish_backward(int64_t count, const float* x, const float* dy, float* dx) {
  if (count <= 0) return;
  swish_backward_kernel<<<blocks_for(count), grid_stride::kThreads, 0, launch_stream()>>>(
      count, x, dy, dx);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaConvOps::upsample_nearest2x_backward(int B, int C, int H, int W,
                                              const float* dy,  // (B, C, 2H, 2W)
                                              float* dx) {      // (B, C, H, W)
  CB_CHECK(B >= 0 && C >= 0 && H >= 0 && W >= 0,
           "cuda upsample_nearest2x_backward: invalid shape (B " + std::to_string(B) + ", C " +
               std::to_string(C) + ", H " + std::to_string(H) + ", W " + std::to_string(W) + ")");
  const int64_t count = (int64_t)B * C * H * W;
  if (count == 0) return;
  upsample_nearest2x_backward_kernel<<<blocks_for(count), grid_stride::kThreads, 0,
                                       launch_stream()>>>(H, W, count, dy, dx);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaConvOps::l2_normalize_rows_backward(int64_t n, int d,
                                             const float* x,   // (n, d)
                                             const float* dy,  // (n, d)
                                             float* dx) {      // (n, d)
  CB_CHECK(n >= 0 && d >= 0, "cuda l2_normalize_rows_backward: invalid shape (n " +
                                 std::to_string(n) + ", d " + std::to_string(d) + ")");
  if (n == 0 || d == 0) return;
  l2_normalize_rows_backward_kernel<<<blocks_for(n), grid_stride::kThreads, 0,
                                      launch_stream()>>>(n, d, x, dy, dx);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaConvOps::pixel_loss(int64_t count,
                             const float* rec,     // (count)
                             const float* target,  // (count)
                             float l2_scale, float l1_scale,
                             float* drec,   // (count)
                             float* sums) {  // (2)
  CB_CHECK(count >= 0, "cuda pixel_loss: invalid count " + std::to_string(count));
  const int64_t chunks = (count + kLossChunk - 1) / kLossChunk;
  double* part = nullptr;  // (chunks, 2)
  if (chunks > 0) {
    part = scratch_doubles(2 * chunks);
    const unsigned blocks = (unsigned)std::min<int64_t>(chunks, grid_stride::kMaxBlocks);
    pixel_loss_chunks_kernel<<<blocks, kLossThreads, 0, launch_stream()>>>(
        count, chunks, rec, target, 2.0f * l2_scale, l1_scale, drec, part);
    CB_CUDA_CHECK_LAUNCH();
  }
  // With count 0 the finish kernel reads nothing and writes {0, 0}.
  pixel_loss_finish_kernel<<<1, kLossThreads, 0, launch_stream()>>>(chunks, part, sums);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace cb
