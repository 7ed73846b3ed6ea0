// The op interface of the transformer: every step of the model's forward and backward is one
// call here, so a backend (cpu-ref, cpu, later cuda) supplies exactly these kernels.
//
// Conventions (all backends):
// - Row-major. `n` rows of `c` columns means a (n, c) matrix with row stride c unless an
//   explicit leading dimension `ld` is given.
// - Linear weights are (out, in) as in PyTorch: y = x W^T + b.
// - Backward ops OVERWRITE activation gradients (dx) and ACCUMULATE (+=) parameter gradients
//   (dw, db, dtable, ...). zero_grad happens outside the ops.
// - Batched rows are (B, T) = batch x slots flattened to n = B * T, slot fastest.
// - Nothing here allocates; scratch comes from the caller. Every pointer, integer arrays
//   included, points into memory() (host memory for cpu-ref and cpu, the GPU's for cuda).
#pragma once

#include <cstdint>
#include <memory>

#include "../sample/token_sampling.h"
#include "device_memory.h"
#include "mixed_ops.h"
#include "op_recorder.h"

namespace cb {

// Per-slot visibility of blockwise causal attention: slot t attends to slots [0, visible_end[t]).
// visible_end is shared by every row of the batch (it depends only on the block sizes).

// `Real` is the scalar type (float; double for the gradient checks). `T` is always the slot count.
template <typename Real>
class ModelOps {
 public:
  virtual ~ModelOps() = default;
  virtual const char* name() const = 0;
  // Where every pointer passed to these ops lives (parameters, activations, integer inputs).
  virtual DeviceMemory& memory() = 0;
  // The mixed-precision ops (mixed_ops.h) of a backend that trains with bf16 activations, or
  // null: then the model runs in Real throughout.
  virtual MixedPrecisionOps* mixed() { return nullptr; }
  // A recorder of this backend's op sequences (op_recorder.h), or null when it has none.
  virtual std::unique_ptr<OpRecorder> make_recorder() { return nullptr; }
  // Between these two calls (a forward, a sampling call), the weights that linear layers are
  // given do not change, so a backend may keep repacked copies of them for its products (cpu:
  // oneDNN's blocked layout). `version` names the parameters' contents (Model::params_version):
  // a copy made under another version is made again before it is used.
  virtual void begin_frozen_weights(uint64_t version) { (void)version; }
  virtual void end_frozen_weights() {}

  // ---- dense ----------------------------------------------------------------------------
  // y (n, out) = x (n, in) . w^T (w: (out, in)) + b (out); b may be null.
  virtual void linear(int64_t n, int in, int out, const Real* x, const Real* w, const Real* b, Real* y) = 0;
  // dx (n, in) = dy . w (skipped when dx is null); dw (out, in) += dy^T . x;
  // db (out) += column sums of dy (skipped when db is null).
  virtual void linear_backward(int64_t n, int in, int out, const Real* x, const Real* w, const Real* dy,
                               Real* dx, Real* dw, Real* db) = 0;
  // y = gelu(x . w^T + b): linear then gelu, for a caller that keeps no pre-activation (the
  // sampler). A backend may fuse the two into one pass over y.
  virtual void linear_gelu(int64_t n, int in, int out, const Real* x, const Real* w, const Real* b,
                           Real* y) {
    linear(n, in, out, x, w, b, y);
    gelu(n * out, y, y);
  }

  // ---- elementwise ----------------------------------------------------------------------
  // GELU, tanh approximation: y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  virtual void gelu(int64_t count, const Real* x, Real* y) = 0;
  virtual void gelu_backward(int64_t count, const Real* x, const Real* dy, Real* dx) = 0;
  // SiLU: y = x sigmoid(x).
  virtual void silu(int64_t count, const Real* x, Real* y) = 0;
  virtual void silu_backward(int64_t count, const Real* x, const Real* dy, Real* dx) = 0;
  // y += x
  virtual void add_inplace(int64_t count, Real* y, const Real* x) = 0;
  // Strided block copy of `rows` x `cols`: dst[r*dst_ld + c] = src[r*src_ld + c]
  // (or += when accumulate). Used for concatenation, splitting and class-token rows.
  virtual void copy_strided(int64_t rows, int cols, const Real* src, int64_t src_ld, Real* dst,
                            int64_t dst_ld, bool accumulate) = 0;
  // dst[r*ld + c] = 0 for the `rows` x `cols` block.
  virtual void zero_strided(int64_t rows, int cols, Real* dst, int64_t ld) = 0;

