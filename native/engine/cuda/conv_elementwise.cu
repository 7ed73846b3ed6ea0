// CudaConvOps elementwise ops: swish, y += x and nearest 2x upsampling. Each is a grid-stride
// loop with one thread per output element at a time (int64 indices, a grid of at most 2^16
// blocks of 256), so any count works; consecutive threads write consecutive outputs.
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_ops_cuda.h"
#include "grid_stride.cuh"
#include "stream.h"

namespace cb {
namespace {

using namespace grid_stride;  // kThreads, blocks_for, thread_index, thread_stride

// x * sigmoid(x), sigmoid as the reference writes it: 1 / (1 + exp(-x)).
__global__ void swish_kernel(int64_t count, const float* x, float* y) {
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const float v = x[e];
    y[e] = v * (1.0f / (1.0f + expf(-v)));
  }
}

__global__ void add_kernel(int64_t count, float* y, const float* x) {
  for (int64_t e = thread_index(); e < count; e += thread_stride()) y[e] += x[e];
}

// Output element e of (B C, 2H, 2W) is (plane, Y, X); it copies x[plane, Y / 2, X / 2].
__global__ void upsample_nearest2x_kernel(int H, int W, int64_t count,
                                          const float* x,  // (B C, H, W)
                                          float* y) {      // (B C, 2H, 2W)
  const int64_t W2 = 2 * (int64_t)W, H2 = 2 * (int64_t)H;
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int64_t X = e % W2, rest = e / W2;
    const int64_t Y = rest % H2, plane = rest / H2;
    y[e] = x[(plane * H + Y / 2) * W + X / 2];
  }
}

}  // namespace

void CudaConvOps::swish(int64_t count, const float* x, float* y) {
  if (count <= 0) return;
  swish_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(count, x, y);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaConvOps::add_inplace(int64_t count, float* y, const float* x) {
  if (count <= 0) return;
  add_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(count, y, x);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaConvOps::upsample_nearest2x(int B, int C, int H, int W, const float* x, float* y) {
  CB_CHECK(B >= 0 && C >= 0 && H >= 0 && W >= 0,
           "cuda upsample_nearest2x: invalid shape (B " + std::to_string(B) + ", C " +
               std::to_string(C) + ", H " + std::to_string(H) + ", W " + std::to_string(W) + ")");
  const int64_t count = (int64_t)B * C * (2 * (int64_t)H) * (2 * (int64_t)W);
  if (count == 0) return;
  upsample_nearest2x_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(H, W, count, x,
                                                                                 y);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace cb
