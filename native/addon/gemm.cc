// gemm(backend, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc): synchronous,
// writes into c (a Float32Array). Meant for tests and small products.
#include <climits>

#include "args.h"
#include "bindings.h"
#include "errors.h"
#include "ops.h"

namespace cbn {
namespace {

// Elements a row-major (rows, cols) matrix with row stride ld spans.
int64_t span(int64_t rows, int64_t cols, int64_t ld) {
  return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
}

}  // namespace

Napi::Value gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    CB_CHECK(info.Length() == 14, "gemm takes 14 arguments");
    const std::string backend = string_arg(info, 0, "gemm: backend");
    const bool ta = bool_arg(info, 1, "gemm: transA"), tb = bool_arg(info, 2, "gemm: transB");
    const int m = (int)int_arg(info, 3, "gemm: m", 0, INT_MAX);
    const int n = (int)int_arg(info, 4, "gemm: n", 0, INT_MAX);
    const int k = (int)int_arg(info, 5, "gemm: k", 0, INT_MAX);
    const float alpha = (float)number_arg(info, 6, "gemm: alpha");
    Napi::Float32Array a = float32_arg(info, 7, "gemm: a");
    const int lda = (int)int_arg(info, 8, "gemm: lda", 1, INT_MAX);
    Napi::Float32Array b = float32_arg(info, 9, "gemm: b");
    const int ldb = (int)int_arg(info, 10, "gemm: ldb", 1, INT_MAX);
    const float beta = (float)number_arg(info, 11, "gemm: beta");
    Napi::Float32Array c = float32_arg(info, 12, "gemm: c");
    const int ldc = (int)int_arg(info, 13, "gemm: ldc", 1, INT_MAX);

    // Strides first, then that each array holds what the strides span (memory safety).
    cb::check_gemm_args(ta, tb, m, n, k, a.Data(), lda, b.Data(), ldb, c.Data(), ldc);
    CB_CHECK((int64_t)a.ElementLength() >= (ta ? span(k, m, lda) : span(m, k, lda)),
             "gemm: a is too short for its shape and lda");
    CB_CHECK((int64_t)b.ElementLength() >= (tb ? span(n, k, ldb) : span(k, n, ldb)),
             "gemm: b is too short for its shape and ldb");
    CB_CHECK((int64_t)c.ElementLength() >= span(m, n, ldc),
             "gemm: c is too short for its shape and ldc");
    cb::make_backend(backend)->gemm(ta, tb, m, n, k, alpha, a.Data(), lda, b.Data(), ldb, beta,
                                    c.Data(), ldc);
    return env.Undefined();
  });
}

}  // namespace cbn
