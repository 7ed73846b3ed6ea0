// CudaModelOps normalisation and AdaLN: LayerNorm (no affine, eps 1e-6) forward and backward
// with one warp per row, the AdaLN modulation (also into bf16, mixed precision) and the gated
// residual.
//
// The backwards of modulate and gated_residual reduce over the T slots of each batch row into
// (B, ld) gradient rows. There are no float atomics: a block owns 32 columns of one batch row,
// its 8 thread rows each sum a fixed stride of slots in order, and a fixed tree combines them,
// so the gradients are the same on every run.
#include <algorithm>
#include <cstdint>
#include <string>

#include "bf16.cuh"
#include "check.h"
#include "model_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 16;  // grid-stride loops cover the rest
constexpr int kRowWarps = kThreads / 32;           // LayerNorm rows per block
constexpr int kColTile = 32, kSlotLanes = 8;       // AdaLN backward: columns x slot strides

int blocks_for(int64_t count) {
  return (int)std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks);
}

__device__ inline int64_t thread_index() {
  return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ inline int64_t thread_stride() { return (int64_t)gridDim.x * blockDim.x; }

// Butterfly sum over the 32 lanes. Float addition is commutative, so every lane ends with the
// bit-identical total.
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row (rows are warp-uniform, so the shuffles see all 32 lanes). Two passes over
// the row, as the reference: the mean, then the biased variance about it.
__global__ void layernorm_kernel(int64_t n, int c,
                                 const float* x,  // (n, c)
                                 float* y,        // (n, c)
                                 float* mean,     // (n)
                                 float* rstd) {   // (n)
  const int lane = threadIdx.x % 32;
  for (int64_t i = (int64_t)blockIdx.x * kRowWarps + threadIdx.x / 32; i < n;
       i += (int64_t)gridDim.x * kRowWarps) {
    const float* xi = x + i * c;  // (c)
    float s = 0.0f;
    for (int j = lane; j < c; j += 32) s += xi[j];
    const float m = warp_sum(s) / (float)c;
    float var = 0.0f;
    for (int j = lane; j < c; j += 32) {
      const float d = xi[j] - m;
      var += d * d;
    }
    const float r = 1.0f / sqrtf(warp_sum(var) / (float)c + 1e-6f);
    float* yi = y + i * c;  // (c)
    for (int j = lane; j < c; j += 32) yi[j] = (xi[j] - m) * r;
    if (lane == 0) {
      mean[i] = m;
      rstd[i] = r;
    }
  }
}

// dx = rstd (dy - mean(dy) - xhat mean(dy xhat)), one warp per row.
__global__ void layernorm_backward_kernel(int64_t n, int c,
                                          const float* x,     // (n, c)
                                          const float* mean,  // (n)
                                          const float* rstd,  // (n)
                                          const float* dy,    // (n, c)
                                          float* dx) {        // (n, c)
  const int lane = threadIdx.x % 32;
  for (int64_t i = (int64_t)blockIdx.x * kRowWarps + threadIdx.x / 32; i < n;
       i += (int64_t)gridDim.x * kRowWarps) {
    const float* xi = x + i * c;    // (c)
    const float* dyi = dy + i * c;  // (c)
    const float m = mean[i], r = rstd[i];
    float s_dy = 0.0f, s_dy_xhat = 0.0f;
    for (int j = lane; j < c; j += 32) {
      s_dy += dyi[j];
      s_dy_xhat += dyi[j] * (xi[j] - m) * r;
    }
    const float dy_mean = warp_sum(s_dy) / (float)c;
    const float dy_xhat_mean = warp_sum(s_dy_xhat) / (float)c;
    float* dxi = dx + i * c;  // (c)
    for (int j = lane; j < c; j += 32) {
      const float xhat = (xi[j] - m) * r;
      dxi[j] = r * (dyi[j] - dy_mean - xhat * dy_xhat_mean);
    }
  }
}

// y = xn (1 + scale[b]) + shift[b] elementwise; element e is (row e / c, column e % c) and
// row belongs to batch row / T.
// Y: float, or __nv_bfloat16 for a matmul input under mixed precision (the math is fp32).
template <typename Y>
__global__ void modulate_kernel(int T, int c,
                                const float* xn,     // (B, T, c)
                                const float* shift,  // rows at stride ld
                                const float* scale,  // rows at stride ld
                                int ld, int64_t count,
                                Y* y) {              // (B, T, c)
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int64_t row = e / c, j = e % c;
    const int64_t p = (row / T) * ld + j;
    out(y + e, xn[e] * (1.0f + scale[p]) + shift[p]);
  }
}

// x += gate[b] h elementwise.
__global__ void gated_residual_kernel(int T, int c,
                                      float* x,           // (B, T, c)
                                      const float* gate,  // rows at stride ld
                                      int ld, int64_t count,
                                      const float* h) {   // (B, T, c)
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int64_t row = e / c, j = e % c;
    x[e] += gate[(row / T) * ld + j] * h[e];
  }
}

