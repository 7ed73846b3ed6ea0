// Vectorisable elementwise math for the cpu backend: an exp accurate to about 2 ulp that the
// compiler can turn into SIMD code (std::exp is a libm call per element), and the loops that
// use it. The loops in vector_math.cc are compiled three times, for x86-64-v4 (AVX-512),
// x86-64-v3 (AVX2, FMA) and the baseline, and the loader picks one for the CPU at hand (GCC
// target_clones).
#pragma once

#include <cstdint>
#include <cstring>

namespace cb {

// exp(x) for x in [-87, 88] (clamped outside: exp(-inf) gives about 1.6e-38, not 0), as
// 2^n exp(r) with n = round(x / ln 2), |r| <= ln2 / 2 and a degree-7 polynomial for exp(r)
// (Cephes' expf coefficients). Relative error below 2e-7.
inline float exp_approx(float x) {
  x = x > -87.0f ? x : -87.0f;  // written as max/min so that it compiles to maxps/minps
  x = x < 88.0f ? x : 88.0f;
  // Round to nearest by adding and subtracting 1.5 * 2^23 (exact in round-to-nearest mode).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;  // ln 2 split in two for an exact first product
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;  // 2^n, n in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// s[j] = exp(s[j] - shift) for j < n; returns the sum of the new values (in a fixed order).
float exp_shifted(float* s, int64_t n, float shift);
// y = GELU(x), tanh approximation, over n values.
void gelu_span(const float* x, float* y, int64_t n);
// dx = dy * GELU'(x) over n values.
void gelu_backward_span(const float* x, const float* dy, float* dx, int64_t n);

// One AdamW step over n values (model_ops.h's adamw; bc1, bc2: the bias corrections
// 1 - beta^t). param, m and v are updated in place; none of the arrays overlap.
void adamw_span(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2);

}  // namespace cb
