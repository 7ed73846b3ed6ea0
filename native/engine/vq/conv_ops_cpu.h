// The fast cpu backend of the VQ tokenizer's conv ops (float, "cpu"): every conv, the attention
// products and the quantiser's dot products through cpu_sgemm (OpenBLAS or the blocked loop),
// the elementwise ops as threaded, vectorisable loops (vq/conv_ops_cpu_elementwise.cc).
//
// Scratch: one buffer owned by the object (grown, never shrunk) holds the im2col columns or the
// padded input and output grid of a conv, attention's score rows and the quantiser's dot
// products; each is cut into tiles of output rows (query rows, positions) of at most
// `scratch_bytes` (at least one row), each tile one sgemm or one per tap. Whole-call parts come
// on top: a conv's re-laid tap weights, the quantiser's normalised latents of one image. So one
// CpuConvOps must not be called from two threads at once.
//
// Speed (one thread, process CPU time, AMD EPYC, OpenBLAS): LlamaGen's ds16 encoder at 256 px
// takes 2.2 s, 62 GFLOP/s over its 138 GFLOP of convs against 76 GFLOP/s for sgemm alone on the
// same M, N, K (0.82 of it); the decoder 0.85 (252 GFLOP). Group norm + swish is ~6% of it.
//
// Determinism: outputs never depend on thread timing: tiles are cut by the scratch bound, every
// output element is written by one thread, and reductions (GroupNorm's statistics) run in a
// fixed order per (b, group), so the ops without sgemm give the same bits at any thread count.
// The sgemm-based ops (conv2d, attention, the quantiser's distances) repeat bit for bit at a
// given thread count; OpenBLAS splits a product differently for another thread count, which
// moves last bits (measured: about 1 in 5 values of a 64 x 2000 x 576 product, 1 vs 2 threads).
//
// Files: conv_ops_cpu_conv.cc (conv2d), conv_ops_cpu_elementwise.cc (group norm, swish, add,
// upsample, l2 normalisation), conv_ops_cpu_attention.cc, conv_ops_cpu_quantize.cc; the
// backward ops: conv_ops_cpu_conv_backward.cc, conv_ops_cpu_elementwise_backward.cc (GroupNorm,
// swish, upsample, l2 normalisation, pixel loss), attention's and the quantiser's beside their
// forwards; shared by forward and backward: conv_im2col.h (im2col) and conv_row_sums.h
// (GroupNorm's statistics, the clones marker). Parameter gradients (dw, dbias, dgamma, dbeta,
// dcodebook) are summed in a fixed order as well: per image in order through sgemm's
// accumulation, or as per-item double partials combined in index order, never by threads adding
// into one value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "conv_ops.h"

namespace cb {

// The least work a parallel_for range gets in these ops. parallel_for starts std::threads on
// every call, measured at 50-75 us a call here (2 threads, a loaded VM) against 25 us to copy
// 256 k floats on one thread; and a 1 M float copy took 130 us on one thread, 277 us on two (a
// copy is memory-bound). So copies (im2col, padding, bias, copy-out, add) stay on one thread
// below 1 M floats, and loops with arithmetic per element (GroupNorm, swish) split from 128 k.
constexpr int64_t kConvCopyGrainFloats = int64_t(1) << 20;
constexpr int64_t kConvComputeGrainElements = int64_t(1) << 17;

class CpuConvOps final : public ConvOps<float> {
 public:
  static constexpr size_t kDefaultScratchBytes = size_t(16) << 20;  // 16 MiB

  // scratch_bytes bounds every tile; the tests pass a small value to exercise the tiling.
  explicit CpuConvOps(size_t scratch_bytes = kDefaultScratchBytes);

  const char* name() const override { return "cpu"; }
  DeviceMemory& memory() override { return host_memory(); }

  void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* bias,
              float* y) override;
  void group_norm(int B, int C, int64_t HW, int groups, float eps, const float* x,
                  const float* gamma, const float* beta, float* y) override;
  void group_norm_swish(int B, int C, int64_t HW, int groups, float eps, const float* x,
                        const float* gamma, const float* beta, float* y) override;
  void swish(int64_t count, const float* x, float* y) override;
  void add_inplace(int64_t count, float* y, const float* x) override;
  void upsample_nearest2x(int B, int C, int H, int W, const float* x, float* y) override;
  void spatial_attention(int B, int C, int64_t HW, const float* q, const float* k,
                         const float* v, float* out) override;
  void l2_normalize_rows(int64_t n, int d, const float* x, float* y) override;
  void quantize_l2(int B, int D, int64_t HW, const float* z, const float* codebook, int K,
                   int32_t* index, float* zq, float* dist2) override;
  void embed_codes(int B, int D, int64_t HW, const int32_t* index, const float* codebook,
                   int K, float* zq) override;

  // ---- backward (training); vq/conv_ops.h
  void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                       float* dx, float* dw, float* dbias) override;
  void group_norm_backward(int B, int C, int64_t HW, int groups, float eps, const float* x,
                           const float* gamma, const float* beta, const float* dy, float* dx,
                           float* dgamma, float* dbeta) override;
  void group_norm_swish_backward(int B, int C, int64_t HW, int groups, float eps,
                                 const float* x, const float* gamma, const float* beta,
                                 const float* dy, float* dx, float* dgamma,
                                 float* dbeta) override;
  void swish_backward(int64_t count, const float* x, const float* dy, float* dx) override;
  void upsample_nearest2x_backward(int B, int C, int H, int W, const float* dy,
                                   float* dx) override;
  void spatial_attention_backward(int B, int C, int64_t HW, const float* q, const float* k,
                                  const float* v, const float* dout, float* dq, float* dk,
                                  float* dv) override;
  void l2_normalize_rows_backward(int64_t n, int d, const float* x, const float* dy,
                                  float* dx) override;
  void quantize_l2_backward(int B, int D, int64_t HW, const float* z, const float* codebook,
                            int K, const int32_t* index, const float* dzq, float codebook_scale,
                            float commit_scale, float* dz, float* dcodebook) override;
  void pixel_loss(int64_t count, const float* rec, const float* target, float l2_scale,
                  float l1_scale, float* drec, float* sums) override;

 private:
  // At least `floats` floats of scratch (contents undefined).
  float* scratch(size_t floats);
  // How many floats a tile may use: scratch_bytes / 4, at least `minimum` (one row of work).
  size_t tile_floats(size_t minimum) const;

  void normalise(int B, int C, int64_t HW, int groups, float eps, const float* x,
                 const float* gamma, const float* beta, float* y, bool with_swish);
  void normalise_backward(int B, int C, int64_t HW, int groups, float eps, const float* x,
                          const float* gamma, const float* beta, const float* dy, float* dx,
                          float* dgamma, float* dbeta, bool with_swish);
  // At least `count` doubles of the second scratch (contents undefined): the backward ops'
  // partial sums (per image and channel, per block, per position), combined in a fixed order.
  double* partials(size_t count);

  size_t scratch_bytes_;
  std::vector<float> scratch_;
  std::vector<double> partials_;
  // conv2d_backward's flipped, transposed weights (Cin, Cout, k, k): kept out of scratch_,
  // which the conv2d it calls for dx grows and reuses.
  std::vector<float> flipped_;
};

}  // namespace cb
