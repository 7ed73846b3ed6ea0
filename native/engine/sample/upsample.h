// Bilinear upsampling of a grid of latent vectors with half-pixel centres (PyTorch
// align_corners=False), the rule of the training inputs (src/train/inputs.ts upsampleBilinear):
// source coordinate (d + 0.5) * s_in / s_out - 0.5, clamped to [0, s_in - 1]; computed in
// double, stored as Real.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace cb {

// One grid: src (s_in * s_in, D) -> dst (s_out * s_out, D), raster order.
template <typename Real>
void upsample_bilinear_grid(int s_in, int s_out, int D, const Real* src, Real* dst) {
  const double ratio = double(s_in) / double(s_out);
  auto tap = [&](int d, int* i0, int* i1, double* w) {
    const double at = std::min(std::max((d + 0.5) * ratio - 0.5, 0.0), double(s_in - 1));
    *i0 = int(std::floor(at));
    *i1 = std::min(*i0 + 1, s_in - 1);
    *w = at - *i0;
  };
  for (int y = 0; y < s_out; y++) {
    int y0, y1;
    double wy;
    tap(y, &y0, &y1, &wy);
    for (int x = 0; x < s_out; x++) {
      int x0, x1;
      double wx;
      tap(x, &x0, &x1, &wx);
      const Real* a = src + (int64_t(y0) * s_in + x0) * D;
      const Real* b = src + (int64_t(y0) * s_in + x1) * D;
      const Real* c = src + (int64_t(y1) * s_in + x0) * D;
      const Real* e = src + (int64_t(y1) * s_in + x1) * D;
      const double w00 = (1 - wy) * (1 - wx), w01 = (1 - wy) * wx, w10 = wy * (1 - wx),
                   w11 = wy * wx;
      Real* o = dst + (int64_t(y) * s_out + x) * D;
      for (int d = 0; d < D; d++) {
        o[d] = Real(w00 * double(a[d]) + w01 * double(b[d]) + w10 * double(c[d]) +
                    w11 * double(e[d]));
      }
    }
  }
}

}  // namespace cb
