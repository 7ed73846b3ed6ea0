// A portable cache-blocked SGEMM. C is split into blocks of MC rows, one range of blocks per
// thread. For each (KC x NC) block of op(B) and (MC x KC) block of op(A), both are packed into
// contiguous row-major buffers (this also resolves the transposes), then a simple i-p-j loop,
// whose inner j loop the compiler vectorises, accumulates into C.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel.h"
#include "sgemm.h"

namespace cb {
namespace {

constexpr int MC = 64;   // rows of C per block
constexpr int KC = 256;  // depth per block
constexpr int NC = 512;  // columns of C per block

// op(X)(r, c) for a row-major X with row stride ld.
inline float at(const float* x, int ld, bool trans, int r, int c) {
  return trans ? x[(int64_t)c * ld + r] : x[(int64_t)r * ld + c];
}

// Rows [i0, i1) of C.
void sgemm_rows(bool trans_a, bool trans_b, int i0, int i1, int n, int k, float alpha,
                const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  for (int i = i0; i < i1; i++) {
    float* ci = c + (int64_t)i * ldc;
    for (int j = 0; j < n; j++) ci[j] = beta == 0.0f ? 0.0f : beta * ci[j];
  }
  if (alpha == 0.0f || k == 0) return;
  std::vector<float> ap((size_t)MC * KC);  // (MC, KC) packed alpha * op(A) block
  std::vector<float> bp((size_t)KC * NC);  // (KC, NC) packed op(B) block
  for (int j0 = 0; j0 < n; j0 += NC) {
    const int nb = std::min(NC, n - j0);
    for (int p0 = 0; p0 < k; p0 += KC) {
      const int kb = std::min(KC, k - p0);
      for (int p = 0; p < kb; p++) {
        for (int j = 0; j < nb; j++) bp[(size_t)p * nb + j] = at(b, ldb, trans_b, p0 + p, j0 + j);
      }
      for (int ib = i0; ib < i1; ib += MC) {
        const int mb = std::min(MC, i1 - ib);
        for (int i = 0; i < mb; i++) {
          for (int p = 0; p < kb; p++) {
            ap[(size_t)i * kb + p] = alpha * at(a, lda, trans_a, ib + i, p0 + p);
          }
        }
        for (int i = 0; i < mb; i++) {
          float* ci = c + (int64_t)(ib + i) * ldc + j0;  // (nb)
          for (int p = 0; p < kb; p++) {
            const float aip = ap[(size_t)i * kb + p];
            const float* bpp = &bp[(size_t)p * nb];  // (nb)
            for (int j = 0; j < nb; j++) ci[j] += aip * bpp[j];
          }
        }
      }
    }
  }
}

}  // namespace

void blocked_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                   int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  // Threads take whole MC-row blocks; small products stay on one thread.
  const int64_t blocks = (m + MC - 1) / MC;
  const int64_t work_per_block = (int64_t)MC * n * std::max(k, 1);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 21) / work_per_block);
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    const int i0 = (int)(b0 * MC), i1 = (int)std::min<int64_t>(m, b1 * MC);
    sgemm_rows(trans_a, trans_b, i0, i1, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  });
}

}  // namespace cb
