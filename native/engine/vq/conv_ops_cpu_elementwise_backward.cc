// The row loops of the cpu conv ops' backward: GroupNorm (+ swish), swish, nearest upsampling,
// l2 row normalisation and the pixel loss. Threaded with parallel_for over independent outputs;
// the inner loops are written to vectorise (compiled for x86-64-v3 and the baseline, as in
// conv_ops_cpu_elementwise.cc). Every sum is in double in an order fixed by the shapes alone, and
// the parameter gradients (dgamma, dbeta) are per-(image, channel) double partials added in image
// order, so these ops give the same bits at any thread count.
#include <algorithm>
#include <cmath>

#include "../cpu/parallel.h"
#include "../cpu/vector_math.h"
#include "conv_ops_cpu.h"
#include "conv_row_sums.h"

namespace cb {
namespace {

constexpr int64_t kElementGrain = kConvComputeGrainElements;  // see conv_ops_cpu.h
// pixel_loss sums blocks of this many values, each in one thread, then the blocks in order.
constexpr int64_t kLossBlock = 4096;

// x - mean in float with the mean as two floats (hi + lo = mean to ~2^-48): x - hi is exact
// when x is near the mean, so a large common offset costs no precision (a single rounded mean
// would be off by up to |mean| u).
inline float centred(float x, float mean_hi, float mean_lo) { return (x - mean_hi) - mean_lo; }

// swish'(v) = s (1 + v (1 - s)), s = sigmoid(v), with 1 - s = e s for e = exp(-v): no
// cancellation in either tail.
inline float swish_grad(float v) {
  const float e = exp_approx(-v);
  const float s = 1.0f / (1.0f + e);
  return s * (1.0f + v * (e * s));
}

// Over one channel's n values: sums of dv and of dv (x - mean), in double (eight running sums
// each); dv = dy (group_norm) or dy swish'(v), v = (x - mean) a + c the forward's output.
CB_CONV_CLONES void norm_sums_span(const float* x, const float* dy, int64_t n, float mean_hi,
                                   float mean_lo, double* sum_dv, double* sum_dvx) {
  double s0[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s1[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) {
      const float g = dy[i + j];
      s0[j] += (double)g;
      s1[j] += (double)g * (double)centred(x[i + j], mean_hi, mean_lo);
    }
  }
  for (; i < n; i++) {
    s0[0] += (double)dy[i];
    s1[0] += (double)dy[i] * (double)centred(x[i], mean_hi, mean_lo);
  }
  *sum_dv = ((s0[0] + s0[1]) + (s0[2] + s0[3])) + ((s0[4] + s0[5]) + (s0[6] + s0[7]));
  *sum_dvx = ((s1[0] + s1[1]) + (s1[2] + s1[3])) + ((s1[4] + s1[5]) + (s1[6] + s1[7]));
}

// The same with swish, keeping dv in dv_out (dx: the second pass reads it back, so dv is the
// same bits in both passes; dv_out may be dy).
CB_CONV_CLONES void norm_swish_sums_span(const float* x, const float* dy, int64_t n,
                                         float mean_hi, float mean_lo, float a, float c,
                                         float* dv_out, double* sum_dv, double* sum_dvx) {
  double s0[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s1[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) {
      const float xm = centred(x[i + j], mean_hi, mean_lo);
      const float g = dy[i + j] * swish_grad(xm * a + c);
      dv_out[i + j] = g;
      s0[j] += (double)g;
      s1[j] += (double)g * (double)xm;
    }
  }
  for (; i < n; i++) {
    const float xm = centred(x[i], mean_hi, mean_lo);
    const float g = dy[i] * swish_grad(xm * a + c);
    dv_out[i] = g;
    s0[0] += (double)g;
    s1[0] += (double)g * (double)xm;
  }
  *sum_dv = ((s0[0] + s0[1]) + (s0[2] + s0[3])) + ((s0[4] + s0[5]) + (s0[6] + s0[7]));
  *sum_dvx = ((s1[0] + s1[1]) + (s1[2] + s1[3])) + ((s1[4] + s1[5]) + (s1[6] + s1[7]));
}

// dx = (dv - dv_mean) A + ((x - mean) B1 + B0) over one channel (see normalise_backward); dx
// may be dv.
CB_CONV_CLONES void norm_dx_span(const float* x, const float* dv, int64_t n, float mean_hi,
                                 float mean_lo, float dv_mean, float A, float B1, float B0,
                                 float* dx) {
  for (int64_t i = 0; i < n; i++) {
    dx[i] = (dv[i] - dv_mean) * A + (centred(x[i], mean_hi, mean_lo) * B1 + B0);
  }
}

CB_CONV_CLONES void swish_backward_span(const float* x, const float* dy, int64_t n, float* dx) {
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * swish_grad(x[i]);
}

// One block of pixel_loss: drec, and the block's sums of d^2 and |d| in double (d = rec -
// target, exact in double), eight running sums each.
CB_CONV_CLONES void pixel_loss_span(const float* rec, const float* target, int64_t n,
                                    float l2_twice, float l1, float* drec, double* sum_sq,
                                    double* sum_abs) {
  double s2[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s1[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) {
      const double dd = (double)rec[i + j] - (double)target[i + j];
      s2[j] += dd * dd;
      s1[j] += std::fabs(dd);
    }
  }
  for (; i < n; i++) {
    const double dd = (double)rec[i] - (double)target[i];
    s2[0] += dd * dd;
    s1[0] += std::fabs(dd);
  }
  // drec after the sums: drec may be rec (each value is read before it is written).
  for (int64_t t = 0; t < n; t++) {
    const float d = rec[t] - target[t];  // 0 exactly when rec == target (gradual underflow)
    const float sign = (d > 0.0f ? 1.0f : 0.0f) - (d < 0.0f ? 1.0f : 0.0f);
    drec[t] = l2_twice * d + l1 * sign;
  }
  *sum_sq = ((s2[0] + s2[1]) + (s2[2] + s2[3])) + ((s2[4] + s2[5]) + (s2[6] + s2[7]));
  *sum_abs = ((s1[0] + s1[1]) + (s1[2] + s1[3])) + ((s1[4] + s1[5]) + (s1[6] + s1[7]));
}

}  // namespace

double* CpuConvOps::partials(size_t count) {
  if (partials_.size() < count) partials_.resize(count);
  return partials_.data();
}

// Per (b, group), one thread: the forward's mean and variance (double, two passes), then with
// xhat = (x - mean) rstd, dv the gradient at the normalised affine output (dy, or dy swish'(v)
// for the fused pair) and g = dv gamma_c:
//   dx = rstd (g - mean(g) - xhat mean(g xhat))          means over the group's n values
//      = (dv - mean_c(dv)) A_c + (x - mean) B1 + B0_c,   A_c = rstd gamma_c,
//        B1 = -rstd^2 mean(g xhat),  B0_c = rstd (gamma_c mean_c(dv) - mean(g))
// with mean_c over the channel's HW values. Taking the channel's mean out of dv first leaves the
// per-element float work only the deviations: when the group is one channel of one value (dx is
// 0 exactly) every term is 0 exactly, where dv A_c - rstd mean(g) would leave rstd = 1/sqrt(eps)
// times a rounding. The means come from per-channel double sums of dv and dv (x - mean), which
// are also the channel's dbeta and dgamma / rstd; those go to partials (B, C, 2) and are added
// into dbeta, dgamma per channel in image order after the threads are done. The group's sums are
// complete before its dx is written, so dx may alias dy; with swish the first pass keeps dv in dx
// and the second reads it back.
void CpuConvOps::normalise_backward(int B, int C, int64_t HW, int groups, float eps,
                                    const float* x,      // (B, C, HW)
                                    const float* gamma,  // (C)
                                    const float* beta,   // (C)
                                    const float* dy,     // (B, C, HW)
                                    float* dx,           // (B, C, HW), may be dy
                                    float* dgamma,       // (C), +=
                                    float* dbeta,        // (C), +=
                                    bool with_swish) {
  const int per_group = C / groups;
  const int64_t n = (int64_t)per_group * HW;  // values in one (b, group)
  double* part = partials((size_t)B * C * 2);  // (B, C, 2): sum dv xhat, sum dv
  parallel_for((int64_t)B * groups, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, n)),
               [&](int64_t p0, int64_t p1) {
    for (int64_t pair = p0; pair < p1; pair++) {
      const int64_t first = pair * n;  // (b, g) starts at (b G + g) n
      const int64_t b = pair / groups;
      const int g = (int)(pair % groups);
      // The forward's statistics, recomputed the same way (conv_row_sums.h).
      const double mean = conv_sum_span(x + first, n) / (double)n;
      const double var = conv_squared_deviation_span(x + first, n, mean) / (double)n;
      const double rstd = 1.0 / std::sqrt(var + (double)eps);
      const float mean_hi = (float)mean, mean_lo = (float)(mean - (double)mean_hi);
      double sum_g = 0, sum_gx = 0;  // over the group: sum g, sum g (x - mean)
      for (int cc = 0; cc < per_group; cc++) {
        const int c = g * per_group + cc;
        const int64_t at = first + (int64_t)cc * HW;
        double s0, s1;
        if (with_swish) {
          norm_swish_sums_span(x + at, dy + at, HW, mean_hi, mean_lo, (float)(rstd * gamma[c]),
                               beta[c], dx + at, &s0, &s1);
        } else {
          norm_sums_span(x + at, dy + at, HW, mean_hi, mean_lo, &s0, &s1);
        }
        part[(b * C + c) * 2 + 0] = s1 * rstd;
        part[(b * C + c) * 2 + 1] = s0;
        sum_g += (double)gamma[c] * s0;
        sum_gx += (double)gamma[c] * s1;
      }
      const double mean_g = sum_g / (double)n, mean_gx = sum_gx * rstd / (double)n;
      const float B1 = (float)(-rstd * rstd * mean_gx);
      const float* dv = with_swish ? dx : dy;  // (B, C, HW)
      for (int cc = 0; cc < per_group; cc++) {
        const int c = g * per_group + cc;
        const int64_t at = first + (int64_t)cc * HW;
        const float dv_mean = (float)(part[(b * C + c) * 2 + 1] / (double)HW);
        const float B0 = (float)(rstd * ((double)gamma[c] * dv_mean - mean_g));
        norm_dx_span(x + at, dv + at, HW, mean_hi, mean_lo, dv_mean, (float)(rstd * gamma[c]),
                     B1, B0, dx + at);
      }
    }
  });
  for (int c = 0; c < C; c++) {
    double sum_gamma = 0, sum_beta = 0;
    for (int b = 0; b < B; b++) {
      sum_gamma += part[((int64_t)b * C + c) * 2 + 0];
      sum_beta += part[((int64_t)b * C + c) * 2 + 1];
    }
    dgamma[c] += (float)sum_gamma;
    dbeta[c] += (float)sum_beta;
  }
}

