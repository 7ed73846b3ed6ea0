// cpu_sgemm: the paths of sgemm.h and the rule that picks one per call.
#include <cstring>

#include "../error.h"
#include "onednn_gemm.h"
#include "parallel.h"
#include "sgemm.h"

#ifdef CB_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace cb {
namespace {

// Below this many rows of C, dnnl_sgemm beats the matmul primitive (measured on the model's
// shapes, 1 and 2 threads: at m = 2 the primitive's kernels for a thin C run at a third of
// dnnl_sgemm's rate; from m = 16 on the primitive is ahead by 10-60%).
constexpr int kMatmulMinRows = 16;

bool onednn_usable() {
  static const bool usable = onednn_compiled() && onednn_has_avx512();
  return usable;
}

void add_bias_rows(int m, int n, const float* bias, float* c, int ldc) {
  for (int i = 0; i < m; i++) {
    float* row = c + int64_t(i) * ldc;  // (n)
    for (int j = 0; j < n; j++) row[j] += bias[j];
  }
}

}  // namespace

const char* sgemm_path_name(SgemmPath path) {
  switch (path) {
    case SgemmPath::blocked: return "blocked";
    case SgemmPath::openblas: return "openblas";
    case SgemmPath::onednn_matmul: return "onednn-matmul";
    case SgemmPath::onednn_sgemm: return "onednn-sgemm";
  }
  return "?";
}

const std::vector<SgemmPath>& sgemm_paths() {
  static const auto* paths = [] {
    auto* p = new std::vector<SgemmPath>{SgemmPath::blocked};
#ifdef CB_HAVE_OPENBLAS
    p->push_back(SgemmPath::openblas);
#endif
    if (onednn_compiled()) {
      p->push_back(SgemmPath::onednn_matmul);
      p->push_back(SgemmPath::onednn_sgemm);
    }
    return p;
  }();
  return *paths;
}

SgemmPath sgemm_path_for(bool, bool, int m, int, int) {
  // oneDNN only where its kernels are AVX-512 ones: elsewhere OpenBLAS (AVX2 or better kernels
  // for the CPU at hand) is the one we have measured and trust.
  if (onednn_usable()) return m >= kMatmulMinRows ? SgemmPath::onednn_matmul : SgemmPath::onednn_sgemm;
#ifdef CB_HAVE_OPENBLAS
  return SgemmPath::openblas;
#else
  return SgemmPath::blocked;
#endif
}

std::string sgemm_rule() {
  if (onednn_usable()) {
    return "onednn-matmul for m >= " + std::to_string(kMatmulMinRows) +
           ", else onednn-sgemm (oneDNN " + onednn_isa() + ")";
  }
  const std::string why = onednn_compiled() ? " (oneDNN has no AVX-512 here: " + onednn_isa() + ")"
                                            : " (no oneDNN in this build)";
#ifdef CB_HAVE_OPENBLAS
  return "openblas" + why;
#else
  return "blocked" + why;
#endif
}

void sgemm_on(SgemmPath path, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc,
              const float* bias) {
  if (m == 0 || n == 0) return;
  if (path == SgemmPath::onednn_matmul) {
    onednn_matmul(GemmType::f32, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                  alpha == 1.0f ? bias : nullptr);  // a fused bias would be scaled by alpha
    if (alpha != 1.0f && bias != nullptr) add_bias_rows(m, n, bias, c, ldc);
    return;
  }
  // The others: C starts as the bias when beta is 0 (then accumulated into), else gets it after.
  const bool prefill = bias != nullptr && beta == 0.0f;
  if (prefill) {
    for (int i = 0; i < m; i++) std::memcpy(c + int64_t(i) * ldc, bias, sizeof(float) * n);
    beta = 1.0f;
  }
  switch (path) {
    case SgemmPath::onednn_sgemm:
      onednn_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      break;
    case SgemmPath::openblas:
#ifdef CB_HAVE_OPENBLAS
      cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                  trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                  ldc);
      break;
#else
      CB_FAIL("this build has no OpenBLAS");
#endif
    case SgemmPath::blocked:
    case SgemmPath::onednn_matmul:
      blocked_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      break;
  }
  if (bias != nullptr && !prefill) add_bias_rows(m, n, bias, c, ldc);
}

void cpu_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
               int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  sgemm_on(sgemm_path_for(trans_a, trans_b, m, n, k), trans_a, trans_b, m, n, k, alpha, a, lda,
           b, ldb, beta, c, ldc, nullptr);
}

void cpu_sgemm_bias(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                    const float* a, int lda, const float* b, int ldb, float beta, float* c,
                    int ldc, const float* bias) {
  sgemm_on(sgemm_path_for(trans_a, trans_b, m, n, k), trans_a, trans_b, m, n, k, alpha, a, lda,
           b, ldb, beta, c, ldc, bias);
}

}  // namespace cb
