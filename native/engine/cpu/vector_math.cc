#include "vector_math.h"

#include <cmath>

#include "cpu_features.h"

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

namespace {

// The sum runs in 16 interleaved partial sums (lane j % 16), added up in a fixed order at the
// end: one running sum was a chain of dependent adds, as slow as the exps (perf). The order
// depends only on n, so results repeat.
CB_VECTOR_CLONES float exp_shifted_portable(float* s, int64_t n, float shift) {
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

CB_VECTOR_CLONES void gelu_span_portable(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float xi = x[i];
    const float u = kGeluC * (xi + kGeluA * xi * xi * xi);
    y[i] = xi / (1.0f + exp_approx(-2.0f * u));  // 0.5 x (1 + tanh u)
  }
}

}  // namespace
}  // namespace cb

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,fma")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 bug 105593 (immintrin.h)
#include <immintrin.h>

namespace cb {
namespace {

// exp_approx of 16 lanes: the same reduction and polynomial, 2^n applied by vscalefps.
inline __m512 exp_approx16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// exp_shifted in AVX-512 intrinsics: the compiled loop of exp_shifted_portable spent about a
// third of its time in its scalar tail and in the 16 partial sums' scalar adds (perf). The
// same lane-wise partial sums (the tail masked into lanes 0 ..), then a fixed tree.
float exp_shifted_avx512(float* s, int64_t n, float shift) {
  const __m512 sh = _mm512_set1_ps(shift);
  __m512 part = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 e = exp_approx16(_mm512_sub_ps(_mm512_loadu_ps(s + j), sh));
    _mm512_storeu_ps(s + j, e);
    part = _mm512_add_ps(part, e);
  }
  if (j < n) {
    const __mmask16 tail = __mmask16((1u << (n - j)) - 1);
    const __m512 e = exp_approx16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + j), sh));
    _mm512_mask_storeu_ps(s + j, tail, e);
    part = _mm512_mask_add_ps(part, tail, part, e);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, part);
  for (int w = 8; w >= 1; w /= 2) {
    for (int l = 0; l < w; l++) lanes[l] += lanes[l + w];
  }
  return lanes[0];
}

// gelu_span in intrinsics: compiled from gelu_span_portable, each value's division took ~8
// cycles (vdivps; measured 2.6 ns a value, in L1). 1 / (1 + e) from vrcp14ps and one Newton
// step instead (relative error ~1e-7, below the exp's).
void gelu_span_avx512(const float* x, float* y, int64_t n) {
  const __m512 c = _mm512_set1_ps(kGeluC), a = _mm512_set1_ps(kGeluA);
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(lanes, x + i);
    const __m512 u = _mm512_mul_ps(c, _mm512_fmadd_ps(_mm512_mul_ps(a, v), _mm512_mul_ps(v, v), v));
    const __m512 z = _mm512_add_ps(one, exp_approx16(_mm512_mul_ps(_mm512_set1_ps(-2.0f), u)));
    __m512 r = _mm512_rcp14_ps(z);
    r = _mm512_mul_ps(r, _mm512_fnmadd_ps(z, r, two));  // r (2 - z r)
    _mm512_mask_storeu_ps(y + i, lanes, _mm512_mul_ps(v, r));  // 0.5 x (1 + tanh u)
  }
}

}  // namespace

float exp_shifted(float* s, int64_t n, float shift) {
  static const bool avx512 = cpu_features().avx512;
  if (avx512) return exp_shifted_avx512(s, n, shift);
  return exp_shifted_portable(s, n, shift);
}

void gelu_span(const float* x, float* y, int64_t n) {
  static const bool avx512 = cpu_features().avx512;
  if (avx512) return gelu_span_avx512(x, y, n);
  gelu_span_portable(x, y, n);
}

}  // namespace cb

#pragma GCC diagnostic pop
#pragma GCC pop_options
#else
namespace cb {
float exp_shifted(float* s, int64_t n, float shift) { return exp_shifted_portable(s, n, shift); }
void gelu_span(const float* x, float* y, int64_t n) { gelu_span_portable(x, y, n); }
}  // namespace cb
#endif

namespace cb {


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
