// Backend selection by name and the argument checks every backend shares.
#include "ops.h"

#include "cpu/backends.h"
#include "cuda/cuda.h"
#include "error.h"

namespace cb {

const std::vector<std::string>& backend_names() {
  // Never destroyed (see host_memory()): exit() may run while a worker thread reads it.
  static const auto* names = new std::vector<std::string>{"cpu-ref", "cpu", "cuda"};
  return *names;
}

std::unique_ptr<Backend> make_backend(const std::string& name, int64_t chunk_rows) {
  CB_CHECK(chunk_rows >= 0, "chunk_rows must be >= 0");
  if (name == "cpu-ref") return make_cpu_ref_backend();
  if (name == "cpu") return make_cpu_backend(chunk_rows);
  if (name == "cuda") return make_cuda_backend(chunk_rows);
  CB_FAIL("unknown backend '" + name + "' (one of: cpu-ref, cpu, cuda)");
}

void check_gemm_args(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
                     const float* b, int ldb, const float* c, int ldc) {
  CB_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm: negative size");
  // Row strides must cover a stored row: A is (m, k) or (k, m) when transposed, and so on.
  const int a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  CB_CHECK(lda >= (a_cols > 1 ? a_cols : 1), "gemm: lda is smaller than a row of A");
  CB_CHECK(ldb >= (b_cols > 1 ? b_cols : 1), "gemm: ldb is smaller than a row of B");
  CB_CHECK(ldc >= (n > 1 ? n : 1), "gemm: ldc is smaller than a row of C");
  if (m > 0 && k > 0) CB_CHECK(a != nullptr, "gemm: A is null");
  if (k > 0 && n > 0) CB_CHECK(b != nullptr, "gemm: B is null");
  if (m > 0 && n > 0) CB_CHECK(c != nullptr, "gemm: C is null");
}

void check_nearest_args(const float* points, int64_t n, int d, const float* codebook, int k,
                        const int32_t* index, const float* dist2) {
  CB_CHECK(n >= 0, "nearest_codes: n must be >= 0, got " + std::to_string(n));
  CB_CHECK(d >= 1, "nearest_codes: d must be >= 1, got " + std::to_string(d));
  CB_CHECK(k >= 1, "nearest_codes: the codebook is empty (k = " + std::to_string(k) + ")");
  CB_CHECK(codebook != nullptr, "nearest_codes: codebook is null");
  if (n > 0) {
    CB_CHECK(points != nullptr && index != nullptr && dist2 != nullptr,
             "nearest_codes: null points or outputs");
  }
}

}  // namespace cb
