// CudaModelOps loss and optimizer: fused softmax + cross-entropy with one block per row (fixed
// reduction trees, so the loss is the same on every run) and the bias-corrected AdamW update,
// which under mixed precision also writes the bf16 copy of each new master weight.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "bf16.cuh"
#include "check.h"
#include "model_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 16;

// Block-wide reduction of one value per thread (blockDim.x == kThreads) through `buf`; every
// thread gets the result. `max_op` picks the max instead of the sum. The tree is fixed.
__device__ float block_reduce(float v, bool max_op, float* buf) {
  const int tid = threadIdx.x;
  __syncthreads();  // buf may still be read from the previous reduction
  buf[tid] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (tid < s) buf[tid] = max_op ? fmaxf(buf[tid], buf[tid + s]) : buf[tid] + buf[tid + s];
    __syncthreads();
  }
  return buf[0];
}

// One block per row (grid-stride over rows; the row loop is block-uniform). Rows with a
// negative target give loss 0 and zero gradients. A target >= K cannot throw from the device:
// it gives a NaN loss (and zero gradients) so the bad batch shows in the loss.
__global__ void softmax_xent_kernel(int64_t n, int K,
                                    const float* logits,    // (n, K)
                                    const int32_t* target,  // (n)
                                    float* loss_rows,       // (n)
                                    float* dlogits,         // (n, K) or null
                                    float grad_scale) {
  __shared__ float buf[kThreads];
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* li = logits + i * K;  // (K)
    const int32_t tgt = target[i];
    if (tgt < 0 || tgt >= K) {
      if (threadIdx.x == 0) loss_rows[i] = tgt < 0 ? 0.0f : nanf("");
      if (dlogits != nullptr) {
        for (int j = threadIdx.x; j < K; j += kThreads) dlogits[i * K + j] = 0.0f;
      }
      continue;
    }
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < K; j += kThreads) mx = fmaxf(mx, li[j]);
    mx = block_reduce(mx, true, buf);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < K; j += kThreads) sum += expf(li[j] - mx);
    sum = block_reduce(sum, false, buf);
    const float log_z = mx + logf(sum);
    if (threadIdx.x == 0) loss_rows[i] = log_z - li[tgt];
    if (dlogits != nullptr) {
      for (int j = threadIdx.x; j < K; j += kThreads) {
        const float p = expf(li[j] - log_z);
        dlogits[i * K + j] = (p - (j == tgt ? 1.0f : 0.0f)) * grad_scale;
      }
    }
  }
}

// param16 (mixed precision) gets the bf16 rounding of each new master value, or is null.
__global__ void adamw_kernel(int64_t count, float* param, __nv_bfloat16* param16,
                             const float* grad, float* m, float* v, float lr, float b1, float b2,
                             float eps, float wd, float bc1, float bc2) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float g = grad[i];
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float m_hat = mi / bc1, v_hat = vi / bc2;
    const float p = param[i];
    const float next = p - lr * (m_hat / (sqrtf(v_hat) + eps) + wd * p);
    param[i] = next;
    if (param16 != nullptr) out(param16 + i, next);
  }
}

}  // namespace

void CudaModelOps::softmax_cross_entropy(int64_t n, int K, const float* logits,
                                         const int32_t* target, float* loss_rows,
                                         float* dlogits, float grad_scale) {
  if (n <= 0) return;
  CB_CHECK(K > 0, "softmax_cross_entropy: K = " + std::to_string(K));
  const int blocks = (int)std::min<int64_t>(n, kMaxBlocks);
  softmax_xent_kernel<<<blocks, kThreads, 0, launch_stream()>>>(
      n, K, logits, target, loss_rows, dlogits, grad_scale);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::adamw(int64_t count, float* param, const float* grad, float* m, float* v,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         int64_t t) {
  adamw_mixed(count, param, nullptr, grad, m, v, lr, beta1, beta2, eps, weight_decay, t);
}

void CudaModelOps::adamw_mixed(int64_t count, float* param, bf16_t* param16, const float* grad,
                               float* m, float* v, float lr, float beta1, float beta2,
                               float eps, float weight_decay, int64_t t) {
  CB_CHECK(t >= 1, "adamw: step " + std::to_string(t) + " is not 1-based");
  if (count <= 0) return;
  // The bias corrections in float, as the reference computes them.
  const float bc1 = 1.0f - std::pow(beta1, float(t));
  const float bc2 = 1.0f - std::pow(beta2, float(t));
  const int blocks = (int)std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks);
  adamw_kernel<<<blocks, kThreads, 0, launch_stream()>>>(
      count, param, device_bf16(param16), grad, m, v, lr, beta1, beta2, eps, weight_decay, bc1,
      bc2);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace cb
