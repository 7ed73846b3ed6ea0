// Host-side launchers of the CUDA kernels. Every pointer is device memory; each launch is
// checked (CB_CUDA_CHECK_LAUNCH) before returning. Kernels run on the default stream.
#pragma once

#include <cstdint>

namespace cb {

// C = alpha * op(A) * op(B) + beta * C, row-major (gemm.cu).
void cuda_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                const float* a, int lda,  // (m, k) or (k, m) if trans_a
                const float* b, int ldb,  // (k, n) or (n, k) if trans_b
                float beta, float* c, int ldc);  // (m, n)

// out[r] = sum over d of x[r]^2 (nearest.cu).
void cuda_sq_norms(const float* x,  // (rows, d)
                   int rows, int d,
                   float* out);     // (rows)

// nearest_codes for one chunk of points, given the squared norms (nearest.cu).
void cuda_nearest_chunk(const float* x,   // (n, d)
                        const float* x2,  // (n)
                        int n, int d,
                        const float* e,   // (k, d)
                        const float* e2,  // (k)
                        int k,
                        int32_t* index,   // (n)
                        float* dist2);    // (n)

}  // namespace cb
