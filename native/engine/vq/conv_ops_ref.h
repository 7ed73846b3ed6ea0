// The reference backend of the VQ tokenizer's conv ops ("cpu-ref"): the plainest loops that are
// obviously right, no BLAS, no threads, no scratch beyond one softmax row. Header-only and
// templated on the scalar so the native tests run it in double as the oracle, and the cpu and
// cuda backends are checked against it. Sums accumulate in `Real`, in index order.
// Semantics of every op: vq/conv_ops.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "conv_ops.h"

namespace cb {

template <typename Real>
class RefConvOps final : public ConvOps<Real> {
 public:
  const char* name() const override { return "cpu-ref"; }
  DeviceMemory& memory() override { return host_memory(); }

  void conv2d(const Conv2dShape& s,
              const Real* x,     // (B, Cin, H, W)
              const Real* w,     // (Cout, Cin, k, k)
              const Real* bias,  // (Cout) or null
              Real* y) override {  // (B, Cout, Ho, Wo)
    const int Ho = s.out_h(), Wo = s.out_w();
    for (int b = 0; b < s.B; b++) {
      for (int co = 0; co < s.Cout; co++) {
        for (int oy = 0; oy < Ho; oy++) {
          for (int ox = 0; ox < Wo; ox++) {
            Real sum = bias != nullptr ? bias[co] : Real(0);
            for (int ci = 0; ci < s.Cin; ci++) {
              for (int ky = 0; ky < s.k; ky++) {
                // Input row of this tap; rows outside [0, H) are the zero padding.
                const int iy = oy * s.stride + ky - s.pad_begin;
                if (iy < 0 || iy >= s.H) continue;
                for (int kx = 0; kx < s.k; kx++) {
                  const int ix = ox * s.stride + kx - s.pad_begin;
                  if (ix < 0 || ix >= s.W) continue;
                  sum += x[(((int64_t)b * s.Cin + ci) * s.H + iy) * s.W + ix] *
                         w[(((int64_t)co * s.Cin + ci) * s.k + ky) * s.k + kx];
                }
              }
            }
            y[(((int64_t)b * s.Cout + co) * Ho + oy) * Wo + ox] = sum;
          }
        }
      }
    }
  }

  void group_norm(int B, int C, int64_t HW, int groups, float eps,
                  const Real* x,      // (B, C, HW)
                  const Real* gamma,  // (C)
                  const Real* beta,   // (C)
                  Real* y) override {  // (B, C, HW)
    normalise(B, C, HW, groups, eps, x, gamma, beta, y, false);
  }

  void group_norm_swish(int B, int C, int64_t HW, int groups, float eps, const Real* x,
                        const Real* gamma, const Real* beta, Real* y) override {
    normalise(B, C, HW, groups, eps, x, gamma, beta, y, true);
  }

  void swish(int64_t count, const Real* x, Real* y) override {
    for (int64_t i = 0; i < count; i++) y[i] = x[i] * sigmoid(x[i]);
  }

  void add_inplace(int64_t count, Real* y, const Real* x) override {
    for (int64_t i = 0; i < count; i++) y[i] += x[i];
  }

  void upsample_nearest2x(int B, int C, int H, int W,
                          const Real* x,  // (B, C, H, W)
                          Real* y) override {  // (B, C, 2H, 2W)
    for (int64_t plane = 0; plane < (int64_t)B * C; plane++) {
      for (int Y = 0; Y < 2 * H; Y++) {
        for (int X = 0; X < 2 * W; X++) {
          y[(plane * 2 * H + Y) * 2 * W + X] = x[(plane * H + Y / 2) * W + X / 2];
        }
      }
    }
  }

  void spatial_attention(int B, int C, int64_t HW,
                         const Real* q,  // (B, C, HW)
                         const Real* k,  // (B, C, HW)
                         const Real* v,  // (B, C, HW)
                         Real* out) override {  // (B, C, HW)
    const Real scale = Real(1) / std::sqrt(Real(C));
    std::vector<Real> weights(HW);  // (HW) one softmax row
    for (int b = 0; b < B; b++) {
      const int64_t base = (int64_t)b * C * HW;
      for (int64_t i = 0; i < HW; i++) {
        // Scores of query i against every key, then softmax (max subtracted), then the
        // weighted sum of v.
        Real max_score = -INFINITY;
        for (int64_t j = 0; j < HW; j++) {
          Real dot = 0;
          for (int c = 0; c < C; c++) {
            dot += q[base + (int64_t)c * HW + i] * k[base + (int64_t)c * HW + j];
          }
          weights[j] = dot * scale;
          if (weights[j] > max_score) max_score = weights[j];
        }
        Real denom = 0;
        for (int64_t j = 0; j < HW; j++) {
          weights[j] = std::exp(weights[j] - max_score);
          denom += weights[j];
        }
        for (int64_t j = 0; j < HW; j++) weights[j] /= denom;
        for (int c = 0; c < C; c++) {
          Real sum = 0;
          for (int64_t j = 0; j < HW; j++) sum += v[base + (int64_t)c * HW + j] * weights[j];
          out[base + (int64_t)c * HW + i] = sum;
        }
      }
    }
  }

