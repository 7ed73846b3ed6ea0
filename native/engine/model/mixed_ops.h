// Mixed-precision training ops (DESIGN.md "Decisions: device memory and the cuda backend"): a
// backend with bf16 matmuls offers these next to its ModelOps<float> (ModelOps::mixed()), and
// the model then keeps a bf16 copy of its fp32 master parameters and stores the activations
// that are only ever matmul inputs in bf16. Everything else (the residual stream, LayerNorm
// statistics, attention, softmax and loss, every gradient and reduction, the optimizer's
// moments and master weights) stays fp32. cpu-ref and cpu have no such ops (mixed() is null).
//
// Conventions as in model_ops.h; every pointer is in the backend's memory.
#pragma once

#include <cstdint>

#include "../error.h"

namespace cb {

// One bfloat16 value (the high half of a float32: 8 exponent bits, 8 significant bits). Only a
// backend does arithmetic on it; the model just stores and passes it.
struct bf16_t {
  uint16_t bits;
};
static_assert(sizeof(bf16_t) == 2, "bf16_t is two bytes");

class MixedPrecisionOps {
 public:
  virtual ~MixedPrecisionOps() = default;

  // dst[r*dst_ld + c] = bf16(src[r*src_ld + c]) for the rows x cols block, rounded to nearest
  // (ties to even).
  virtual void to_bf16(int64_t rows, int64_t cols, const float* src, int64_t src_ld,
                       bf16_t* dst, int64_t dst_ld) = 0;
  // model_ops.h's modulate and gelu, with the result rounded to bf16 (the math is fp32).
  virtual void modulate_bf16(int B, int T, int c, const float* xn, const float* shift,
                             const float* scale, int ld, bf16_t* y) = 0;
  virtual void gelu_bf16(int64_t count, const float* x, bf16_t* y) = 0;

  // model_ops.h's linear and linear_backward with the bf16 copy `w` of the weight (out, in)
  // and an fp32 or a bf16 input x (n, in); y, dy, dx, dw and db are fp32 (dw and db +=).
  virtual void linear_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                            const float* b, float* y) = 0;
  virtual void linear_mixed(int64_t n, int in, int out, const bf16_t* x, const bf16_t* w,
                            const float* b, float* y) = 0;
  // y = gelu(linear_mixed(x)): model_ops.h's linear_gelu with the bf16 weight copy.
  virtual void linear_gelu_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                                 const float* b, float* y) = 0;
  // Whether the backend has the two below, so that a caller (the sampler) may keep the fused
  // MLP's hidden activations as bf16: the matmul writes them rounded, and the next one reads
  // them, with no fp32 copy in between. Backends without them keep fp32 activations.
  virtual bool bf16_activations() const { return false; }
  // y = bf16(gelu(linear_mixed(x))) for an fp32 or a bf16 x: the fused GELU's fp32 result
  // rounded once, to nearest even (as gelu_bf16 rounds). Only where bf16_activations().
  virtual void linear_gelu_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                                 const float* b, bf16_t* y);
  virtual void linear_gelu_mixed(int64_t n, int in, int out, const bf16_t* x, const bf16_t* w,
                                 const float* b, bf16_t* y);
  virtual void linear_backward_mixed(int64_t n, int in, int out, const float* x,
                                     const bf16_t* w, const float* dy, float* dx, float* dw,
                                     float* db) = 0;
  virtual void linear_backward_mixed(int64_t n, int in, int out, const bf16_t* x,
                                     const bf16_t* w, const float* dy, float* dx, float* dw,
                                     float* db) = 0;

  // model_ops.h's adamw on the fp32 master values `param`, which also writes their bf16 copy
  // param16 (count), so the copy never goes stale between steps.
  virtual void adamw_mixed(int64_t count, float* param, bf16_t* param16, const float* grad,
                           float* m, float* v, float lr, float beta1, float beta2, float eps,
                           float weight_decay, int64_t t) = 0;
};

inline void MixedPrecisionOps::linear_gelu_mixed(int64_t, int, int, const float*, const bf16_t*,
                                                 const float*, bf16_t*) {
  CB_FAIL("linear_gelu_mixed with a bf16 output: this backend keeps fp32 activations");
}

inline void MixedPrecisionOps::linear_gelu_mixed(int64_t, int, int, const bf16_t*,
                                                 const bf16_t*, const float*, bf16_t*) {
  CB_FAIL("linear_gelu_mixed with a bf16 output: this backend keeps fp32 activations");
}

}  // namespace cb
