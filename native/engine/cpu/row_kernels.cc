#include "row_kernels.h"

#include <cmath>

// __restrict: the rows never overlap, and saying so lets the loops vectorise.

namespace cb {
namespace {

#if defined(__GNUC__)
#define CB_INLINE inline __attribute__((always_inline))
#else
#define CB_INLINE inline
#endif

constexpr int kLanes = 16;  // partial sums per row

// sum_j f(j) over j < c in kLanes interleaved partial sums, then those in order.
template <typename F>
CB_INLINE float lane_sum(int c, F f) {
  float part[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= c; j += kLanes) {
    for (int l = 0; l < kLanes; l++) part[l] += f(j + l);
  }
  for (int l = 0; j < c; j++, l++) part[l] += f(j);
  float sum = 0.0f;
  for (int l = 0; l < kLanes; l++) sum += part[l];
  return sum;
}

}  // namespace

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CB_ROW_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CB_ROW_CLONES
#endif

CB_ROW_CLONES void layernorm_row(const float* __restrict x, int c, float eps, float* __restrict y,
                                 float* __restrict mean, float* __restrict rstd) {
  const float m = lane_sum(c, [&](int j) { return x[j]; }) / c;
  const float var = lane_sum(c, [&](int j) { return (x[j] - m) * (x[j] - m); }) / c;
  const float s = 1.0f / std::sqrt(var + eps);
  for (int j = 0; j < c; j++) y[j] = (x[j] - m) * s;
  *mean = m;
  *rstd = s;
}

CB_ROW_CLONES void layernorm_backward_row(const float* __restrict x, const float* __restrict dy,
                                          int c, float mean, float rstd, float* __restrict dx) {
  const float mean_dy = lane_sum(c, [&](int j) { return dy[j]; }) / c;
  const float mean_dy_xhat =
      lane_sum(c, [&](int j) { return dy[j] * (x[j] - mean) * rstd; }) / c;
  for (int j = 0; j < c; j++) {
    dx[j] = rstd * (dy[j] - mean_dy - (x[j] - mean) * rstd * mean_dy_xhat);
  }
}

CB_ROW_CLONES void modulate_row(const float* __restrict x, const float* __restrict shift,
                                const float* __restrict scale, int c, float* __restrict y) {
  for (int j = 0; j < c; j++) y[j] = x[j] * (1.0f + scale[j]) + shift[j];
}

CB_ROW_CLONES void modulate_backward_rows(int T, int w, int64_t ld, const float* __restrict x,
                                          const float* __restrict dy,
                                          const float* __restrict scale, float* __restrict dx,
                                          float* __restrict dshift, float* __restrict dscale) {
  for (int t = 0; t < T; t++) {
    const float* dyr = dy + t * ld;  // (w)
    const float* xr = x + t * ld;    // (w)
    float* dxr = dx + t * ld;        // (w)
    for (int j = 0; j < w; j++) {
      dxr[j] = dyr[j] * (1.0f + scale[j]);
      dshift[j] += dyr[j];
      dscale[j] += dyr[j] * xr[j];
    }
  }
}

CB_ROW_CLONES void gated_residual_row(const float* __restrict gate, const float* __restrict h,
                                      int c, float* __restrict x) {
  for (int j = 0; j < c; j++) x[j] += gate[j] * h[j];
}

CB_ROW_CLONES void gated_residual_backward_rows(int T, int w, int64_t ld,
                                                const float* __restrict dx,
                                                const float* __restrict gate,
                                                const float* __restrict h, float* __restrict dh,
                                                float* __restrict dgate) {
  for (int t = 0; t < T; t++) {
    const float* dxr = dx + t * ld;  // (w)
    const float* hr = h + t * ld;    // (w)
    float* dhr = dh + t * ld;        // (w)
    for (int j = 0; j < w; j++) {
      dhr[j] = dxr[j] * gate[j];
      dgate[j] += dxr[j] * hr[j];
    }
  }
}

CB_ROW_CLONES void sum_rows(int64_t n, int w, int64_t ld, const float* __restrict x,
                            float* __restrict acc) {
  for (int64_t i = 0; i < n; i++) {
    const float* row = x + i * ld;  // (w)
    for (int j = 0; j < w; j++) acc[j] += row[j];
  }
}

}  // namespace cb
