// Single-precision GEMM on the CPU: cblas_sgemm when built with OpenBLAS, otherwise a portable
// cache-blocked loop (threaded over row blocks). Semantics of Backend::gemm; no argument checks.
#pragma once

namespace cb {

void cpu_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
               const float* a, int lda,  // (m, k) or (k, m) if trans_a
               const float* b, int ldb,  // (k, n) or (n, k) if trans_b
               float beta, float* c, int ldc);  // (m, n)

// The blocked loop, always compiled so the tests can check it even when OpenBLAS is used.
void blocked_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                   const float* a, int lda, const float* b, int ldb, float beta, float* c,
                   int ldc);

}  // namespace cb