void CpuConvOps::group_norm_backward(int B, int C, int64_t HW, int groups, float eps,
                                     const float* x, const float* gamma, const float* beta,
                                     const float* dy, float* dx, float* dgamma, float* dbeta) {
  normalise_backward(B, C, HW, groups, eps, x, gamma, beta, dy, dx, dgamma, dbeta, false);
}

void CpuConvOps::group_norm_swish_backward(int B, int C, int64_t HW, int groups, float eps,
                                           const float* x, const float* gamma,
                                           const float* beta, const float* dy, float* dx,
                                           float* dgamma, float* dbeta) {
  normalise_backward(B, C, HW, groups, eps, x, gamma, beta, dy, dx, dgamma, dbeta, true);
}

void CpuConvOps::swish_backward(int64_t count, const float* x, const float* dy, float* dx) {
  parallel_for(count, kElementGrain, [&](int64_t i0, int64_t i1) {
    swish_backward_span(x + i0, dy + i0, i1 - i0, dx + i0);
  });
}

void CpuConvOps::upsample_nearest2x_backward(int B, int C, int H, int W,
                                             const float* dy,  // (B, C, 2H, 2W)
                                             float* dx) {      // (B, C, H, W)
  // One task per dx row: the two dy rows it was copied to (input row r of plane p is p H + Y,
  // and its output rows start at (p 2H + 2Y) 2W = 4 W r).
  const int64_t rows = (int64_t)B * C * H;
  parallel_for(rows, std::max<int64_t>(1, kConvCopyGrainFloats / std::max(1, 4 * W)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* top = dy + r * 4 * (int64_t)W;  // (2W)
      const float* bottom = top + 2 * W;           // (2W)
      float* dst = dx + r * W;                     // (W)
      for (int X = 0; X < W; X++) {
        dst[X] = (top[2 * X] + top[2 * X + 1]) + (bottom[2 * X] + bottom[2 * X + 1]);
      }
    }
  });
}

