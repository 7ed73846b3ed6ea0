// The fast cpu backend of the model ops (float): every matmul through cpu_sgemm (oneDNN,
// OpenBLAS or the blocked loop: sgemm.h picks per call), attention in attention_kernel.h's
// vector loops over the visible keys only, the loss (softmax, loss
// and dlogits) and the normalisations fused per row, threads from parallel_for where the work
// is large.
//
// Determinism: every output is a function of the inputs alone, never of thread timing, so a
// training run resumed from a checkpoint repeats its losses bit for bit. Reductions over rows
// into parameter gradients (db, dshift, dscale, dgate, dvec, dtable, dangles, dmix) give each
// output element to one thread, which sums in row order; the per-block partial sums of dmix are
// combined in block order. Attention gives each (batch, head) pair to one thread.
//
// Scratch: attention's score and probability tiles, rope's cos/sin tables and per-block partial
// sums live in buffers owned by the object (grown, never shrunk), so one CpuModelOps must not be called from
// two threads at once (a Model owns its own).
//
// Precision::bf16 (made only on a CPU with AVX512-BF16, and with oneDNN; otherwise the
// constructor throws a cb::Error naming what is missing): the backend also offers the
// mixed-precision ops (mixed(), mixed_ops.h), whose matmuls are oneDNN bf16 matmuls (bf16
// operands, an fp32 operand rounded to bf16 on the way in, fp32 accumulation and output). Its
// ModelOps<float> ops, linear included, stay fp32.
//
// Frozen weights (a forward, a sampling call: ModelOps::begin_frozen_weights): a linear
// layer's weights are repacked into oneDNN's blocked layout (onednn_gemm.h,
// OnednnPackedWeights), by their address, and every product reads the copy; a new version
// repacks them into the same buffer on first use (training: once per step).
//
// Files: model_ops_cpu.cc (dense, elementwise, loss, optimizer), model_ops_cpu_mixed.cc
// (mixed precision), model_ops_cpu_norm.cc
// (layernorm, AdaLN), model_ops_cpu_embed.cc (rows, rope), model_ops_cpu_attention.cc,
// model_ops_cpu_sample.cc (upsampling and token draws).
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "../model/mixed_ops.h"
#include "../model/model_ops.h"
#include "../model/precision.h"
#include "onednn_gemm.h"

namespace cb {

class CpuModelOps final : public ModelOps<float>, public MixedPrecisionOps {
 public:
  explicit CpuModelOps(Precision precision = Precision::fp32);
  // "cpu", or "cpu-bf16" when made for bf16.
  const char* name() const override {
    return precision_ == Precision::bf16 ? "cpu-bf16" : "cpu";
  }
  DeviceMemory& memory() override { return host_memory(); }
  Precision precision() const { return precision_; }
  MixedPrecisionOps* mixed() override {
    return precision_ == Precision::bf16 ? this : nullptr;
  }
  void begin_frozen_weights(uint64_t version) override;
  void end_frozen_weights() override { frozen_ = false; }

  void linear(int64_t n, int in, int out, const float* x, const float* w, const float* b,
              float* y) override;
  void linear_backward(int64_t n, int in, int out, const float* x, const float* w,
                       const float* dy, float* dx, float* dw, float* db) override;

  void linear_gelu(int64_t n, int in, int out, const float* x, const float* w, const float* b,
                   float* y) override;
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

  void write_kv_cache(int B, int m, int t0, int H, int W, const float* k, int64_t ld_k,
                      const float* v, int64_t ld_v, float* kc, float* vc,
                      int64_t kv_batch_stride) override;
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

