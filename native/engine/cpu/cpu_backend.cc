// The cpu backend: OpenBLAS (or blocked) SGEMM, chunked nearest_codes with a threaded argmin.
#include "../error.h"
#include "backends.h"
#include "nearest.h"
#include "sgemm.h"

namespace cb {
namespace {

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(int64_t chunk_rows) : chunk_rows_(chunk_rows) {}
  const char* name() const override { return "cpu"; }

  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
            const float* b, int ldb, float beta, float* c, int ldc) override {
    check_gemm_args(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    cpu_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }

  void nearest_codes(const float* points, int64_t n, int d, const float* codebook, int k,
                     int32_t* index, float* dist2) override {
    check_nearest_args(points, n, d, codebook, k, index, dist2);
    cpu_nearest_codes(points, n, d, codebook, k, index, dist2, chunk_rows_);
  }

 private:
  int64_t chunk_rows_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int64_t chunk_rows) {
  return std::make_unique<CpuBackend>(chunk_rows);
}

}  // namespace cb
