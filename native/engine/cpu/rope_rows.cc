#include "rope_rows.h"

#include "cpu_features.h"

namespace cb {
namespace {

void rope_row_scalar(const float* x, int H, int hd, const float* cp, const float* sp,
                     const float* cq, const float* sq, const float* alpha, float* y) {
  const int half = hd / 2;
  for (int h = 0; h < H; h++) {
    const float* xh = x + int64_t(h) * hd;  // (hd)
    float* yh = y + int64_t(h) * hd;        // (hd)
    if (alpha == nullptr) {
      for (int j = 0; j < half; j++) {
        const float a = xh[2 * j], b = xh[2 * j + 1];
        yh[2 * j] = a * cp[j] - b * sp[j];
        yh[2 * j + 1] = a * sp[j] + b * cp[j];
      }
      continue;
    }
    const float al = alpha[h], be = 1.0f - al;
    for (int j = 0; j < half; j++) {
      const float a = xh[2 * j], b = xh[2 * j + 1];
      yh[2 * j] = al * (a * cp[j] - b * sp[j]) + be * (a * cq[j] - b * sq[j]);
      yh[2 * j + 1] = al * (a * sp[j] + b * cp[j]) + be * (a * sq[j] + b * cq[j]);
    }
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

// 8 cos (or sin) values of 8 pairs as the 16 lanes (v0, v0, v1, v1, ...), the even lanes
// negated when `negate_even` (the sin's sign in a pair's first output).
inline __m512 per_pair(const float* v, bool negate_even) {
  const __m512i twice = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m512 d = _mm512_permutexvar_ps(twice, _mm512_castps256_ps512(_mm256_loadu_ps(v)));
  if (!negate_even) return d;
  return _mm512_mask_sub_ps(d, __mmask16(0x5555), _mm512_setzero_ps(), d);
}

// x (a, b pairs) times (cos, cos) plus x with each pair swapped, (b, a), times (-sin, sin).
void rope_row_avx512(const float* x, int H, int hd, const float* cp, const float* sp,
                     const float* cq, const float* sq, const float* alpha, float* y) {
  for (int c = 0; c < hd; c += 16) {
    const __m512 cpd = per_pair(cp + c / 2, false), spd = per_pair(sp + c / 2, true);
    const __m512 cqd = alpha ? per_pair(cq + c / 2, false) : cpd;
    const __m512 sqd = alpha ? per_pair(sq + c / 2, true) : spd;
    for (int h = 0; h < H; h++) {
      __m512 C = cpd, S = spd;
      if (alpha != nullptr) {  // alpha p's + (1 - alpha) q's
        const __m512 al = _mm512_set1_ps(alpha[h]), be = _mm512_set1_ps(1.0f - alpha[h]);
        C = _mm512_fmadd_ps(al, cpd, _mm512_mul_ps(be, cqd));
        S = _mm512_fmadd_ps(al, spd, _mm512_mul_ps(be, sqd));
      }
      const __m512 v = _mm512_loadu_ps(x + int64_t(h) * hd + c);
      const __m512 swapped = _mm512_permute_ps(v, 0xb1);  // (b, a) in every pair
      _mm512_storeu_ps(y + int64_t(h) * hd + c, _mm512_fmadd_ps(v, C, _mm512_mul_ps(swapped, S)));
    }
  }
}

}  // namespace

void rope_row(const float* x, int H, int hd, const float* cp, const float* sp, const float* cq,
              const float* sq, const float* alpha, float* y) {
  static const bool avx512 = cpu_features().avx512;
  if (avx512 && hd % 16 == 0) return rope_row_avx512(x, H, hd, cp, sp, cq, sq, alpha, y);
  rope_row_scalar(x, H, hd, cp, sp, cq, sq, alpha, y);
}

}  // namespace cb

#pragma GCC diagnostic pop
#pragma GCC pop_options
#else
namespace cb {
void rope_row(const float* x, int H, int hd, const float* cp, const float* sp, const float* cq,
              const float* sq, const float* alpha, float* y) {
  rope_row_scalar(x, H, hd, cp, sp, cq, sq, alpha, y);
}
}  // namespace cb
#endif
