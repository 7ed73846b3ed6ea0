// The reference backend of the VQ tokenizer's conv ops ("cpu-ref"): the plainest loops that are
// obviously right, no BLAS, no threads, no scratch beyond a row or two. Header-only and
// templated on the scalar so the native tests run it in double as the oracle, and the cpu and
// cuda backends are checked against it. Sums accumulate in `Real`, in index order.
// Semantics of every op: vq/conv_ops.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../error.h"
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

  // ---- backward (training) ------------------------------------------------------------------

  void conv2d_backward(const Conv2dShape& s,
                       const Real* x,   // (B, Cin, H, W)
                       const Real* w,   // (Cout, Cin, k, k)
                       const Real* dy,  // (B, Cout, Ho, Wo)
                       Real* dx,        // (B, Cin, H, W) overwritten, or null
                       Real* dw,        // (Cout, Cin, k, k) +=
                       Real* dbias) override {  // (Cout) +=, or null
    const int Ho = s.out_h(), Wo = s.out_w();
    auto dy_at = [&](int b, int co, int oy, int ox) {
      return dy[(((int64_t)b * s.Cout + co) * Ho + oy) * Wo + ox];
    };
    if (dx != nullptr) {
      // Gathered per input element: every output (oy, ox) whose tap (ky, kx) lands on (iy, ix),
      // i.e. oy * stride = iy + pad_begin - ky exactly, and inside the output.
      for (int b = 0; b < s.B; b++) {
        for (int ci = 0; ci < s.Cin; ci++) {
          for (int iy = 0; iy < s.H; iy++) {
            for (int ix = 0; ix < s.W; ix++) {
              Real sum = 0;
              for (int co = 0; co < s.Cout; co++) {
                for (int ky = 0; ky < s.k; ky++) {
                  const int ty = iy + s.pad_begin - ky;
                  if (ty < 0 || ty % s.stride != 0 || ty / s.stride >= Ho) continue;
                  for (int kx = 0; kx < s.k; kx++) {
                    const int tx = ix + s.pad_begin - kx;
                    if (tx < 0 || tx % s.stride != 0 || tx / s.stride >= Wo) continue;
                    sum += dy_at(b, co, ty / s.stride, tx / s.stride) *
                           w[(((int64_t)co * s.Cin + ci) * s.k + ky) * s.k + kx];
                  }
                }
              }
              dx[(((int64_t)b * s.Cin + ci) * s.H + iy) * s.W + ix] = sum;
            }
          }
        }
      }
    }
    for (int co = 0; co < s.Cout; co++) {
      for (int ci = 0; ci < s.Cin; ci++) {
        for (int ky = 0; ky < s.k; ky++) {
          for (int kx = 0; kx < s.k; kx++) {
            // The tap's weight met x at (oy * stride + ky - pad, ox * stride + kx - pad).
            Real sum = 0;
            for (int b = 0; b < s.B; b++) {
              for (int oy = 0; oy < Ho; oy++) {
                const int iy = oy * s.stride + ky - s.pad_begin;
                if (iy < 0 || iy >= s.H) continue;
                for (int ox = 0; ox < Wo; ox++) {
                  const int ix = ox * s.stride + kx - s.pad_begin;
                  if (ix < 0 || ix >= s.W) continue;
                  sum += dy_at(b, co, oy, ox) *
                         x[(((int64_t)b * s.Cin + ci) * s.H + iy) * s.W + ix];
                }
              }
            }
            dw[(((int64_t)co * s.Cin + ci) * s.k + ky) * s.k + kx] += sum;
          }
        }
      }
      if (dbias != nullptr) {
        Real sum = 0;
        for (int b = 0; b < s.B; b++) {
          for (int oy = 0; oy < Ho; oy++) {
            for (int ox = 0; ox < Wo; ox++) sum += dy_at(b, co, oy, ox);
          }
        }
        dbias[co] += sum;
      }
    }
  }

  void group_norm_backward(int B, int C, int64_t HW, int groups, float eps,
                           const Real* x,      // (B, C, HW)
                           const Real* gamma,  // (C)
                           const Real* beta,   // (C)
                           const Real* dy,     // (B, C, HW)
                           Real* dx,           // (B, C, HW) overwritten; may alias dy
                           Real* dgamma,       // (C) +=
                           Real* dbeta) override {  // (C) +=
    normalise_backward(B, C, HW, groups, eps, x, gamma, beta, dy, dx, dgamma, dbeta, false);
  }

  void group_norm_swish_backward(int B, int C, int64_t HW, int groups, float eps, const Real* x,
                                 const Real* gamma, const Real* beta, const Real* dy, Real* dx,
                                 Real* dgamma, Real* dbeta) override {
    normalise_backward(B, C, HW, groups, eps, x, gamma, beta, dy, dx, dgamma, dbeta, true);
  }

  void swish_backward(int64_t count, const Real* x, const Real* dy, Real* dx) override {
    for (int64_t i = 0; i < count; i++) dx[i] = dy[i] * swish_slope(x[i]);
  }

  void upsample_nearest2x_backward(int B, int C, int H, int W,
                                   const Real* dy,  // (B, C, 2H, 2W)
                                   Real* dx) override {  // (B, C, H, W)
    for (int64_t plane = 0; plane < (int64_t)B * C; plane++) {
      const Real* d = dy + plane * 4 * H * W;  // this plane of dy, rows of 2W
      for (int Y = 0; Y < H; Y++) {
        for (int X = 0; X < W; X++) {
          Real sum = d[(2 * Y) * 2 * W + 2 * X];
          sum += d[(2 * Y) * 2 * W + 2 * X + 1];
          sum += d[(2 * Y + 1) * 2 * W + 2 * X];
          sum += d[(2 * Y + 1) * 2 * W + 2 * X + 1];
          dx[(plane * H + Y) * W + X] = sum;
        }
      }
    }
  }

  void spatial_attention_backward(int B, int C, int64_t HW,
                                  const Real* q,     // (B, C, HW)
                                  const Real* k,     // (B, C, HW)
                                  const Real* v,     // (B, C, HW)
                                  const Real* dout,  // (B, C, HW)
                                  Real* dq,          // (B, C, HW) overwritten
                                  Real* dk,          // (B, C, HW) overwritten
                                  Real* dv) override {  // (B, C, HW) overwritten
    const Real scale = Real(1) / std::sqrt(Real(C));
    std::vector<Real> p(HW), ds(HW);  // (HW) one query's softmax row and its score gradient
    const int64_t count = (int64_t)B * C * HW;
    // dk and dv collect a term from every query i, in the order of i.
    for (int64_t t = 0; t < count; t++) dk[t] = dv[t] = Real(0);
    for (int b = 0; b < B; b++) {
      const int64_t base = (int64_t)b * C * HW;
      auto at = [&](int c, int64_t pos) { return base + (int64_t)c * HW + pos; };
      for (int64_t i = 0; i < HW; i++) {
        // The forward's softmax row of query i.
        Real max_score = -INFINITY;
        for (int64_t j = 0; j < HW; j++) {
          Real dot = 0;
          for (int c = 0; c < C; c++) dot += q[at(c, i)] * k[at(c, j)];
          p[j] = dot * scale;
          if (p[j] > max_score) max_score = p[j];
        }
        Real denom = 0;
        for (int64_t j = 0; j < HW; j++) {
          p[j] = std::exp(p[j] - max_score);
          denom += p[j];
        }
        for (int64_t j = 0; j < HW; j++) p[j] /= denom;
        // dp[j] = dout[:, i] . v[:, j]; the softmax's backward: ds[j] = p[j] (dp[j] - p . dp).
        Real p_dot_dp = 0;
        for (int64_t j = 0; j < HW; j++) {
          Real dp = 0;
          for (int c = 0; c < C; c++) dp += dout[at(c, i)] * v[at(c, j)];
          ds[j] = dp;
          p_dot_dp += p[j] * dp;
        }
        for (int64_t j = 0; j < HW; j++) ds[j] = p[j] * (ds[j] - p_dot_dp);
        for (int c = 0; c < C; c++) {
          Real sum = 0;
          for (int64_t j = 0; j < HW; j++) sum += ds[j] * k[at(c, j)];
          dq[at(c, i)] = sum * scale;
          for (int64_t j = 0; j < HW; j++) {
            dk[at(c, j)] += ds[j] * scale * q[at(c, i)];
            dv[at(c, j)] += p[j] * dout[at(c, i)];
          }
        }
      }
    }
  }

  void l2_normalize_rows_backward(int64_t n, int d,
                                  const Real* x,   // (n, d)
                                  const Real* dy,  // (n, d)
                                  Real* dx) override {  // (n, d)
    for (int64_t r = 0; r < n; r++) {
      Real sq = 0;
      for (int j = 0; j < d; j++) sq += x[r * d + j] * x[r * d + j];
      normalise_jacobian_t(d, x + r * d, 1, std::sqrt(sq), dy + r * d, 1, dx + r * d, 1);
    }
  }

  void quantize_l2_backward(int B, int D, int64_t HW,
                            const Real* z,         // (B, D, HW)
                            const Real* codebook,  // (K, D), rows l2-normalised
                            int K,
                            const int32_t* index,  // (B, HW)
                            const Real* dzq,       // (B, D, HW)
                            float codebook_scale, float commit_scale,
                            Real* dz,                  // (B, D, HW) overwritten
                            Real* dcodebook) override {  // (K, D) +=
    std::vector<Real> g(D);  // (D) the gradient at zn of one column
    for (int b = 0; b < B; b++) {
      for (int64_t i = 0; i < HW; i++) {
        const int64_t col = (int64_t)b * D * HW + i;  // z, dzq, dz columns: stride HW
        const int32_t e = index[(int64_t)b * HW + i];
        CB_CHECK(e >= 0 && e < K, "quantize_l2_backward: code index " + std::to_string(e) +
                                      " outside [0, " + std::to_string(K) + ")");
        const Real* row = codebook + (int64_t)e * D;  // zq of this column
        Real sq = 0;
        for (int d = 0; d < D; d++) sq += z[col + d * HW] * z[col + d * HW];
        const Real len = std::sqrt(sq);
        const Real norm = std::max(len, Real(1e-12));
        for (int d = 0; d < D; d++) {
          const Real zn = z[col + d * HW] / norm;
          // Straight through: dzq reaches zn whole; the commitment term pulls zn to sg(zq), the
          // codebook term pulls the row to sg(zn).
          g[d] = dzq[col + d * HW] + Real(commit_scale) * Real(2) * (zn - row[d]);
          dcodebook[(int64_t)e * D + d] += Real(codebook_scale) * Real(2) * (row[d] - zn);
        }
        normalise_jacobian_t(D, z + col, HW, len, g.data(), 1, dz + col, HW);
      }
    }
  }

  void pixel_loss(int64_t count,
                  const Real* rec,     // (count)
                  const Real* target,  // (count)
                  float l2_scale, float l1_scale,
                  Real* drec,             // (count) overwritten
                  Real* sums) override {  // (2) overwritten
    Real sq = 0, abs_sum = 0;
    for (int64_t i = 0; i < count; i++) {
      const Real diff = rec[i] - target[i];
      const Real sign = diff > 0 ? Real(1) : (diff < 0 ? Real(-1) : Real(0));
      sq += diff * diff;
      abs_sum += std::fabs(diff);
      drec[i] = Real(l2_scale) * Real(2) * diff + Real(l1_scale) * sign;
    }
    sums[0] = sq;
    sums[1] = abs_sum;
  }

 private:
  static Real sigmoid(Real x) { return Real(1) / (Real(1) + std::exp(-x)); }

  // d/dx of x * sigmoid(x).
  static Real swish_slope(Real x) {
    const Real s = sigmoid(x);
    return s + x * s * (Real(1) - s);
  }

  // The transposed (= the) Jacobian of x -> x / max(|x|, 1e-12) applied to g, for one vector of
  // d values at stride x_stride (x), g_stride (g) and dx_stride (dx); len = |x|. dx must not
  // alias g unless their strides match (each element of g is read before dx's is written).
  static void normalise_jacobian_t(int d, const Real* x, int64_t x_stride, Real len, const Real* g,
                                   int64_t g_stride, Real* dx, int64_t dx_stride) {
    if (!(len > Real(1e-12))) {  // the clamp is active: a constant divisor
      for (int j = 0; j < d; j++) dx[j * dx_stride] = g[j * g_stride] / Real(1e-12);
      return;
    }
    // (g - y (y . g)) / |x| with y = x / |x|.
    Real y_dot_g = 0;
    for (int j = 0; j < d; j++) y_dot_g += x[j * x_stride] / len * g[j * g_stride];
    for (int j = 0; j < d; j++) {
      dx[j * dx_stride] = (g[j * g_stride] - x[j * x_stride] / len * y_dot_g) / len;
    }
  }

  // GroupNorm's backward per (b, group), with xh = (x - mean) rstd and dxh = dv gamma (dv the
  // gradient at the affine output, through swish when asked):
  //   dx = rstd (dxh - mean(dxh) - xh mean(dxh xh)),  dgamma += sum dv xh,  dbeta += sum dv.
  // The two means are taken before any dx is written, and each dx element is written after the
  // only read of its dy element, so dx may alias dy.
  static void normalise_backward(int B, int C, int64_t HW, int groups, float eps, const Real* x,
                                 const Real* gamma, const Real* beta, const Real* dy, Real* dx,
                                 Real* dgamma, Real* dbeta, bool with_swish) {
    const int per_group = C / groups;
    const int64_t n = (int64_t)per_group * HW;  // values in one (b, group)
    for (int b = 0; b < B; b++) {
      for (int g = 0; g < groups; g++) {
        const int64_t first = ((int64_t)b * C + (int64_t)g * per_group) * HW;
        Real mean, rstd;  // the forward's statistics
        group_moments(x + first, n, eps, &mean, &rstd);
        // The gradient at the affine output (before swish) of one element.
        auto dv_at = [&](int c, int64_t at, Real xh) {
          if (!with_swish) return dy[at];
          return dy[at] * swish_slope(xh * gamma[c] + beta[c]);
        };
        Real sum_dxh = 0, sum_dxh_xh = 0;
        for (int cc = 0; cc < per_group; cc++) {
          const int c = g * per_group + cc;
          Real sum_dv = 0, sum_dv_xh = 0;
          for (int64_t p = 0; p < HW; p++) {
            const int64_t at = first + (int64_t)cc * HW + p;
            const Real xh = (x[at] - mean) * rstd;
            const Real dv = dv_at(c, at, xh);
            sum_dv += dv;
            sum_dv_xh += dv * xh;
            sum_dxh += dv * gamma[c];
            sum_dxh_xh += dv * gamma[c] * xh;
          }
          dgamma[c] += sum_dv_xh;
          dbeta[c] += sum_dv;
        }
        const Real mean_dxh = sum_dxh / Real(n), mean_dxh_xh = sum_dxh_xh / Real(n);
        for (int cc = 0; cc < per_group; cc++) {
          const int c = g * per_group + cc;
          for (int64_t p = 0; p < HW; p++) {
            const int64_t at = first + (int64_t)cc * HW + p;
            const Real xh = (x[at] - mean) * rstd;
            const Real dxh = dv_at(c, at, xh) * gamma[c];
            dx[at] = rstd * (dxh - mean_dxh - xh * mean_dxh_xh);
          }
        }
      }
    }
  }

  // One (b, group)'s n values: the mean, then the biased variance about it (two passes), and
  // rstd = 1 / sqrt(var + eps). Shared by the forward and the backward, so both see the same bits.
  static void group_moments(const Real* x, int64_t n, float eps, Real* mean_out, Real* rstd_out) {
    Real mean = 0;
    for (int64_t t = 0; t < n; t++) mean += x[t];
    mean /= Real(n);
    Real var = 0;
    for (int64_t t = 0; t < n; t++) var += (x[t] - mean) * (x[t] - mean);
    var /= Real(n);
    *mean_out = mean;
    *rstd_out = Real(1) / std::sqrt(var + Real(eps));
  }

  // Per (b, group): the moments, then the affine step and, when asked, swish.
  static void normalise(int B, int C, int64_t HW, int groups, float eps, const Real* x,
                        const Real* gamma, const Real* beta, Real* y, bool with_swish) {
    const int per_group = C / groups;
    const int64_t n = (int64_t)per_group * HW;  // values in one (b, group)
    for (int b = 0; b < B; b++) {
      for (int g = 0; g < groups; g++) {
        const int64_t first = ((int64_t)b * C + (int64_t)g * per_group) * HW;
        Real mean, rstd;
        group_moments(x + first, n, eps, &mean, &rstd);
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
