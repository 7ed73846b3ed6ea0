// The cuda backend of the model ops (float activations and parameters in GPU memory): every op
// of model/model_ops.h as hand-written kernels (the toolkit here has no cuBLAS), on the default
// stream, each launch checked (CB_CUDA_CHECK_LAUNCH). Compiled only with nvcc (CB_HAVE_CUDA).
//
// Matmuls (linear, linear_backward) run in one of two precisions:
// - MatmulPrecision::fp32: a tiled fp32 SIMT kernel, the reference path of the parity tests;
// - MatmulPrecision::bf16: tensor cores (mma.sync / wmma) on bf16 inputs rounded from the
//   float operands, fp32 accumulation, fp32 output. This backend ("cuda") also offers the
//   mixed-precision ops (mixed(), mixed_ops.h), so a model trains with bf16 weight copies and
//   bf16 matmul-input activations; "cuda-fp32" has none and runs fp32 throughout.
//
// Files: memory.cu (CudaMemory: cudaMalloc, copies), model_dense.cu (linear),
// model_elementwise.cu (gelu, silu, add, copies), model_norm.cu (layernorm, AdaLN),
// model_embed.cu (gathers, scatters, rope), model_attention.cu (blockwise flash attention
// forward/backward, cached attention), model_loss.cu (softmax cross-entropy, AdamW),
// model_sample.cu (upsampling, token draws with the same Philox keys as the CPU),
// graph_recorder.cu (make_recorder: CUDA graphs of op sequences, for the sampler's steps).
#pragma once

#include <cstdint>
#include <memory>

#include "../model/model_ops.h"

namespace cb {

enum class MatmulPrecision { fp32, bf16 };

// GPU memory of the current device: cudaMalloc/cudaFree, synchronous copies (memory.cu).
DeviceMemory& cuda_memory();

class CudaModelOps final : public ModelOps<float>, public MixedPrecisionOps {
 public:
  explicit CudaModelOps(MatmulPrecision precision) : precision_(precision) {
    scratch_f_.bind(cuda_memory());
    scratch_i_.bind(cuda_memory());
  }
  const char* name() const override {
    return precision_ == MatmulPrecision::fp32 ? "cuda-fp32" : "cuda";
  }
  DeviceMemory& memory() override { return cuda_memory(); }
  MatmulPrecision precision() const { return precision_; }
  MixedPrecisionOps* mixed() override {
    return precision_ == MatmulPrecision::bf16 ? this : nullptr;
  }
  std::unique_ptr<OpRecorder> make_recorder() override;  // graph_recorder.cu
  // Counts reallocations of the scratch arrays: a recording that used the old ones is stale.
  uint64_t scratch_generation() const { return scratch_generation_; }
  // While set (during a graph capture), a scratch request that would reallocate throws.
  void set_capturing(bool on) { capturing_ = on; }

  void linear(int64_t n, int in, int out, const float* x, const float* w, const float* b,
              float* y) override;
  void linear_backward(int64_t n, int in, int out, const float* x, const float* w,
                       const float* dy, float* dx, float* dw, float* db) override;

  void gelu(int64_t count, const float* x, float* y) override;
  void gelu_backward(int64_t count, const float* x, const float* dy, float* dx) override;
  void silu(int64_t count, const float* x, float* y) override;
  void silu_backward(int64_t count, const float* x, const float* dy, float* dx) override;
  void add_inplace(int64_t count, float* y, const float* x) override;
  void copy_strided(int64_t rows, int cols, const float* src, int64_t src_ld, float* dst,
                    int64_t dst_ld, bool accumulate) override;
  void zero_strided(int64_t rows, int cols, float* dst, int64_t ld) override;

  void layernorm(int64_t n, int c, const float* x, float* y, float* mean, float* rstd) override;
  void layernorm_backward(int64_t n, int c, const float* x, const float* mean, const float* rstd,
                          const float* dy, float* dx) override;
  void modulate(int B, int T, int c, const float* xn, const float* shift, const float* scale,
                int ld, float* y) override;
  void modulate_backward(int B, int T, int c, const float* xn, const float* scale, int ld,
                         const float* dy, float* dxn, float* dshift, float* dscale) override;
  void gated_residual(int B, int T, int c, float* x, const float* gate, int ld,
                      const float* h) override;
  void gated_residual_backward(int B, int T, int c, const float* dx, const float* gate, int ld,
                               const float* h, float* dh, float* dgate) override;