// The shared backward of modulate and gated_residual. For batch row b = blockIdx.x and column
// j (32 per block along blockIdx.y), over the T slots:
//   out = g * (one + mult[b, j]);  acc1[b, j] += sum g (when acc1);  acc2[b, j] += sum g * other.
// Thread row ty sums slots ty, ty + 8, ... in order; the 8 partials meet in a fixed tree.
__global__ void adaln_backward_kernel(int T, int c,
                                      const float* g,      // (B, T, c) incoming gradient
                                      const float* mult,   // rows at stride ld
                                      float one,           // 1 for modulate, 0 for the gate
                                      const float* other,  // (B, T, c)
                                      int ld,
                                      float* out,          // (B, T, c) overwritten
                                      float* acc1,         // rows at stride ld, +=; or null
                                      float* acc2) {       // rows at stride ld, +=
  __shared__ float s1[kSlotLanes][kColTile + 1];
  __shared__ float s2[kSlotLanes][kColTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t b = blockIdx.x;
  const int j = blockIdx.y * kColTile + tx;
  float sum1 = 0.0f, sum2 = 0.0f;
  if (j < c) {
    const float f = one + mult[b * ld + j];
    for (int t = ty; t < T; t += kSlotLanes) {
      const int64_t e = (b * T + t) * c + j;
      const float gv = g[e];
      out[e] = gv * f;
      sum1 += gv;
      sum2 += gv * other[e];
    }
  }
  s1[ty][tx] = sum1;
  s2[ty][tx] = sum2;
  __syncthreads();
  for (int s = kSlotLanes / 2; s > 0; s /= 2) {
    if (ty < s) {
      s1[ty][tx] += s1[ty + s][tx];
      s2[ty][tx] += s2[ty + s][tx];
    }
    __syncthreads();
  }
  if (ty == 0 && j < c) {
    if (acc1 != nullptr) acc1[b * ld + j] += s1[0][tx];
    acc2[b * ld + j] += s2[0][tx];
  }
}

void launch_adaln_backward(int B, int T, int c, const float* g, const float* mult, float one,
                           const float* other, int ld, float* out, float* acc1, float* acc2) {
  if (B <= 0 || c <= 0) return;
  const int tiles = (c + kColTile - 1) / kColTile;
  CB_CHECK(tiles <= 65535, "adaln backward: too many columns (" + std::to_string(c) + ")");
  const dim3 grid((unsigned)B, (unsigned)tiles), block(kColTile, kSlotLanes);
  adaln_backward_kernel<<<grid, block, 0, launch_stream()>>>(
      T, c, g, mult, one, other, ld, out, acc1, acc2);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaModelOps::layernorm(int64_t n, int c, const float* x, float* y, float* mean,
                             float* rstd) {
  if (n <= 0 || c <= 0) return;
  const int blocks = (int)std::min<int64_t>((n + kRowWarps - 1) / kRowWarps, kMaxBlocks);
  layernorm_kernel<<<blocks, kThreads, 0, launch_stream()>>>(n, c, x, y, mean, rstd);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::layernorm_backward(int64_t n, int c, const float* x, const float* mean,
                                      const float* rstd, const float* dy, float* dx) {
  if (n <= 0 || c <= 0) return;
  const int blocks = (int)std::min<int64_t>((n + kRowWarps - 1) / kRowWarps, kMaxBlocks);
  layernorm_backward_kernel<<<blocks, kThreads, 0, launch_stream()>>>(n, c, x, mean, rstd, dy, dx);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::modulate(int B, int T, int c, const float* xn, const float* shift,
                            const float* scale, int ld, float* y) {
  const int64_t count = (int64_t)B * T * c;
  if (count <= 0) return;
  modulate_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(
      T, c, xn, shift, scale, ld, count, y);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::modulate_bf16(int B, int T, int c, const float* xn, const float* shift,
                                 const float* scale, int ld, bf16_t* y) {
  const int64_t count = (int64_t)B * T * c;
  if (count <= 0) return;
  modulate_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(
      T, c, xn, shift, scale, ld, count, device_bf16(y));
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::modulate_backward(int B, int T, int c, const float* xn, const float* scale,
                                     int ld, const float* dy, float* dxn, float* dshift,
                                     float* dscale) {
  launch_adaln_backward(B, T, c, dy, scale, 1.0f, xn, ld, dxn, dshift, dscale);
}

void CudaModelOps::gated_residual(int B, int T, int c, float* x, const float* gate, int ld,
                                  const float* h) {
  const int64_t count = (int64_t)B * T * c;
  if (count <= 0) return;
  gated_residual_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(
      T, c, x, gate, ld, count, h);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::gated_residual_backward(int B, int T, int c, const float* dx,
                                           const float* gate, int ld, const float* h, float* dh,
                                           float* dgate) {
  launch_adaln_backward(B, T, c, dx, gate, 0.0f, h, ld, dh, nullptr, dgate);
}

}  // namespace cb
