// CpuModelOps: the bf16 mode's constructor check and the mixed-precision ops (mixed_ops.h):
// conversions to bf16, the AdaLN modulation and GELU with bf16 outputs, and the linear layers
// as oneDNN bf16 matmuls (adamw_mixed is in model_ops_cpu.cc, beside adamw).
//
// Rounding: every fp32 value that enters a bf16 matmul is rounded to nearest-even bf16
// (bf16_convert.h) first; the products accumulate in fp32 and come out fp32, the bias is added
// in fp32. dy is rounded as well, as on the cuda backend, so both of the backward's products
// run on bf16 operands.
#include <algorithm>
#include <string>

#include "../error.h"
#include "bf16_convert.h"
#include "cpu_features.h"
#include "model_ops_cpu.h"
#include "onednn_gemm.h"
#include "parallel.h"
#include "vector_math.h"

namespace cb {
namespace {

constexpr int64_t kGrain = int64_t(1) << 16;  // elements per thread, at least

inline int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, cols));
}

// y (n, out) = x16 (n, in) . w16^T + b, both operands bf16.
void matmul_bf16_nt(int64_t n, int in, int out, const bf16_t* x16, const bf16_t* w16,
                    const float* b, float* y) {
  onednn_matmul(GemmType::bf16, false, true, n, out, in, 1.0f, x16, in, w16, in, 0.0f, y, out, b);
}

}  // namespace

CpuModelOps::CpuModelOps(Precision precision) : precision_(precision) {
  if (precision_ == Precision::bf16) {
    const std::string why = bf16_matmul_unavailable();
    CB_CHECK(why.empty(), why);
  }
}

bf16_t* CpuModelOps::bf16_scratch(std::vector<bf16_t>& buffer, int64_t count) {
  if ((int64_t)buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

void CpuModelOps::to_bf16(int64_t rows, int64_t cols, const float* src, int64_t src_ld,
                          bf16_t* dst, int64_t dst_ld) {
  if (rows == 1) {  // one long row (the parameters' copy): split it
    parallel_for(cols, kGrain, [&](int64_t c0, int64_t c1) {
      float_to_bf16_span(src + c0, dst + c0, c1 - c0);
    });
    return;
  }
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) float_to_bf16_span(src + r * src_ld, dst + r * dst_ld, cols);
  });
}

void CpuModelOps::modulate_bf16(int B, int T, int c, const float* xn, const float* shift,
                                const float* scale, int ld, bf16_t* y) {
  // The fp32 values of modulate (the same expression), then rounded, a row at a time.
  parallel_for(int64_t(B) * T, row_grain(c), [&](int64_t r0, int64_t r1) {
    std::vector<float> row(c);
    for (int64_t i = r0; i < r1; i++) {
      const int64_t b = i / T;
      const float* sh = shift + b * ld;  // (c)
      const float* sc = scale + b * ld;  // (c)
      const float* xi = xn + i * c;      // (c)
      for (int j = 0; j < c; j++) row[j] = xi[j] * (1.0f + sc[j]) + sh[j];
      float_to_bf16_span(row.data(), y + i * c, c);
    }
  });
}

void CpuModelOps::gelu_bf16(int64_t count, const float* x, bf16_t* y) {
  constexpr int64_t kChunk = 1024;  // fp32 values in flight per thread
  parallel_for(count, kGrain, [&](int64_t i0, int64_t i1) {
    float buf[kChunk];
    for (int64_t i = i0; i < i1; i += kChunk) {
      const int64_t len = std::min(kChunk, i1 - i);
      gelu_span(x + i, buf, len);
      float_to_bf16_span(buf, y + i, len);
    }
  });
}

void CpuModelOps::linear_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                               const float* b, float* y) {
  if (n <= 0 || out <= 0) return;
  bf16_t* x16 = bf16_scratch(x16_, n * in);  // (n, in)
  to_bf16(n, in, x, in, x16, in);
  linear_mixed(n, in, out, x16, w, b, y);
}

