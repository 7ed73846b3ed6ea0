#include "vector_math.h"

#include <cmath>

namespace cb {
namespace {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

}  // namespace

// One copy per instruction set; the exp loop vectorises.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CB_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CB_VECTOR_CLONES
#endif

// The sum runs in 16 interleaved partial sums (lane j % 16), added up in a fixed order at the
// end: one running sum was a chain of dependent adds, as slow as the exps (perf). The order
// depends only on n, so results repeat.
CB_VECTOR_CLONES float exp_shifted(float* s, int64_t n, float shift) {
  constexpr int kLanes = 16;
  float part[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; l++) {
      const float e = exp_approx(s[j + l] - shift);
      s[j + l] = e;
      part[l] += e;
    }
  }
  for (int l = 0; j < n; j++, l++) {
    const float e = exp_approx(s[j] - shift);
    s[j] = e;
    part[l] += e;
  }
  float sum = 0.0f;
  for (int l = 0; l < kLanes; l++) sum += part[l];
  return sum;
}

CB_VECTOR_CLONES void gelu_span(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float xi = x[i];
    const float u = kGeluC * (xi + kGeluA * xi * xi * xi);
    y[i] = xi / (1.0f + exp_approx(-2.0f * u));  // 0.5 x (1 + tanh u)
  }
}

CB_VECTOR_CLONES void adamw_span(float* __restrict param, const float* __restrict grad,
                                  float* __restrict m, float* __restrict v, int64_t n, float lr,
                                  float beta1, float beta2, float eps, float weight_decay,
                                  float bc1, float bc2) {
  for (int64_t i = 0; i < n; i++) {
    const float g = grad[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float m_hat = mi / bc1, v_hat = vi / bc2;
    param[i] -= lr * (m_hat / (std::sqrt(v_hat) + eps) + weight_decay * param[i]);
  }
}

CB_VECTOR_CLONES void gelu_backward_span(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float xi = x[i];
    const float u = kGeluC * (xi + kGeluA * xi * xi * xi);
    const float du = kGeluC * (1.0f + 3.0f * kGeluA * xi * xi);
    const float e = exp_approx(-2.0f * std::fabs(u)), inv = 1.0f / (1.0f + e);
    const float half_1p_tanh = u >= 0.0f ? inv : e * inv;  // 0.5 (1 + tanh u)
    const float half_1m_tanh2 = 2.0f * e * inv * inv;      // 0.5 (1 - tanh^2 u)
    dx[i] = dy[i] * (half_1p_tanh + xi * half_1m_tanh2 * du);
  }
}

}  // namespace cb
