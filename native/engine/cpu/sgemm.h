// Single-precision GEMM on the CPU, C (m, n) = alpha op(A) op(B) + beta C, row-major, with the
// semantics of Backend::gemm (no argument checks; beta 0 ignores C, NaNs included). Up to four
// paths are compiled in, and cpu_sgemm picks one per call (sgemm_dispatch.cc):
//   blocked        the portable cache-blocked loop (always there; the fallback)
//   openblas       cblas_sgemm (when CMake found OpenBLAS)
//   onednn-matmul  a oneDNN matmul primitive (brgemm kernels for the CPU's ISA, picked by oneDNN
//                  at run time), created once per shape, transposes, strides and scalars and
//                  kept in a process-wide cache (onednn_gemm.cc)
//   onednn-sgemm   oneDNN's BLAS-like dnnl_sgemm (its own JIT kernels; nothing to create)
//
// The choice (sgemm_path_for) is a fixed function of the shape and of the CPU's features, never
// of timings taken in this process: two processes on one machine must sum every product the same
// way, or a resumed training run would not repeat an uninterrupted one bit for bit (see
// parallel.h). The rule was calibrated by measuring every path on the model's shapes
// (`cb_engine_bench gemm`, which prints them beside the rule's choice).
//
// Threads: every path runs on cpu_threads() threads, or on the calling thread alone inside a
// parallel_for range (parallel.h), so the results depend on that count and on nothing else.
#pragma once

#include <string>
#include <vector>

namespace cb {

enum class SgemmPath { blocked, openblas, onednn_matmul, onednn_sgemm };

const char* sgemm_path_name(SgemmPath path);  // "blocked", "openblas", ...

// The paths this build has and this CPU can run, in the order above.
const std::vector<SgemmPath>& sgemm_paths();

// The path cpu_sgemm takes for a product of these sizes (the selection rule).
SgemmPath sgemm_path_for(bool trans_a, bool trans_b, int m, int n, int k);

// "onednn-matmul for m >= 16, else onednn-sgemm (oneDNN avx512_core)": the rule in words.
std::string sgemm_rule();

void cpu_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
               const float* a, int lda,  // (m, k) or (k, m) if trans_a
               const float* b, int ldb,  // (k, n) or (n, k) if trans_b
               float beta, float* c, int ldc);  // (m, n)

// cpu_sgemm with `bias` (n) added to every row of C (null: none), fused where the path can.
void cpu_sgemm_bias(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                    const float* a, int lda, const float* b, int ldb, float beta, float* c,
                    int ldc, const float* bias);

// One given path (one of sgemm_paths(); the tests and the benchmarks run each).
void sgemm_on(SgemmPath path, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc,
              const float* bias = nullptr);

// The blocked loop, always compiled so the tests can check it whichever path is chosen.
void blocked_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                   const float* a, int lda, const float* b, int ldb, float beta, float* c,
                   int ldc);

}  // namespace cb