void CpuModelOps::linear_gelu_mixed(int64_t n, int in, int out, const float* x,
                                    const bf16_t* w, const float* b, float* y) {
  if (n <= 0 || out <= 0) return;
  bf16_t* x16 = bf16_scratch(x16_, n * in);  // (n, in)
  to_bf16(n, in, x, in, x16, in);
  if (const OnednnPackedWeights* p = packed(GemmType::bf16, w, out, in)) {
    return onednn_linear_packed(*p, n, x16, y, b, GemmEpilogue::gelu_tanh);
  }
  onednn_matmul(GemmType::bf16, false, true, n, out, in, 1.0f, x16, in, w, in, 0.0f, y, out, b,
                GemmEpilogue::gelu_tanh);
}

void CpuModelOps::linear_gelu_mixed(int64_t n, int in, int out, const float* x,
                                    const bf16_t* w, const float* b, bf16_t* y) {
  if (n <= 0 || out <= 0) return;
  bf16_t* x16 = bf16_scratch(x16_, n * in);  // (n, in)
  to_bf16(n, in, x, in, x16, in);
  linear_gelu_mixed(n, in, out, x16, w, b, y);
}

void CpuModelOps::linear_gelu_mixed(int64_t n, int in, int out, const bf16_t* x,
                                    const bf16_t* w, const float* b, bf16_t* y) {
  if (n <= 0 || out <= 0) return;
  if (const OnednnPackedWeights* p = packed(GemmType::bf16, w, out, in)) {
    // oneDNN rounds its fp32 result to the bf16 destination (nearest even).
    return onednn_linear_packed(*p, n, x, y, b, GemmEpilogue::gelu_tanh, GemmType::bf16);
  }
  std::vector<float>& f = gelu_scratch_;  // (n, out): the fp32 result, then rounded
  if (int64_t(f.size()) < n * out) f.resize(n * out);
  onednn_matmul(GemmType::bf16, false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, f.data(), out,
                b, GemmEpilogue::gelu_tanh);
  to_bf16(n, out, f.data(), out, y, out);
}

void CpuModelOps::linear_mixed(int64_t n, int in, int out, const bf16_t* x, const bf16_t* w,
                               const float* b, float* y) {
  if (n <= 0 || out <= 0) return;
  if (const OnednnPackedWeights* p = packed(GemmType::bf16, w, out, in)) {
    return onednn_linear_packed(*p, n, x, y, b);
  }
  matmul_bf16_nt(n, in, out, x, w, b, y);
}

void CpuModelOps::linear_backward_mixed(int64_t n, int in, int out, const float* x,
                                        const bf16_t* w, const float* dy, float* dx, float* dw,
                                        float* db) {
  if (n <= 0 || in < 0 || out < 0) return;
  bf16_t* x16 = nullptr;
  if (dw != nullptr) {
    x16 = bf16_scratch(x16_, n * in);  // (n, in)
    to_bf16(n, in, x, in, x16, in);
  }
  linear_backward_mixed(n, in, out, x16, w, dy, dx, dw, db);
}

void CpuModelOps::linear_backward_mixed(int64_t n, int in, int out, const bf16_t* x,
                                        const bf16_t* w, const float* dy, float* dx, float* dw,
                                        float* db) {
  if (n <= 0 || in < 0 || out < 0) return;
  if (dx != nullptr || dw != nullptr) {
    bf16_t* dy16 = bf16_scratch(dy16_, n * out);  // (n, out)
    to_bf16(n, out, dy, out, dy16, out);
    // dx (n, in) = dy (n, out) . w (out, in)
    if (dx != nullptr) {
      onednn_matmul(GemmType::bf16, false, false, n, in, out, 1.0f, dy16, out, w, in, 0.0f, dx,
                    in, nullptr);
    }
    // dw (out, in) += dy^T . x (n, in)
    if (dw != nullptr) {
      onednn_matmul(GemmType::bf16, true, false, out, in, n, 1.0f, dy16, out, x, in, 1.0f, dw,
                    in, nullptr);
    }
  }
  // db (out) += column sums of the fp32 dy, as linear_backward sums them.
  if (db != nullptr) linear_backward(n, in, out, nullptr, nullptr, dy, nullptr, nullptr, db);
}

}  // namespace cb
