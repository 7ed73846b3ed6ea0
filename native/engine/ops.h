// The op interface: one abstract Backend, three implementations.
//   cpu-ref  plain loops, the oracle (cpu/ref.h holds them templated, so they also run in double)
//   cpu      OpenBLAS sgemm (or a cache-blocked loop) plus std::thread
//   cuda     own kernels (no cuBLAS), compiled when nvcc was found, usable when a GPU is present
// All matrices are row-major. For now every pointer is host memory; the CUDA backend copies
// to and from the device inside each op.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cb {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // C = alpha * op(A) * op(B) + beta * C, where op(X) is X or its transpose.
  // op(A) is (m, k), op(B) is (k, n), C is (m, n); lda, ldb, ldc are row strides.
  // beta == 0 overwrites C (NaNs in C do not propagate), as in BLAS.
  virtual void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                    const float* a, int lda,  // (m, k) or (k, m) if trans_a
                    const float* b, int ldb,  // (k, n) or (n, k) if trans_b
                    float beta, float* c, int ldc) = 0;  // (m, n)

  // For each point, the nearest codebook row in squared Euclidean distance.
  // Computed as |x|^2 - 2 x.e + |e|^2 with a GEMM for x.e, chunked over n so that memory stays
  // bounded; ties go to the first (lowest) index; dist2 is clamped at 0.
  virtual void nearest_codes(const float* points,    // (n, d)
                             int64_t n, int d,
                             const float* codebook,  // (k, d)
                             int k,
                             int32_t* index,         // (n) out
                             float* dist2) = 0;      // (n) out
};

// Backend names accepted by make_backend, in order: "cpu-ref", "cpu", "cuda".
const std::vector<std::string>& backend_names();

// Creates a backend by name. `chunk_rows` bounds how many points nearest_codes handles at once
// (0: automatic). Throws cb::Error for an unknown name or an unavailable CUDA backend.
std::unique_ptr<Backend> make_backend(const std::string& name, int64_t chunk_rows = 0);

// Shape checks shared by every backend (throw cb::Error).
void check_gemm_args(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
                     const float* b, int ldb, const float* c, int ldc);
void check_nearest_args(const float* points, int64_t n, int d, const float* codebook, int k,
                        const int32_t* index, const float* dist2);

}  // namespace cb