  void gather_rows(int64_t n, int c, const float* table, const int32_t* index,
                   float* out) override;
  void scatter_add_rows(int64_t n, int c, const float* dout, const int32_t* index,
                        float* dtable) override;
  void fill_masked_rows(int64_t n, int c, const uint8_t* mask, const float* vec,
                        float* x) override;
  void fill_masked_rows_backward(int64_t n, int c, const uint8_t* mask, float* dx,
                                 float* dvec) override;

  void rope(int64_t n, int H, int hd, const float* x, int ld, const float* angles,
            const int32_t* pos_p, const int32_t* pos_q, const float* mix_logit,
            float* y) override;
  void rope_backward(int64_t n, int H, int hd, const float* x, int ld, const float* angles,
                     const int32_t* pos_p, const int32_t* pos_q, const float* mix_logit,
                     const float* dy, float* dx, float* dangles, float* dmix_logit) override;

  void attention(int B, int T, int H, int hd, const float* q, const float* k, const float* v,
                 const int32_t* visible_end, float* out, float* lse) override;
  void attention_backward(int B, int T, int H, int hd, const float* q, const float* k,
                          const float* v, const int32_t* visible_end, const float* out,
                          const float* lse, const float* dout, float* dq, float* dk,
                          float* dv) override;
  void attention_cached(int B, int Tq, int H, int hd, const float* q, const float* k,
                        const float* v, int64_t kv_batch_stride, const int32_t* visible_end,
                        float* out) override;

  void upsample_bilinear(int B, int s_in, int s_out, int D, const float* src,
                         float* dst) override;
  void sample_tokens(int64_t n, int K, const float* cond, const float* uncond, float guidance,
                     const TokenSampling& s, const int32_t* image, const int32_t* slot,
                     int32_t* codes, float* entropy_bits) override;

  void softmax_cross_entropy(int64_t n, int K, const float* logits, const int32_t* target,
                             float* loss_rows, float* dlogits, float grad_scale) override;

  void adamw(int64_t count, float* param, const float* grad, float* m, float* v, float lr,
             float beta1, float beta2, float eps, float weight_decay, int64_t t) override;

  // ---- mixed precision (mixed_ops.h) ------------------------------------------------------
  void to_bf16(int64_t rows, int64_t cols, const float* src, int64_t src_ld, bf16_t* dst,
               int64_t dst_ld) override;                                    // model_elementwise.cu
  void modulate_bf16(int B, int T, int c, const float* xn, const float* shift,
                     const float* scale, int ld, bf16_t* y) override;       // model_norm.cu
  void gelu_bf16(int64_t count, const float* x, bf16_t* y) override;     // model_elementwise.cu
  // (The bf16-output overloads stay the base's: this backend keeps fp32 activations.)
  using MixedPrecisionOps::linear_gelu_mixed;
  void linear_gelu_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                         const float* b, float* y) override {
    linear_mixed(n, in, out, x, w, b, y);
    gelu(n * out, y, y);
  }
  void linear_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w, const float* b,
                    float* y) override;                                     // model_dense.cu
  void linear_mixed(int64_t n, int in, int out, const bf16_t* x, const bf16_t* w,
                    const float* b, float* y) override;
  void linear_backward_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                             const float* dy, float* dx, float* dw, float* db) override;
  void linear_backward_mixed(int64_t n, int in, int out, const bf16_t* x, const bf16_t* w,
                             const float* dy, float* dx, float* dw, float* db) override;
  void adamw_mixed(int64_t count, float* param, bf16_t* param16, const float* grad, float* m,
                   float* v, float lr, float beta1, float beta2, float eps, float weight_decay,
                   int64_t t) override;                                     // model_loss.cu

 private:
  // linear and linear_backward for fp32 or bf16 operands (model_dense.cu).
  template <typename XT, typename WT>
  void linear_typed(int64_t n, int in, int out, const XT* x, const WT* w, const float* b,
                    float* y);
  template <typename XT, typename WT>
  void linear_backward_typed(int64_t n, int in, int out, const XT* x, const WT* w,
                             const float* dy, float* dx, float* dw, float* db);

  // Scratch in GPU memory for the ops that need it (grown on demand, never shrunk; one op uses
  // it at a time). Defined in memory.cu.
  float* scratch_floats(int64_t count);
  int32_t* scratch_ints(int64_t count);

  MatmulPrecision precision_;
  DeviceArray<float> scratch_f_;
  DeviceArray<int32_t> scratch_i_;
  uint64_t scratch_generation_ = 0;
  bool capturing_ = false;
};

}  // namespace cb
