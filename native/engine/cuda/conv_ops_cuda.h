// The cuda backend of the VQ tokenizer's conv ops (vq/conv_ops.h): every op as a hand-written
// fp32 kernel (no cuBLAS, no cuDNN, no TF32), tensors in GPU memory (cuda_memory()), kernels on
// launch_stream() (the legacy default stream), each launch checked (CB_CUDA_CHECK_LAUNCH).
// Compiled only with nvcc (CB_HAVE_CUDA); make_cuda_conv_ops (vq/conv_backends_cuda.h) refuses
// with the reason where no GPU is usable.
//
// Files: conv_backend_cuda.cc (make_cuda_conv_ops, scratch), conv_tile.cuh (the 64x64 fp32
// tile product shared by the GEMM-shaped kernels), conv_conv2d.cuh (the im2col arithmetic and
// shape checks of conv2d and its backward), conv_reduce.cuh (fixed-order warp and block sums),
// conv_group_norm.cuh (the GroupNorm statistics of the forward and the backward),
// conv_conv2d.cu (conv2d as an implicit GEMM),
// conv_norm.cu (GroupNorm, GroupNorm + swish), conv_elementwise.cu (swish, add, nearest 2x
// upsampling), conv_attention.cu (scores, softmax, weighted sum through scratch),
// conv_quantize.cu (row normalisation, the l2 quantiser, code lookup); the backward ops:
// conv_conv2d_backward.cu (dx as a transposed implicit GEMM, dw as a split implicit GEMM,
// dbias), conv_elementwise_backward.cu (GroupNorm (+ swish), swish, upsampling, row
// normalisation, pixel loss), and the attention's and the quantiser's in their forward's files.
#pragma once

#include <cstdint>

#include "../vq/conv_ops.h"
#include "model_ops_cuda.h"

namespace cb {

class CudaConvOps final : public ConvOps<float> {
 public:
  CudaConvOps();
  const char* name() const override { return "cuda"; }
  DeviceMemory& memory() override { return cuda_memory(); }

  void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* bias,
              float* y) override;  // conv_conv2d.cu

  void group_norm(int B, int C, int64_t HW, int groups, float eps, const float* x,
                  const float* gamma, const float* beta, float* y) override;  // conv_norm.cu
  void group_norm_swish(int B, int C, int64_t HW, int groups, float eps, const float* x,
                        const float* gamma, const float* beta, float* y) override;

  void swish(int64_t count, const float* x, float* y) override;  // conv_elementwise.cu
  void add_inplace(int64_t count, float* y, const float* x) override;
  void upsample_nearest2x(int B, int C, int H, int W, const float* x, float* y) override;

  void spatial_attention(int B, int C, int64_t HW, const float* q, const float* k,
                         const float* v, float* out) override;  // conv_attention.cu

  void l2_normalize_rows(int64_t n, int d, const float* x, float* y) override;  // conv_quantize.cu
  void quantize_l2(int B, int D, int64_t HW, const float* z, const float* codebook, int K,
                   int32_t* index, float* zq, float* dist2) override;
  void embed_codes(int B, int D, int64_t HW, const int32_t* index, const float* codebook, int K,
                   float* zq) override;

  // ---- backward (training); vq/conv_ops.h. Parameter gradients are reduced in an order fixed
  // by the shapes alone (no float atomics), so every run gives the same bits.
  void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                       float* dx, float* dw, float* dbias) override;  // conv_conv2d_backward.cu
  void group_norm_backward(int B, int C, int64_t HW, int groups, float eps, const float* x,
                           const float* gamma, const float* beta, const float* dy, float* dx,
                           float* dgamma, float* dbeta) override;  // conv_elementwise_backward.cu
  void group_norm_swish_backward(int B, int C, int64_t HW, int groups, float eps,
                                 const float* x, const float* gamma, const float* beta,
                                 const float* dy, float* dx, float* dgamma,
                                 float* dbeta) override;
  void swish_backward(int64_t count, const float* x, const float* dy, float* dx) override;
  void upsample_nearest2x_backward(int B, int C, int H, int W, const float* dy,
                                   float* dx) override;
  void l2_normalize_rows_backward(int64_t n, int d, const float* x, const float* dy,
                                  float* dx) override;
  void pixel_loss(int64_t count, const float* rec, const float* target, float l2_scale,
                  float l1_scale, float* drec, float* sums) override;
  void spatial_attention_backward(int B, int C, int64_t HW, const float* q, const float* k,
                                  const float* v, const float* dout, float* dq, float* dk,
                                  float* dv) override;  // conv_attention.cu
  void quantize_l2_backward(int B, int D, int64_t HW, const float* z, const float* codebook,
                            int K, const int32_t* index, const float* dzq, float codebook_scale,
                            float commit_scale, float* dz,
                            float* dcodebook) override;  // conv_quantize.cu

 private:
  // GPU scratch for the ops that need it (attention scores, the codes' squared norms, the
  // backward ops' partial sums): grown on demand, never shrunk; one op uses it at a time,
  // taking all it needs with one call (growing frees the old array, which waits for the
  // kernels queued before).
  float* scratch_floats(int64_t count);
  // The same scratch as `count` doubles (the backward ops' partial sums); cudaMalloc's
  // alignment keeps it 8-byte aligned.
  double* scratch_doubles(int64_t count);

  DeviceArray<float> scratch_;
};

}  // namespace cb