  // ---- mixed precision (mixed_ops.h; model_ops_cpu_mixed.cc, adamw_mixed in model_ops_cpu.cc)
  void to_bf16(int64_t rows, int64_t cols, const float* src, int64_t src_ld, bf16_t* dst,
               int64_t dst_ld) override;
  void modulate_bf16(int B, int T, int c, const float* xn, const float* shift,
                     const float* scale, int ld, bf16_t* y) override;
  void gelu_bf16(int64_t count, const float* x, bf16_t* y) override;
  void linear_gelu_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                         const float* b, float* y) override;
  bool bf16_activations() const override { return true; }
  void linear_gelu_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                         const float* b, bf16_t* y) override;
  void linear_gelu_mixed(int64_t n, int in, int out, const bf16_t* x, const bf16_t* w,
                         const float* b, bf16_t* y) override;
  void linear_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w, const float* b,
                    float* y) override;
  void linear_mixed(int64_t n, int in, int out, const bf16_t* x, const bf16_t* w,
                    const float* b, float* y) override;
  void linear_backward_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                             const float* dy, float* dx, float* dw, float* db) override;
  void linear_backward_mixed(int64_t n, int in, int out, const bf16_t* x, const bf16_t* w,
                             const float* dy, float* dx, float* dw, float* db) override;
  void adamw_mixed(int64_t count, float* param, bf16_t* param16, const float* grad, float* m,
                   float* v, float lr, float beta1, float beta2, float eps, float weight_decay,
                   int64_t t) override;

 private:
  // bf16 copies of fp32 matmul operands (mixed precision), grown, never shrunk.
  bf16_t* bf16_scratch(std::vector<bf16_t>& buffer, int64_t count);

  // The packed copy of the (out, in) weights w while they are frozen, made on first use; null
  // when not frozen or where oneDNN takes the plain weights (then the caller's path runs).
  const OnednnPackedWeights* packed(GemmType type, const void* w, int out, int in);

  Precision precision_;
  bool frozen_ = false;
  uint64_t frozen_version_ = 0;
  struct PackedEntry {
    std::unique_ptr<OnednnPackedWeights> weights;  // null: oneDNN takes these plain
    bool made = false;
    GemmType type = GemmType::f32;
    int out = 0, in = 0;
    uint64_t version = 0;  // the frozen version they were packed at
  };
  std::unordered_map<const void*, PackedEntry> packed_;  // by w
  // The sampler's cached keys, transposed as attention_cached reads them, written by
  // write_kv_cache while frozen (the sampler writes every slot before it is read, so a mirror
  // kept from an earlier call is never read stale).
  struct KeyMirror {
    int rows = 0, slots = 0, heads = 0, width = 0;  // B, T, H, W of the cache
    int64_t pair_floats = 0;  // one (row, head): ceil(T / 16) blocks of (hd, 16)
    std::vector<float> data;  // (B, H, ceil(T / 16), hd, 16)
    const float* pair(int64_t b, int h) const {
      return data.data() + (b * heads + h) * pair_floats;
    }
  };
  std::unordered_map<const float*, KeyMirror> key_mirrors_;  // by the cache's key pointer
  const KeyMirror* key_mirror(const float* k, int B, int H, int64_t kv_batch_stride,
                              int64_t C) const;
  // The bf16 backend's KV cache (attention_bf16.h): write_kv_cache writes the keys and values
  // here, as bf16 in attend_bf16's layouts, instead of into the fp32 cache arrays (which then
  // hold nothing; attention_cached reads this copy). Written for every call, frozen or not.
  struct Bf16Cache {
    int rows = 0, slots = 0, heads = 0, width = 0;  // B, T, H, W of the cache
    int64_t pair_keys = 0, pair_values = 0;  // bf16 values of one (row, head)
    std::vector<bf16_t> keys, values;        // (B, H, pair_keys), (B, H, pair_values)
    const bf16_t* keys_of(int64_t b, int h) const {
      return keys.data() + (b * heads + h) * pair_keys;
    }
    const bf16_t* values_of(int64_t b, int h) const {
      return values.data() + (b * heads + h) * pair_values;
    }
  };
  std::unordered_map<const float*, Bf16Cache> bf16_caches_;  // by the cache's key pointer
  // The bf16 cache behind the fp32 key array k, when it has this shape; else null.
  const Bf16Cache* bf16_cache(const float* k, int B, int H, int64_t kv_batch_stride,
                              int64_t C) const;
  void write_bf16_cache(int B, int m, int t0, int H, int W, const float* k, int64_t ld_k,
                        const float* v, int64_t ld_v, const float* kc, int64_t kv_batch_stride);
  std::vector<bf16_t> x16_, dy16_;  // (n, in) and (n, out) bf16 copies
  std::vector<float> gelu_scratch_;  // (n, out): linear_gelu_mixed's fp32 result before rounding
  // Fills rope_cos_ and rope_sin_ with the cos and sin of the angles the rows use, either by
  // position (positions, hd/2) or, returning true, by row (n rows of pos_p, then n of pos_q).
  bool rope_tables(int64_t n, int hd, const float* angles, const int32_t* pos_p,
                   const int32_t* pos_q);

  std::vector<float> attention_scratch_;  // per thread: score and probability tiles
  std::vector<float> rope_cos_, rope_sin_;  // (positions or rows, hd/2) cos, sin of angles
  std::vector<float> rope_alpha_;           // (H) sigmoid of the mixing logits
  std::vector<double> rope_dmix_;         // (pair blocks, H) partial dmix_logit sums
};

}  // namespace cb
