// The cpu-ref backend: the reference loops of ref.h in float.
#include "../error.h"
#include "backends.h"
#include "ref.h"

namespace cb {
namespace {

class CpuRefBackend : public Backend {
 public:
  const char* name() const override { return "cpu-ref"; }

  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
            const float* b, int ldb, float beta, float* c, int ldc) override {
    check_gemm_args(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    gemm_ref<float>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }

  void nearest_codes(const float* points, int64_t n, int d, const float* codebook, int k,
                     int32_t* index, float* dist2) override {
    check_nearest_args(points, n, d, codebook, k, index, dist2);
    nearest_codes_ref<float>(points, n, d, codebook, k, index, dist2);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_ref_backend() { return std::make_unique<CpuRefBackend>(); }

}  // namespace cb
