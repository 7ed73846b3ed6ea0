// CpuModelOps: dense layers, elementwise ops, the fused loss and AdamW.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "../error.h"
#include "bf16_convert.h"
#include "model_ops_cpu.h"
#include "onednn_gemm.h"
#include "parallel.h"
#include "row_kernels.h"
#include "vector_math.h"
#include "sgemm.h"

namespace cb {
namespace {

// Elements per thread below which a loop is not worth a thread (spawning one costs ~20 us).
constexpr int64_t kGrain = int64_t(1) << 16;
// Columns per block of a column-partitioned reduction.
constexpr int kColBlock = 64;

// Rows per thread for row-parallel loops over rows of `cols` values.
inline int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, cols));
}

// db (out) += column sums of dy (n, out). Each column is summed in row order by one thread,
// so the result does not depend on the number of threads.
void column_sums(int64_t n, int out, const float* dy, float* db) {
  const int64_t blocks = (out + kColBlock - 1) / kColBlock;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, n * kColBlock));
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    float acc[kColBlock];
    for (int64_t blk = b0; blk < b1; blk++) {
      const int c0 = (int)blk * kColBlock, c1 = std::min(out, c0 + kColBlock);
      std::fill(acc, acc + (c1 - c0), 0.0f);
      sum_rows(n, c1 - c0, out, dy + c0, acc);
      for (int j = 0; j < c1 - c0; j++) db[c0 + j] += acc[j];
    }
  });
}


}  // namespace

// ---- dense ------------------------------------------------------------------------------------

void CpuModelOps::begin_frozen_weights(uint64_t version) {
  frozen_version_ = version;
  frozen_ = true;
}

const OnednnPackedWeights* CpuModelOps::packed(GemmType type, const void* w, int out, int in) {
  if (!frozen_ || !onednn_compiled() || !onednn_has_avx512()) return nullptr;
  PackedEntry& e = packed_[w];
  if (!e.made || e.type != type || e.out != out || e.in != in) {
    e = PackedEntry{onednn_pack_weights(type, out, in, w), true, type, out, in, frozen_version_};
    return e.weights.get();
  }
  if (e.weights == nullptr) return nullptr;  // oneDNN reads these plain
  // Written since: packed again into the same buffer (a new one each training step would
  // cost its page faults again).
  if (e.version != frozen_version_) {
    onednn_repack_weights(*e.weights, w);
    e.version = frozen_version_;
  }
  return e.weights.get();
}

void CpuModelOps::linear(int64_t n, int in, int out, const float* x, const float* w,
                         const float* b, float* y) {
  // y (n, out) = x (n, in) . w^T (w: (out, in)) + the broadcast bias (fused where the path can).
  if (const OnednnPackedWeights* p = packed(GemmType::f32, w, out, in)) {
    return onednn_linear_packed(*p, n, x, y, b);
  }
  cpu_sgemm_bias(false, true, (int)n, out, in, 1.0f, x, in, w, in, 0.0f, y, out, b);
}

void CpuModelOps::linear_gelu(int64_t n, int in, int out, const float* x, const float* w,
                              const float* b, float* y) {
  if (const OnednnPackedWeights* p = packed(GemmType::f32, w, out, in)) {
    return onednn_linear_packed(*p, n, x, y, b, GemmEpilogue::gelu_tanh);
  }
  // oneDNN's matmul applies GELU to each tile of y while it is in cache; other paths take a
  // second pass.
  if (sgemm_path_for(false, true, (int)n, out, in) == SgemmPath::onednn_matmul && in > 0) {
    onednn_matmul(GemmType::f32, false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out, b,
                  GemmEpilogue::gelu_tanh);
    return;
  }
  linear(n, in, out, x, w, b, y);
  gelu(n * out, y, y);
}

void CpuModelOps::linear_backward(int64_t n, int in, int out, const float* x, const float* w,
                                  const float* dy, float* dx, float* dw, float* db) {
  // dx (n, in) = dy (n, out) . w (out, in)
  if (dx != nullptr) cpu_sgemm(false, false, (int)n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
  // dw (out, in) += dy^T . x (n, in); the header requires dw, null is tolerated as in cpu-ref
  if (dw != nullptr) cpu_sgemm(true, false, out, in, (int)n, 1.0f, dy, out, x, in, 1.0f, dw, in);
  if (db != nullptr) column_sums(n, out, dy, db);
}

// ---- elementwise ------------------------------------------------------------------------------

// GELU through one exp instead of tanh (std::tanh in float is several times slower), using
// 1 + tanh(u) = 2 sigmoid(2u) and 1 - tanh(u)^2 = 4 e / (1 + e)^2 with e = exp(-2|u|): no
// cancellation anywhere, so these are accurate to a few ulps even where tanh(u) is near +-1.
void CpuModelOps::gelu(int64_t count, const float* x, float* y) {
  parallel_for(count, kGrain, [&](int64_t i0, int64_t i1) { gelu_span(x + i0, y + i0, i1 - i0); });
}

void CpuModelOps::gelu_backward(int64_t count, const float* x, const float* dy, float* dx) {
  parallel_for(count, kGrain, [&](int64_t i0, int64_t i1) {
    gelu_backward_span(x + i0, dy + i0, dx + i0, i1 - i0);
  });
}

void CpuModelOps::silu(int64_t count, const float* x, float* y) {
  parallel_for(count, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) y[i] = x[i] / (1.0f + std::exp(-x[i]));
  });
}