// Per row, in double: y = x / |x|, so dx = (dy - y (y . dy)) / |x| = (dy - x (x . dy) / |x|^2)
// / |x|, rounded once to float; rows of |x| <= 1e-12 are divided by the clamp, 1e-12.
void CpuConvOps::l2_normalize_rows_backward(int64_t n, int d,
                                            const float* x,   // (n, d)
                                            const float* dy,  // (n, d)
                                            float* dx) {      // (n, d)
  parallel_for(n, std::max<int64_t>(1, kElementGrain / std::max(1, 4 * d)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * d;    // (d)
      const float* gr = dy + r * d;   // (d)
      float* out = dx + r * d;        // (d)
      double sq = 0, dot = 0;
      for (int j = 0; j < d; j++) {
        sq += (double)xr[j] * xr[j];
        dot += (double)xr[j] * gr[j];
      }
      const double norm = std::sqrt(sq);
      if (norm > 1e-12) {
        const double along = dot / sq;  // y (y . dy) = x along
        for (int j = 0; j < d; j++) out[j] = (float)(((double)gr[j] - xr[j] * along) / norm);
      } else {
        for (int j = 0; j < d; j++) out[j] = (float)((double)gr[j] / 1e-12);
      }
    }
  });
}

void CpuConvOps::pixel_loss(int64_t count,
                            const float* rec,     // (count)
                            const float* target,  // (count)
                            float l2_scale, float l1_scale,
                            float* drec,   // (count)
                            float* sums) {  // (2)
  const int64_t blocks = (count + kLossBlock - 1) / kLossBlock;
  double* part = partials((size_t)std::max<int64_t>(1, blocks) * 2);  // (blocks, 2)
  parallel_for(blocks, std::max<int64_t>(1, kElementGrain / kLossBlock),
               [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; k++) {
      const int64_t i0 = k * kLossBlock, len = std::min(kLossBlock, count - i0);
      pixel_loss_span(rec + i0, target + i0, len, 2.0f * l2_scale, l1_scale, drec + i0,
                      part + 2 * k, part + 2 * k + 1);
    }
  });
  double sum_sq = 0, sum_abs = 0;  // the blocks in order: fixed by count alone
  for (int64_t k = 0; k < blocks; k++) {
    sum_sq += part[2 * k];
    sum_abs += part[2 * k + 1];
  }
  sums[0] = (float)sum_sq;
  sums[1] = (float)sum_abs;
}

}  // namespace cb