  // ---- normalisation and AdaLN ----------------------------------------------------------
  // LayerNorm without affine over the last dim c, eps 1e-6:
  // y = (x - mean) * rstd; saves mean (n) and rstd (n) for the backward.
  virtual void layernorm(int64_t n, int c, const Real* x, Real* y, Real* mean, Real* rstd) = 0;
  virtual void layernorm_backward(int64_t n, int c, const Real* x, const Real* mean, const Real* rstd,
                                  const Real* dy, Real* dx) = 0;
  // AdaLN modulation, rows grouped by batch (n = B * T):
  // y[b,t,:] = xn[b,t,:] * (1 + scale[b,:]) + shift[b,:].
  // shift and scale are rows of a (B, ld) matrix (the AdaLN projection output).
  virtual void modulate(int B, int T, int c, const Real* xn, const Real* shift, const Real* scale, int ld,
                        Real* y) = 0;
  // dxn = dy * (1 + scale); dshift[b] += sum_t dy; dscale[b] += sum_t dy * xn.
  // dshift and dscale are rows of a (B, ld) gradient matrix.
  virtual void modulate_backward(int B, int T, int c, const Real* xn, const Real* scale, int ld,
                                 const Real* dy, Real* dxn, Real* dshift, Real* dscale) = 0;
  // Gated residual: x[b,t,:] += gate[b,:] * h[b,t,:]; gate is a row of a (B, ld) matrix.
  virtual void gated_residual(int B, int T, int c, Real* x, const Real* gate, int ld, const Real* h) = 0;
  // dh = dx * gate; dgate[b] += sum_t dx * h. (dx flows on to the residual input unchanged.)
  virtual void gated_residual_backward(int B, int T, int c, const Real* dx, const Real* gate, int ld,
                                       const Real* h, Real* dh, Real* dgate) = 0;

  // ---- embeddings -----------------------------------------------------------------------
  // out[i,:] = table[index[i],:] for i < n; table is (rows, c).
  virtual void gather_rows(int64_t n, int c, const Real* table, const int32_t* index, Real* out) = 0;
  // dtable[index[i],:] += dout[i,:].
  virtual void scatter_add_rows(int64_t n, int c, const Real* dout, const int32_t* index,
                                Real* dtable) = 0;
  // Rows whose mask[i] is non-zero are replaced by `vec` (c): x[i,:] = vec.
  virtual void fill_masked_rows(int64_t n, int c, const uint8_t* mask, const Real* vec, Real* x) = 0;
  // dvec += sum of dx rows with mask[i] != 0, and those rows of dx are zeroed (in place).
  virtual void fill_masked_rows_backward(int64_t n, int c, const uint8_t* mask, Real* dx,
                                         Real* dvec) = 0;

  // ---- rotary position embedding with learned angles -------------------------------------
  // x holds n = B*T rows of H heads of hd values at row stride ld (head h at x + h*hd), and
  // hd/2 rotary pairs: pair i rotates (x[2i], x[2i+1]). angles is (positions, hd/2).
  // Queries: y = R(angles[pos_p[i]]) x.
  // Keys with mixing: y = alpha_h R(angles[pos_p[i]]) x + (1 - alpha_h) R(angles[pos_q[i]]) x,
  // where alpha_h = sigmoid(mix_logit[h]); mix_logit == null means alpha = 1 (no mixing).
  // y is written densely as (n, H*hd).
  virtual void rope(int64_t n, int H, int hd, const Real* x, int ld, const Real* angles,
                    const int32_t* pos_p, const int32_t* pos_q, const Real* mix_logit, Real* y) = 0;
  // dx (n, ld; only the H*hd columns are written) = (dR)^T dy; dangles += d/dangles;
  // dmix_logit (H) += d/dmix_logit (when mix_logit is not null).
  virtual void rope_backward(int64_t n, int H, int hd, const Real* x, int ld, const Real* angles,
                             const int32_t* pos_p, const int32_t* pos_q, const Real* mix_logit,
                             const Real* dy, Real* dx, Real* dangles, Real* dmix_logit) = 0;

