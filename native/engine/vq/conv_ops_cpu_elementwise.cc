// The row loops of the cpu conv ops: GroupNorm (+ swish) fused, swish, add, nearest upsampling,
// l2 row normalisation; and the object's scratch. Every loop is threaded with parallel_for over
// independent outputs, and the inner loops are written so that the compiler vectorises them
// (compiled for x86-64-v3 and the baseline; the loader picks one, as in cpu/vector_math.cc).
#include <algorithm>
#include <cmath>

#include "../cpu/parallel.h"
#include "../cpu/vector_math.h"
#include "conv_ops_cpu.h"
#include "conv_row_sums.h"

namespace cb {

// Sums of x and of (x - center)^2 over n values, in double, eight running sums (conv_row_sums.h).
CB_CONV_CLONES double conv_sum_span(const float* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j];
  }
  for (; i < n; i++) acc[0] += (double)x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

CB_CONV_CLONES double conv_squared_deviation_span(const float* x, int64_t n, double center) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) {
      const double d = (double)x[i + j] - center;
      acc[j] += d * d;
    }
  }
  for (; i < n; i++) {
    const double d = (double)x[i] - center;
    acc[0] += d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

namespace {

constexpr int64_t kElementGrain = kConvComputeGrainElements;  // see conv_ops_cpu.h

// y = (x - mean) a + c over n values, then swish when asked. Subtracting first (rather than
// x a + (c - mean a)) keeps a large common offset out of the rounding: a constant group gives
// exactly c.
CB_CONV_CLONES void affine_span(const float* x, int64_t n, float mean, float a, float c,
                                float* y) {
  for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mean) * a + c;
}

CB_CONV_CLONES void affine_swish_span(const float* x, int64_t n, float mean, float a, float c,
                                      float* y) {
  for (int64_t i = 0; i < n; i++) {
    const float v = (x[i] - mean) * a + c;
    y[i] = v / (1.0f + exp_approx(-v));  // v sigmoid(v)
  }
}

CB_CONV_CLONES void swish_span(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + exp_approx(-x[i]));
}

CB_CONV_CLONES void add_span(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

}  // namespace

CpuConvOps::CpuConvOps(size_t scratch_bytes) : scratch_bytes_(scratch_bytes) {}

float* CpuConvOps::scratch(size_t floats) {
  if (scratch_.size() < floats) scratch_.resize(floats);
  return scratch_.data();
}

size_t CpuConvOps::tile_floats(size_t minimum) const {
  return std::max(minimum, scratch_bytes_ / sizeof(float));
}

// Per (b, group), one thread: the mean in double, then the biased variance about it in double
// (two passes, so a large common offset costs no precision), then y = (x - mean) a_c + beta_c
// per channel with a_c = rstd gamma_c.
void CpuConvOps::normalise(int B, int C, int64_t HW, int groups, float eps,
                           const float* x,      // (B, C, HW)
                           const float* gamma,  // (C)
                           const float* beta,   // (C)
                           float* y,            // (B, C, HW)
                           bool with_swish) {
  const int per_group = C / groups;
  const int64_t n = (int64_t)per_group * HW;  // values in one (b, group)
  parallel_for((int64_t)B * groups, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, n)),
               [&](int64_t p0, int64_t p1) {
    for (int64_t pair = p0; pair < p1; pair++) {
      const int64_t first = pair * n;  // groups are contiguous: (b, g) starts at (b G + g) n
      const int g = (int)(pair % groups);
      const double mean = conv_sum_span(x + first, n) / (double)n;
      const double var = conv_squared_deviation_span(x + first, n, mean) / (double)n;
      const double rstd = 1.0 / std::sqrt(var + (double)eps);
      const float mean_f = (float)mean;
      for (int cc = 0; cc < per_group; cc++) {
        const int c = g * per_group + cc;
        const float a = (float)(rstd * gamma[c]);
        const int64_t at = first + (int64_t)cc * HW;
        if (with_swish) {
          affine_swish_span(x + at, HW, mean_f, a, beta[c], y + at);
        } else {
          affine_span(x + at, HW, mean_f, a, beta[c], y + at);
        }
      }
    }
  });
}

void CpuConvOps::group_norm(int B, int C, int64_t HW, int groups, float eps, const float* x,
                            const float* gamma, const float* beta, float* y) {
  normalise(B, C, HW, groups, eps, x, gamma, beta, y, false);
}

void CpuConvOps::group_norm_swish(int B, int C, int64_t HW, int groups, float eps,
                                  const float* x, const float* gamma, const float* beta,
                                  float* y) {
  normalise(B, C, HW, groups, eps, x, gamma, beta, y, true);
}

void CpuConvOps::swish(int64_t count, const float* x, float* y) {
  parallel_for(count, kElementGrain,
               [&](int64_t i0, int64_t i1) { swish_span(x + i0, i1 - i0, y + i0); });
}

void CpuConvOps::add_inplace(int64_t count, float* y, const float* x) {
  parallel_for(count, kConvCopyGrainFloats,
               [&](int64_t i0, int64_t i1) { add_span(y + i0, x + i0, i1 - i0); });
}

void CpuConvOps::upsample_nearest2x(int B, int C, int H, int W,
                                    const float* x,  // (B, C, H, W)
                                    float* y) {      // (B, C, 2H, 2W)
  // One task per input row: it writes the two output rows it becomes.
  const int64_t rows = (int64_t)B * C * H;
  parallel_for(rows, std::max<int64_t>(1, kConvCopyGrainFloats / std::max(1, 4 * W)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* src = x + r * W;          // (W)
      float* dst = y + r * 4 * (int64_t)W;   // (2, 2W): input row r of plane p is at p H + Y
      for (int X = 0; X < W; X++) dst[2 * X] = dst[2 * X + 1] = src[X];
      std::copy(dst, dst + 2 * W, dst + 2 * W);
    }
  });
}

void CpuConvOps::l2_normalize_rows(int64_t n, int d,
                                   const float* x,  // (n, d)
                                   float* y) {      // (n, d)
  parallel_for(n, std::max<int64_t>(1, kElementGrain / std::max(1, d)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      double sq = 0;
      for (int j = 0; j < d; j++) sq += (double)x[r * d + j] * x[r * d + j];
      const float norm = std::max((float)std::sqrt(sq), 1e-12f);
      for (int j = 0; j < d; j++) y[r * d + j] = x[r * d + j] / norm;
    }
  });
}

}  // namespace cb