  void l2_normalize_rows(int64_t n, int d,
                         const Real* x,  // (n, d)
                         Real* y) override {  // (n, d)
    for (int64_t r = 0; r < n; r++) {
      Real sq = 0;
      for (int j = 0; j < d; j++) sq += x[r * d + j] * x[r * d + j];
      const Real norm = std::max(std::sqrt(sq), Real(1e-12));
      for (int j = 0; j < d; j++) y[r * d + j] = x[r * d + j] / norm;
    }
  }

  void quantize_l2(int B, int D, int64_t HW,
                   const Real* z,         // (B, D, HW)
                   const Real* codebook,  // (K, D), rows l2-normalised
                   int K,
                   int32_t* index,         // (B, HW)
                   Real* zq,               // (B, D, HW) or null
                   Real* dist2) override {  // (B, HW) or null
    for (int b = 0; b < B; b++) {
      for (int64_t i = 0; i < HW; i++) {
        const Real* zcol = z + (int64_t)b * D * HW + i;  // stride HW
        Real sq = 0;
        for (int d = 0; d < D; d++) sq += zcol[d * HW] * zcol[d * HW];
        const Real norm = std::max(std::sqrt(sq), Real(1e-12));
        Real z2 = 0;  // |z|^2 of the normalised column (1, or 0 for a zero column)
        for (int d = 0; d < D; d++) z2 += (zcol[d * HW] / norm) * (zcol[d * HW] / norm);
        int best = 0;
        Real best_dist = INFINITY;
        for (int e = 0; e < K; e++) {
          const Real* row = codebook + (int64_t)e * D;
          Real e2 = 0, dot = 0;
          for (int d = 0; d < D; d++) {
            e2 += row[d] * row[d];
            dot += (zcol[d * HW] / norm) * row[d];
          }
          const Real dist = z2 + e2 - Real(2) * dot;
          if (dist < best_dist) {  // strict: the first index wins a tie
            best_dist = dist;
            best = e;
          }
        }
        index[(int64_t)b * HW + i] = best;
        if (dist2 != nullptr) dist2[(int64_t)b * HW + i] = best_dist;
        if (zq != nullptr) {
          for (int d = 0; d < D; d++) {
            zq[((int64_t)b * D + d) * HW + i] = codebook[(int64_t)best * D + d];
          }
        }
      }
    }
  }

  void embed_codes(int B, int D, int64_t HW,
                   const int32_t* index,  // (B, HW)
                   const Real* codebook,  // (K, D)
                   int K,
                   Real* zq) override {  // (B, D, HW)
    for (int b = 0; b < B; b++) {
      for (int64_t i = 0; i < HW; i++) {
        int32_t e = index[(int64_t)b * HW + i];
        e = e < 0 ? 0 : (e >= K ? K - 1 : e);  // callers check; this only keeps reads in bounds
        for (int d = 0; d < D; d++) {
          zq[((int64_t)b * D + d) * HW + i] = codebook[(int64_t)e * D + d];
        }
      }
    }
  }

 private:
  static Real sigmoid(Real x) { return Real(1) / (Real(1) + std::exp(-x)); }

  // Two passes per (b, group): the mean, then the biased variance about it; then the affine
  // step and, when asked, swish.
  static void normalise(int B, int C, int64_t HW, int groups, float eps, const Real* x,
                        const Real* gamma, const Real* beta, Real* y, bool with_swish) {
    const int per_group = C / groups;
    const int64_t n = (int64_t)per_group * HW;  // values in one (b, group)
    for (int b = 0; b < B; b++) {
      for (int g = 0; g < groups; g++) {
        const int64_t first = ((int64_t)b * C + (int64_t)g * per_group) * HW;
        Real mean = 0;
        for (int64_t t = 0; t < n; t++) mean += x[first + t];
        mean /= Real(n);
        Real var = 0;
        for (int64_t t = 0; t < n; t++) var += (x[first + t] - mean) * (x[first + t] - mean);
        var /= Real(n);
        const Real rstd = Real(1) / std::sqrt(var + Real(eps));
        for (int cc = 0; cc < per_group; cc++) {
          const int c = g * per_group + cc;
          for (int64_t p = 0; p < HW; p++) {
            const int64_t at = first + (int64_t)cc * HW + p;
            Real v = (x[at] - mean) * rstd * gamma[c] + beta[c];
            if (with_swish) v = v * sigmoid(v);
            y[at] = v;
          }
        }
      }
    }
  }
};

}  // namespace cb
