// Reference ops: the plainest loops that are obviously right. Templated on the scalar type so
// the native tests can run them in double. Every fast path is checked against these.
#pragma once

#include <cstdint>

namespace cb {

// C = alpha * op(A) * op(B) + beta * C, row-major; see Backend::gemm.
template <typename T>
void gemm_ref(bool trans_a, bool trans_b, int m, int n, int k, T alpha,
              const T* a, int lda,  // (m, k) or (k, m) if trans_a
              const T* b, int ldb,  // (k, n) or (n, k) if trans_b
              T beta, T* c, int ldc) {  // (m, n)
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < n; j++) {
      T sum = 0;
      for (int p = 0; p < k; p++) {
        const T aip = trans_a ? a[(int64_t)p * lda + i] : a[(int64_t)i * lda + p];
        const T bpj = trans_b ? b[(int64_t)j * ldb + p] : b[(int64_t)p * ldb + j];
        sum += aip * bpj;
      }
      T& cij = c[(int64_t)i * ldc + j];
      cij = alpha * sum + (beta == T(0) ? T(0) : beta * cij);
    }
  }
}

// For each point the first codebook row at the smallest squared distance, computed directly as
// sum over d of (x - e)^2 (no GEMM): this is the oracle for the GEMM-based fast paths.
template <typename T>
void nearest_codes_ref(const T* points,    // (n, d)
                       int64_t n, int d,
                       const T* codebook,  // (k, d)
                       int k,
                       int32_t* index,     // (n)
                       T* dist2) {         // (n)
  for (int64_t i = 0; i < n; i++) {
    const T* x = points + i * d;
    int32_t best = 0;
    T best_d2 = 0;
    for (int j = 0; j < k; j++) {
      const T* e = codebook + (int64_t)j * d;
      T d2 = 0;
      for (int l = 0; l < d; l++) d2 += (x[l] - e[l]) * (x[l] - e[l]);
      if (j == 0 || d2 < best_d2) {  // strict <: the first index wins ties
        best = j;
        best_d2 = d2;
      }
    }
    index[i] = best;
    dist2[i] = best_d2;
  }
}

}  // namespace cb