void CpuModelOps::silu_backward(int64_t count, const float* x, const float* dy, float* dx) {
  parallel_for(count, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const float s = 1.0f / (1.0f + std::exp(-x[i]));
      dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
  });
}

void CpuModelOps::add_inplace(int64_t count, float* y, const float* x) {
  parallel_for(count, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) y[i] += x[i];
  });
}

void CpuModelOps::copy_strided(int64_t rows, int cols, const float* src, int64_t src_ld,
                               float* dst, int64_t dst_ld, bool accumulate) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* s = src + r * src_ld;  // (cols)
      float* d = dst + r * dst_ld;        // (cols)
      if (accumulate) {
        for (int c = 0; c < cols; c++) d[c] += s[c];
      } else {
        std::memcpy(d, s, sizeof(float) * cols);
      }
    }
  });
}

void CpuModelOps::zero_strided(int64_t rows, int cols, float* dst, int64_t ld) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) std::memset(dst + r * ld, 0, sizeof(float) * cols);
  });
}

// ---- loss -------------------------------------------------------------------------------------

void CpuModelOps::softmax_cross_entropy(int64_t n, int K, const float* logits,
                                        const int32_t* target, float* loss_rows, float* dlogits,
                                        float grad_scale) {
  parallel_for(n, row_grain(K), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      const float* l = logits + i * K;                         // (K)
      float* dl = dlogits != nullptr ? dlogits + i * K : nullptr;  // (K)
      const int32_t tgt = target[i];
      CB_CHECK(tgt < K, "softmax_cross_entropy: target " + std::to_string(tgt) + " at row " +
                            std::to_string(i) + " is not below K = " + std::to_string(K));
      if (tgt < 0) {
        loss_rows[i] = 0.0f;
        if (dl != nullptr) std::memset(dl, 0, sizeof(float) * K);
        continue;
      }
      float mx = l[0];
      for (int j = 1; j < K; j++) mx = std::max(mx, l[j]);
      // The exponentials go into dlogits (when wanted) so the gradient pass only rescales.
      float sum = 0.0f;
      if (dl != nullptr) {
        for (int j = 0; j < K; j++) sum += (dl[j] = std::exp(l[j] - mx));
      } else {
        for (int j = 0; j < K; j++) sum += std::exp(l[j] - mx);
      }
      loss_rows[i] = std::log(sum) + mx - l[tgt];
      if (dl != nullptr) {
        const float s = grad_scale / sum;
        for (int j = 0; j < K; j++) dl[j] *= s;
        dl[tgt] -= grad_scale;
      }
    }
  });
}

// ---- optimizer --------------------------------------------------------------------------------

void CpuModelOps::adamw(int64_t count, float* param, const float* grad, float* m, float* v,
                        float lr, float beta1, float beta2, float eps, float weight_decay,
                        int64_t t) {
  adamw_mixed(count, param, nullptr, grad, m, v, lr, beta1, beta2, eps, weight_decay, t);
}

// adamw, and with param16 the bf16 copy of each updated value (the fp32 values are the same
// either way).
void CpuModelOps::adamw_mixed(int64_t count, float* param, bf16_t* param16, const float* grad,
                              float* m, float* v, float lr, float beta1, float beta2, float eps,
                              float weight_decay, int64_t t) {
  CB_CHECK(t >= 1, "adamw: step " + std::to_string(t) + " is not 1-based");
  const float bc1 = (float)(1.0 - std::pow((double)beta1, (double)t));
  const float bc2 = (float)(1.0 - std::pow((double)beta2, (double)t));
  parallel_for(count, kGrain, [&](int64_t i0, int64_t i1) {
    adamw_span(param + i0, grad + i0, m + i0, v + i0, i1 - i0, lr, beta1, beta2, eps,
               weight_decay, bc1, bc2);
    if (param16 != nullptr) float_to_bf16_span(param + i0, param16 + i0, i1 - i0);
  });
}

}  // namespace cb
