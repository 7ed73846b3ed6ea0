// CudaModelOps elementwise ops: GELU (tanh approximation) and SiLU with their backwards,
// y += x, strided block copies and zeroing, and (mixed precision) GELU into bf16 and the
// strided rounding copy to bf16. Every kernel is a grid-stride loop over int64
// element indices, so any count works with a bounded grid.
#include <algorithm>
#include <cstdint>

#include "bf16.cuh"
#include "check.h"
#include "model_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 16;  // the grid-stride loops cover the rest

int blocks_for(int64_t count) {
  return (int)std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks);
}

__device__ inline int64_t thread_index() {
  return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ inline int64_t thread_stride() { return (int64_t)gridDim.x * blockDim.x; }

constexpr float kGeluC = 0.79788456080286535588f;  // sqrt(2/pi)

// Y: float, or __nv_bfloat16 for a matmul input under mixed precision (the math is fp32).
template <typename Y>
__global__ void gelu_kernel(int64_t count, const float* x, Y* y) {
  for (int64_t i = thread_index(); i < count; i += thread_stride()) {
    const float xi = x[i];
    const float u = kGeluC * (xi + 0.044715f * xi * xi * xi);
    out(y + i, 0.5f * xi * (1.0f + tanhf(u)));
  }
}

// 0.5 (1 + tanh u) = s = sigmoid(2u) and 0.5 (1 - tanh^2 u) = 2 s (1 - s), with s and 1 - s
// each from the exponential of -2|u|: written with tanhf, 1 + tanh u cancels to 0 for x below
// about -4.5 where the gradient is still ~1e-6 (a parity failure on the H200).
__global__ void gelu_backward_kernel(int64_t count, const float* x, const float* dy, float* dx) {
  for (int64_t i = thread_index(); i < count; i += thread_stride()) {
    const float xi = x[i];
    const float u = kGeluC * (xi + 0.044715f * xi * xi * xi);
    const float e = expf(-2.0f * fabsf(u)), r = 1.0f / (1.0f + e);
    const float s = u >= 0 ? r : e * r, one_minus_s = u >= 0 ? e * r : r;
    const float du = kGeluC * (1.0f + float(3 * 0.044715) * xi * xi);  // du/dx
    const float grad = s + 2.0f * xi * s * one_minus_s * du;
    dx[i] = dy[i] * grad;
  }
}

__device__ inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void silu_kernel(int64_t count, const float* x, float* y) {
  for (int64_t i = thread_index(); i < count; i += thread_stride()) y[i] = x[i] * sigmoid(x[i]);
}

__global__ void silu_backward_kernel(int64_t count, const float* x, const float* dy, float* dx) {
  for (int64_t i = thread_index(); i < count; i += thread_stride()) {
    const float s = sigmoid(x[i]);
    dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
  }
}

__global__ void add_inplace_kernel(int64_t count, float* y, const float* x) {
  for (int64_t i = thread_index(); i < count; i += thread_stride()) y[i] += x[i];
}

// Element e of the rows x cols block is (e / cols, e % cols): consecutive threads walk a row.
__global__ void copy_strided_kernel(int64_t rows, int cols, const float* src, int64_t src_ld,
                                    float* dst, int64_t dst_ld, bool accumulate) {
  const int64_t count = rows * cols;
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int64_t r = e / cols, c = e % cols;
    const float v = src[r * src_ld + c];
    if (accumulate) {
      dst[r * dst_ld + c] += v;
    } else {
      dst[r * dst_ld + c] = v;
    }
  }
}

// dst (rows, cols at dst_ld) = bf16(src (rows, cols at src_ld)); int64 columns, so a whole
// flat parameter buffer is one row.
__global__ void to_bf16_kernel(int64_t rows, int64_t cols, const float* src, int64_t src_ld,
                               __nv_bfloat16* dst, int64_t dst_ld) {
  const int64_t count = rows * cols;
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int64_t r = e / cols, c = e % cols;
    out(dst + r * dst_ld + c, src[r * src_ld + c]);
  }
}

__global__ void zero_strided_kernel(int64_t rows, int cols, float* dst, int64_t ld) {
  const int64_t count = rows * cols;
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    dst[(e / cols) * ld + e % cols] = 0.0f;
  }
}

}  // namespace

void CudaModelOps::gelu(int64_t count, const float* x, float* y) {
  if (count <= 0) return;
  gelu_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(count, x, y);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::gelu_bf16(int64_t count, const float* x, bf16_t* y) {
  if (count <= 0) return;
  gelu_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(count, x, device_bf16(y));
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::to_bf16(int64_t rows, int64_t cols, const float* src, int64_t src_ld,
                           bf16_t* dst, int64_t dst_ld) {
  if (rows <= 0 || cols <= 0) return;
  to_bf16_kernel<<<blocks_for(rows * cols), kThreads, 0, launch_stream()>>>(rows, cols, src, src_ld,
                                                        device_bf16(dst), dst_ld);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::gelu_backward(int64_t count, const float* x, const float* dy, float* dx) {
  if (count <= 0) return;
  gelu_backward_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(count, x, dy, dx);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::silu(int64_t count, const float* x, float* y) {
  if (count <= 0) return;
  silu_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(count, x, y);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::silu_backward(int64_t count, const float* x, const float* dy, float* dx) {
  if (count <= 0) return;
  silu_backward_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(count, x, dy, dx);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::add_inplace(int64_t count, float* y, const float* x) {
  if (count <= 0) return;
  add_inplace_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(count, y, x);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::copy_strided(int64_t rows, int cols, const float* src, int64_t src_ld,
                                float* dst, int64_t dst_ld, bool accumulate) {
  if (rows <= 0 || cols <= 0) return;
  copy_strided_kernel<<<blocks_for(rows * cols), kThreads, 0, launch_stream()>>>(
      rows, cols, src, src_ld, dst, dst_ld, accumulate);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::zero_strided(int64_t rows, int cols, float* dst, int64_t ld) {
  if (rows <= 0 || cols <= 0) return;
  zero_strided_kernel<<<blocks_for(rows * cols), kThreads, 0, launch_stream()>>>(
      rows, cols, dst, ld);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace cb
