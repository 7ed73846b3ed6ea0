// CpuModelOps: LayerNorm and the AdaLN ops (modulate, gated residual).
//
// The AdaLN backwards reduce over the T slots of each sequence into (B, ld) gradient rows; the
// work is split into (sequence, column block) tasks, each summing its columns in slot order, so
// the sums are the same for any number of threads.
#include <algorithm>
#include <cmath>

#include "model_ops_cpu.h"
#include "parallel.h"

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
      const float* xi = x + i * c;  // (c)
      float* yi = y + i * c;        // (c)
      float sum = 0.0f;
      for (int j = 0; j < c; j++) sum += xi[j];
      const float m = sum / c;
      // Two passes: the variance from centred values does not cancel.
      float var = 0.0f;
      for (int j = 0; j < c; j++) var += (xi[j] - m) * (xi[j] - m);
      const float s = 1.0f / std::sqrt(var / c + kLayerNormEps);
      for (int j = 0; j < c; j++) yi[j] = (xi[j] - m) * s;
      mean[i] = m;
      rstd[i] = s;
    }
  });
}

void CpuModelOps::layernorm_backward(int64_t n, int c, const float* x, const float* mean,
                                     const float* rstd, const float* dy, float* dx) {
  // dx = rstd (dy - mean(dy) - xhat mean(dy xhat)), xhat = (x - mean) rstd.
  parallel_for(n, row_grain(c), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      const float* xi = x + i * c;    // (c)
      const float* dyi = dy + i * c;  // (c)
      float* dxi = dx + i * c;        // (c)
      const float m = mean[i], s = rstd[i];
      float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
      for (int j = 0; j < c; j++) {
        sum_dy += dyi[j];
        sum_dy_xhat += dyi[j] * (xi[j] - m) * s;
      }
      const float mean_dy = sum_dy / c, mean_dy_xhat = sum_dy_xhat / c;
      for (int j = 0; j < c; j++) {
        dxi[j] = s * (dyi[j] - mean_dy - (xi[j] - m) * s * mean_dy_xhat);
      }
    }
  });
}

void CpuModelOps::modulate(int B, int T, int c, const float* xn, const float* shift,
                           const float* scale, int ld, float* y) {
  parallel_for(int64_t(B) * T, row_grain(c), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      const int64_t b = i / T;
      const float* sh = shift + b * ld;  // (c)
      const float* sc = scale + b * ld;  // (c)
      const float* xi = xn + i * c;      // (c)
      float* yi = y + i * c;             // (c)
      for (int j = 0; j < c; j++) yi[j] = xi[j] * (1.0f + sc[j]) + sh[j];
    }
  });
}

void CpuModelOps::modulate_backward(int B, int T, int c, const float* xn, const float* scale,
                                    int ld, const float* dy, float* dxn, float* dshift,
                                    float* dscale) {
  for_sequence_column_blocks(B, T, c, [&](int b, int c0, int c1) {
    float acc_shift[kColBlock] = {}, acc_scale[kColBlock] = {};
    const float* sc = scale + (int64_t)b * ld + c0;  // (c1 - c0)
    for (int t = 0; t < T; t++) {
      const int64_t row = ((int64_t)b * T + t) * c + c0;
      const float* dyr = dy + row;  // (c1 - c0)
      const float* xr = xn + row;   // (c1 - c0)
      float* dxr = dxn + row;       // (c1 - c0)
      for (int j = 0; j < c1 - c0; j++) {
        dxr[j] = dyr[j] * (1.0f + sc[j]);
        acc_shift[j] += dyr[j];
        acc_scale[j] += dyr[j] * xr[j];
      }
    }
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
      const float* g = gate + (i / T) * ld;  // (c)
      const float* hi = h + i * c;           // (c)
      float* xi = x + i * c;                 // (c)
      for (int j = 0; j < c; j++) xi[j] += g[j] * hi[j];
    }
  });
}

void CpuModelOps::gated_residual_backward(int B, int T, int c, const float* dx, const float* gate,
                                          int ld, const float* h, float* dh, float* dgate) {
  for_sequence_column_blocks(B, T, c, [&](int b, int c0, int c1) {
    float acc[kColBlock] = {};
    const float* g = gate + (int64_t)b * ld + c0;  // (c1 - c0)
    for (int t = 0; t < T; t++) {
      const int64_t row = ((int64_t)b * T + t) * c + c0;
      const float* dxr = dx + row;  // (c1 - c0)
      const float* hr = h + row;    // (c1 - c0)
      float* dhr = dh + row;        // (c1 - c0)
      for (int j = 0; j < c1 - c0; j++) {
        dhr[j] = dxr[j] * g[j];
        acc[j] += dxr[j] * hr[j];
      }
    }
    for (int j = 0; j < c1 - c0; j++) dgate[(int64_t)b * ld + c0 + j] += acc[j];
  });
}

}  // namespace cb