  // ---- attention ------------------------------------------------------------------------
  // Blockwise causal attention for B sequences of T slots and H heads of size hd.
  // q, k, v: (B, T, H*hd) dense. out (B, T, H*hd); lse (B, H, T) saves the log-sum-exp of the
  // scaled scores for the backward. scale = 1/sqrt(hd). Slot t sees keys [0, visible_end[t]).
  virtual void attention(int B, int T, int H, int hd, const Real* q, const Real* k, const Real* v,
                         const int32_t* visible_end, Real* out, Real* lse) = 0;
  // dq, dk, dv (B, T, H*hd) are overwritten. Probabilities are recomputed from q, k and lse.
  virtual void attention_backward(int B, int T, int H, int hd, const Real* q, const Real* k,
                                  const Real* v, const int32_t* visible_end, const Real* out,
                                  const Real* lse, const Real* dout, Real* dq, Real* dk, Real* dv) = 0;

  // Attention of Tq new query slots against a KV cache (the sampler): batch b's keys and values
  // are the rows [0, visible_end[j]) of k and v at k + b * kv_batch_stride (row stride H*hd);
  // query j sees exactly those. q and out are (B, Tq, H*hd) dense. No lse is kept.
  virtual void attention_cached(int B, int Tq, int H, int hd, const Real* q, const Real* k,
                                const Real* v, int64_t kv_batch_stride,
                                const int32_t* visible_end, Real* out) = 0;
  // The cache writes before attention_cached: keys k and values v of slots [t0, t0 + m) of
  // each of B rows ((B, m, W = H hd) at row strides ld_k and ld_v) into the cache rows kc and
  // vc (B, T, W) at kc + b * kv_batch_stride + t * W. A backend may keep its own copy of the
  // keys in the layout its attention reads (cpu, while weights are frozen: the sampler's calls).
  virtual void write_kv_cache(int B, int m, int t0, int /*H*/, int W, const Real* k,
                              int64_t ld_k, const Real* v, int64_t ld_v, Real* kc, Real* vc,
                              int64_t kv_batch_stride) {
    for (int b = 0; b < B; b++) {
      const int64_t at = b * kv_batch_stride + int64_t(t0) * W;
      copy_strided(m, W, k + int64_t(b) * m * ld_k, ld_k, kc + at, W, false);
      copy_strided(m, W, v + int64_t(b) * m * ld_v, ld_v, vc + at, W, false);
    }
  }

  // ---- sampling -------------------------------------------------------------------------
  // Bilinear resize with half-pixel centres (PyTorch align_corners=False) of B grids of
  // (s_in, s_in, D) vectors to (s_out, s_out, D), raster order: src (B, s_in^2, D),
  // dst (B, s_out^2, D).
  virtual void upsample_bilinear(int B, int s_in, int s_out, int D, const Real* src, Real* dst) = 0;
  // One code per row from logits (sample/token_sampling.h): cond and uncond are (n, K) (uncond
  // may be null when guidance is 0); row i's uniform comes from (s.seed, image[i], slot[i]).
  // codes (n); entropy_bits (n) may be null.
  virtual void sample_tokens(int64_t n, int K, const Real* cond, const Real* uncond,
                             float guidance, const TokenSampling& s, const int32_t* image,
                             const int32_t* slot, int32_t* codes, float* entropy_bits) = 0;

  // ---- loss -----------------------------------------------------------------------------
  // Fused softmax + cross-entropy over n rows of K logits. Rows with target < 0 are ignored.
  // loss_rows[i] = -log softmax(logits[i])[target[i]] (0 for ignored rows).
  // When dlogits is not null: dlogits = (softmax - onehot(target)) * grad_scale for counted
  // rows and 0 for ignored rows (grad_scale = 1 / counted rows gives the mean's gradient).
  virtual void softmax_cross_entropy(int64_t n, int K, const Real* logits, const int32_t* target,
                                     Real* loss_rows, Real* dlogits, Real grad_scale) = 0;

  // ---- optimizer ------------------------------------------------------------------------
  // AdamW over `count` values (one parameter tensor), bias-corrected with step t (1-based):
  // m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m_hat / (sqrt(v_hat) + eps) + wd p).
  virtual void adamw(int64_t count, Real* param, const Real* grad, Real* m, Real* v, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int64_t t) = 0;
};

// ModelOps::begin_frozen_weights for as long as it lives (a forward, a sampling call).
template <typename Real>
class FrozenWeights {
 public:
  FrozenWeights(ModelOps<Real>& ops, uint64_t version) : ops_(ops) {
    ops_.begin_frozen_weights(version);
  }
  ~FrozenWeights() { ops_.end_frozen_weights(); }
  FrozenWeights(const FrozenWeights&) = delete;
  FrozenWeights& operator=(const FrozenWeights&) = delete;

 private:
  ModelOps<Real>& ops_;
};

}  // namespace cb
