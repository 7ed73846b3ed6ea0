// CpuModelOps: LayerNorm and the AdaLN ops (modulate, gated residual), threaded over rows or
// column blocks; the loops themselves are row_kernels.h's.
//
// The AdaLN backwards reduce over the T slots of each sequence into (B, ld) gradient rows; the
// work is split into (sequence, column block) tasks, each summing its columns in slot order, so
// the sums are the same for any number of threads.
#include <algorithm>

#include "model_ops_cpu.h"
#include "parallel.h"
#include "row_kernels.h"

namespace cb {
namespace {

constexpr int64_t kGrain = int64_t(1) << 16;  // elements per thread, at least
constexpr int kColBlock = 64;                 // columns per reduction task
constexpr float kLayerNormEps = 1e-6f;

inline int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, cols));
}

// Calls fn(b, c0, c1) for every sequence b < B and column block [c0, c1) of c columns, threaded
// over the B * blocks tasks when the T * c * B elements are many.
template <typename Fn>
void for_sequence_column_blocks(int B, int T, int c, Fn fn) {
  const int blocks = (c + kColBlock - 1) / kColBlock;
  const int64_t per_task = std::max<int64_t>(1, int64_t(T) * kColBlock);
  parallel_for(int64_t(B) * blocks, std::max<int64_t>(1, kGrain / per_task),
               [&](int64_t t0, int64_t t1) {
                 for (int64_t task = t0; task < t1; task++) {
                   const int b = (int)(task / blocks), c0 = (int)(task % blocks) * kColBlock;
                   fn(b, c0, std::min(c, c0 + kColBlock));
                 }
               });
}

}  // namespace

void CpuModelOps::layernorm(int64_t n, int c, const float* x, float* y, float* mean,
                            float* rstd) {
  parallel_for(n, row_grain(c), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      layernorm_row(x + i * c, c, kLayerNormEps, y + i * c, mean + i, rstd + i);
    }
  });
}

void CpuModelOps::layernorm_backward(int64_t n, int c, const float* x, const float* mean,
                                     const float* rstd, const float* dy, float* dx) {
  parallel_for(n, row_grain(c), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      layernorm_backward_row(x + i * c, dy + i * c, c, mean[i], rstd[i], dx + i * c);
    }
  });
}

void CpuModelOps::modulate(int B, int T, int c, const float* xn, const float* shift,
                           const float* scale, int ld, float* y) {
  parallel_for(int64_t(B) * T, row_grain(c), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      const int64_t b = i / T;
      modulate_row(xn + i * c, shift + b * ld, scale + b * ld, c, y + i * c);
    }
  });
}

void CpuModelOps::modulate_backward(int B, int T, int c, const float* xn, const float* scale,
                                    int ld, const float* dy, float* dxn, float* dshift,
                                    float* dscale) {
  for_sequence_column_blocks(B, T, c, [&](int b, int c0, int c1) {
    float acc_shift[kColBlock] = {}, acc_scale[kColBlock] = {};
    const int64_t first = (int64_t)b * T * c + c0;  // row 0 of sequence b, column c0
    modulate_backward_rows(T, c1 - c0, c, xn + first, dy + first, scale + (int64_t)b * ld + c0,
                           dxn + first, acc_shift, acc_scale);
    for (int j = 0; j < c1 - c0; j++) {
      dshift[(int64_t)b * ld + c0 + j] += acc_shift[j];
      dscale[(int64_t)b * ld + c0 + j] += acc_scale[j];
    }
  });
}

void CpuModelOps::gated_residual(int B, int T, int c, float* x, const float* gate, int ld,
                                 const float* h) {
  parallel_for(int64_t(B) * T, row_grain(c), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      gated_residual_row(gate + (i / T) * ld, h + i * c, c, x + i * c);
    }
  });
}

void CpuModelOps::gated_residual_backward(int B, int T, int c, const float* dx, const float* gate,
                                          int ld, const float* h, float* dh, float* dgate) {
  for_sequence_column_blocks(B, T, c, [&](int b, int c0, int c1) {
    float acc[kColBlock] = {};
    const int64_t first = (int64_t)b * T * c + c0;  // row 0 of sequence b, column c0
    gated_residual_backward_rows(T, c1 - c0, c, dx + first, gate + (int64_t)b * ld + c0,
                                 h + first, dh + first, acc);
    for (int j = 0; j < c1 - c0; j++) dgate[(int64_t)b * ld + c0 + j] += acc[j];
  });
}

}  // namespace cb
