// GEMM: cpu-ref in double against a naive product of materialised transposes; cpu (whichever
// path sgemm.h picks), every sgemm path on its own (blocked, openblas, onednn-matmul,
// onednn-sgemm: those this build has), with and without a bias, and cuda against cpu-ref in
// double. Tolerances come from the standard bound |fl(sum) - sum| <= k u sum |a||b|
// (u = 2^-24), with a little slack.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "compare.h"
#include "cpu/bf16_convert.h"
#include "cpu/cpu_features.h"
#include "cpu/onednn_gemm.h"
#include "cpu/parallel.h"
#include "cpu/ref.h"
#include "cpu/sgemm.h"
#include "harness.h"
#include "ops.h"

namespace {

struct Shape {
  int m, n, k;
};
// Odd sizes, empty sizes, sizes that cross the blocked loop's 64 x 256 x 512 blocks, the thin
// products of batch-1 sampling (2, 3, 7 rows) and both sides of the dispatch's row threshold.
const std::vector<Shape> kShapes = {{1, 1, 1},    {7, 5, 3},     {33, 17, 65}, {0, 4, 3},
                                    {4, 0, 3},    {4, 3, 0},     {65, 47, 257}, {130, 520, 31},
                                    {2, 129, 64}, {3, 96, 33},   {15, 40, 24}, {16, 40, 24},
                                    {2, 1536, 512}};

// A problem: stored A and B (row strides padded by `pad`), and C.
struct Problem {
  bool ta, tb;
  int m, n, k, lda, ldb, ldc;
  float alpha, beta;
  std::vector<float> a, b, c;
};

Problem make_problem(bool ta, bool tb, Shape s, int pad, float beta, uint32_t seed) {
  Problem p{ta, tb, s.m, s.n, s.k, 0, 0, 0, 1.5f, beta, {}, {}, {}};
  const int a_rows = ta ? s.k : s.m, a_cols = ta ? s.m : s.k;
  const int b_rows = tb ? s.n : s.k, b_cols = tb ? s.k : s.n;
  p.lda = std::max(a_cols, 1) + pad;
  p.ldb = std::max(b_cols, 1) + pad;
  p.ldc = std::max(s.n, 1) + pad;
  p.a = cbt::random_uniform((size_t)a_rows * p.lda, seed);
  p.b = cbt::random_uniform((size_t)b_rows * p.ldb, seed + 1);
  p.c = cbt::random_uniform((size_t)s.m * p.ldc, seed + 2);
  // With beta == 0 the old C must be ignored, NaNs included.
  if (beta == 0.0f) p.c.assign(p.c.size(), std::numeric_limits<float>::quiet_NaN());
  return p;
}

// The reference result in double and the elementwise tolerance for a float result.
void reference(const Problem& p, std::vector<double>& ref, std::vector<double>& tol) {
  std::vector<double> a = cbt::to_double(p.a), b = cbt::to_double(p.b), c = cbt::to_double(p.c);
  std::vector<double> abs_a(a.size()), abs_b(b.size()), bound(c.size(), 0.0);
  for (size_t i = 0; i < a.size(); i++) abs_a[i] = std::fabs(a[i]);
  for (size_t i = 0; i < b.size(); i++) abs_b[i] = std::fabs(b[i]);
  ref = c;
  cb::gemm_ref<double>(p.ta, p.tb, p.m, p.n, p.k, p.alpha, a.data(), p.lda, b.data(), p.ldb,
                       p.beta, ref.data(), p.ldc);
  cb::gemm_ref<double>(p.ta, p.tb, p.m, p.n, p.k, std::fabs(p.alpha), abs_a.data(), p.lda,
                       abs_b.data(), p.ldb, 0.0, bound.data(), p.ldc);
  tol.assign(c.size(), 0.0);
  for (size_t i = 0; i < c.size(); i++) {
    const double old_c = p.beta == 0.0f ? 0.0 : std::fabs(p.beta * c[i]);
    tol[i] = 2.0 * (p.k + 4) * cbt::kFloatEps * (bound[i] + old_c);
  }
}

// Runs `gemm` (a float implementation) over every shape, transpose pair, padding and beta.
template <typename Gemm>
void check_float_gemm(const std::string& what, Gemm gemm) {
  uint32_t seed = 1;
  for (const Shape& s : kShapes) {
    for (int t = 0; t < 4; t++) {
      for (int pad : {0, 3}) {
        for (float beta : {0.0f, 0.5f}) {
          Problem p = make_problem(t & 1, t & 2, s, pad, beta, seed += 3);
          std::vector<double> ref, tol;
          reference(p, ref, tol);
          gemm(p);
          // Compare the m x n entries only; the padding of C must be untouched.
          for (int i = 0; i < p.m; i++) {
            const size_t row = (size_t)i * p.ldc;
            cbt::expect_within(what + " m=" + std::to_string(p.m) + " n=" + std::to_string(p.n) +
                                   " k=" + std::to_string(p.k) + " ta=" + std::to_string(p.ta) +
                                   " tb=" + std::to_string(p.tb) + " pad=" + std::to_string(pad),
                               p.c.data() + row, ref.data() + row, tol.data() + row, p.n);
            for (int j = p.n; j < p.ldc; j++) {
              EXPECT(std::isnan(p.c[row + j]) == std::isnan(ref[row + j]) &&
                         (std::isnan(ref[row + j]) || p.c[row + j] == ref[row + j]),
                     what + ": the padding of C was written");
            }
          }
        }
      }
    }
  }
}

void check_backend_gemm(const std::string& name) {
  auto backend = cb::make_backend(name);
  check_float_gemm(name + " gemm", [&](Problem& p) {
    backend->gemm(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb,
                  p.beta, p.c.data(), p.ldc);
  });
}

}  // namespace

CB_TEST("cpu-ref", gemm_double_matches_naive_product) {
  uint32_t seed = 100;
  for (const Shape& s : kShapes) {
    for (int t = 0; t < 4; t++) {
      Problem p = make_problem(t & 1, t & 2, s, 2, 0.25f, seed += 3);
      std::vector<double> a = cbt::to_double(p.a), b = cbt::to_double(p.b);
      std::vector<double> c = cbt::to_double(p.c);
      // Naive: materialise op(A) (m, k) and op(B) (k, n), then a triple loop.
      std::vector<double> opa((size_t)p.m * p.k), opb((size_t)p.k * p.n);
      for (int i = 0; i < p.m; i++) {
        for (int l = 0; l < p.k; l++) {
          opa[(size_t)i * p.k + l] = p.ta ? a[(size_t)l * p.lda + i] : a[(size_t)i * p.lda + l];
        }
      }
      for (int l = 0; l < p.k; l++) {
        for (int j = 0; j < p.n; j++) {
          opb[(size_t)l * p.n + j] = p.tb ? b[(size_t)j * p.ldb + l] : b[(size_t)l * p.ldb + j];
        }
      }
      std::vector<double> got = c;
      cb::gemm_ref<double>(p.ta, p.tb, p.m, p.n, p.k, p.alpha, a.data(), p.lda, b.data(), p.ldb,
                           p.beta, got.data(), p.ldc);
      for (int i = 0; i < p.m; i++) {
        for (int j = 0; j < p.n; j++) {
          double sum = 0, bound = 0;
          for (int l = 0; l < p.k; l++) {
            sum += opa[(size_t)i * p.k + l] * opb[(size_t)l * p.n + j];
            bound += std::fabs(opa[(size_t)i * p.k + l] * opb[(size_t)l * p.n + j]);
          }
          const double want = p.alpha * sum + p.beta * c[(size_t)i * p.ldc + j];
          const double tol = 2.0 * (p.k + 4) * std::ldexp(1.0, -52) *
                             (std::fabs(p.alpha) * bound + std::fabs(p.beta * c[(size_t)i * p.ldc + j]));
          EXPECT(std::fabs(got[(size_t)i * p.ldc + j] - want) <= tol,
                 "gemm_ref<double> differs from the naive product at (" + std::to_string(i) +
                     ", " + std::to_string(j) + ")");
        }
      }
    }
  }
}

CB_TEST("cpu-ref", gemm_float_within_bound) { check_backend_gemm("cpu-ref"); }

CB_TEST("cpu", cpu_gemm_matches_ref) { check_backend_gemm("cpu"); }

CB_TEST("cpu", blocked_gemm_matches_ref) {
  check_float_gemm("blocked gemm", [](Problem& p) {
    cb::blocked_sgemm(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb,
                      p.beta, p.c.data(), p.ldc);
  });
}

// Every path this build has, alone (the dispatch may never pick some for these shapes).
CB_TEST("cpu", every_sgemm_path_matches_ref) {
  for (cb::SgemmPath path : cb::sgemm_paths()) {
    check_float_gemm(std::string(cb::sgemm_path_name(path)) + " sgemm", [&](Problem& p) {
      cb::sgemm_on(path, p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(),
                   p.ldb, p.beta, p.c.data(), p.ldc);
    });
  }
}

// With a bias (the linear layers: fused into oneDNN's matmul when alpha is 1, added after the
// product otherwise and on the other paths): C = alpha op(A) op(B) + beta C + bias.
CB_TEST("cpu", every_sgemm_path_adds_the_bias) {
  for (cb::SgemmPath path : cb::sgemm_paths()) {
    for (float alpha : {1.0f, 1.5f}) {
      uint32_t seed = 900;
      for (const Shape& s : {Shape{2, 33, 17}, Shape{20, 64, 40}, Shape{5, 7, 0}}) {
        for (float beta : {0.0f, 0.5f}) {
          Problem p = make_problem(false, true, s, 1, beta, seed += 3);
          p.alpha = alpha;
          const std::vector<float> bias = cbt::random_uniform(s.n, seed + 7);
          std::vector<double> ref, tol;
          reference(p, ref, tol);
          for (int i = 0; i < p.m; i++) {
            for (int j = 0; j < p.n; j++) {
              ref[(size_t)i * p.ldc + j] += bias[j];
              tol[(size_t)i * p.ldc + j] += 2 * cbt::kFloatEps * std::fabs(bias[j]);
            }
          }
          cb::sgemm_on(path, p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(),
                       p.ldb, p.beta, p.c.data(), p.ldc, bias.data());
          for (int i = 0; i < p.m; i++) {
            cbt::expect_within(std::string(cb::sgemm_path_name(path)) + " sgemm with bias m=" +
                                   std::to_string(p.m) + " n=" + std::to_string(p.n) + " k=" +
                                   std::to_string(p.k) + " alpha=" + std::to_string(alpha) +
                                   " beta=" + std::to_string(beta),
                               p.c.data() + (size_t)i * p.ldc, ref.data() + (size_t)i * p.ldc,
                               tol.data() + (size_t)i * p.ldc, p.n);
          }
        }
      }
    }
  }
}

// The rule picks a path the build has, the same one every time for a shape (results must not
// depend on anything but the shape and the thread count), and oneDNN only with AVX-512.
CB_TEST("cpu", sgemm_rule_is_a_fixed_function_of_the_shape) {
  const auto& paths = cb::sgemm_paths();
  for (const Shape& s : kShapes) {
    for (int t = 0; t < 4; t++) {
      const cb::SgemmPath path = cb::sgemm_path_for(t & 1, t & 2, s.m, s.n, s.k);
      EXPECT(std::find(paths.begin(), paths.end(), path) != paths.end(),
             std::string("the rule picked ") + cb::sgemm_path_name(path) + ", not in this build");
      EXPECT(path == cb::sgemm_path_for(t & 1, t & 2, s.m, s.n, s.k), "the rule changed its mind");
      const bool onednn = path == cb::SgemmPath::onednn_matmul || path == cb::SgemmPath::onednn_sgemm;
      EXPECT(!onednn || cb::onednn_has_avx512(), "oneDNN was picked without AVX-512 kernels");
    }
  }
  std::printf("     rule: %s\n", cb::sgemm_rule().c_str());
}

// Called from inside parallel_for ranges (attention's per-head products), every path still
// gives the right products, with the library running on the calling thread alone.
CB_TEST("cpu", sgemm_inside_parallel_ranges_matches_ref) {
  const Shape s{48, 40, 32};
  const int parts = 8;
  std::vector<Problem> problems;
  for (int i = 0; i < parts; i++) problems.push_back(make_problem(false, true, s, 0, 0.0f, 50 + i));
  for (cb::SgemmPath path : cb::sgemm_paths()) {
    std::vector<Problem> work = problems;
    cb::parallel_for(parts, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++) {
        Problem& p = work[i];
        cb::sgemm_on(path, p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(),
                     p.ldb, p.beta, p.c.data(), p.ldc);
      }
    });
    for (const Problem& p : work) {
      std::vector<double> ref, tol;
      reference(problems[&p - work.data()], ref, tol);
      cbt::expect_within(std::string(cb::sgemm_path_name(path)) + " sgemm in a parallel range",
                         p.c.data(), ref.data(), tol.data(), p.m * p.n);
    }
  }
}

CB_TEST("cpu", gemm_rejects_bad_strides) {
  auto cpu = cb::make_backend("cpu");
  std::vector<float> a(12), b(12), c(12);
  bool thrown = false;
  try {
    cpu->gemm(false, false, 3, 4, 4, 1.0f, a.data(), 3 /* < k */, b.data(), 4, 0.0f, c.data(), 4);
  } catch (const cb::Error& e) {
    thrown = true;
    EXPECT(e.file() == "native/engine/ops.cc" && e.line() > 0,
           "the error should name native/engine/ops.cc, got " + e.file());
  }
  EXPECT(thrown, "gemm with lda < k should throw cb::Error");
}

CB_TEST("cuda", cuda_gemm_matches_ref) { check_backend_gemm("cuda"); }

// Packed weights (the sampler's frozen weights): the same products as the plain matmul, for
// fp32 and bf16, with and without bias and GELU, on shapes that cut into column pieces (n >= m)
// and row pieces, with partial 64-column blocks and k not a multiple of the packing's 16 or 32.
CB_TEST("cpu", packed_weights_match_the_plain_matmul) {
  if (!cb::onednn_compiled() || !cb::onednn_has_avx512()) {
    std::printf("SKIP packed weights: no oneDNN with AVX-512 here\n");
    return;
  }
  struct Case {
    int m, n, k;
  };
  const Case cases[] = {{1, 8, 8},     {2, 1536, 512}, {17, 100, 48},  {64, 320, 512},
                        {200, 64, 40}, {700, 96, 20},  {33, 4096, 24}, {3000, 512, 512}};
  uint32_t seed = 4000;
  for (cb::GemmType type : {cb::GemmType::f32, cb::GemmType::bf16}) {
    const bool bf16 = type == cb::GemmType::bf16;
    if (bf16 && !cb::bf16_matmul_unavailable().empty()) {
      std::printf("SKIP packed bf16 weights: %s\n", cb::bf16_matmul_unavailable().c_str());
      continue;
    }
    for (const Case& c : cases) {
      std::vector<float> x = cbt::random_uniform(size_t(c.m) * c.k, seed++);
      std::vector<float> w = cbt::random_uniform(size_t(c.n) * c.k, seed++);  // (n, k)
      const std::vector<float> bias = cbt::random_uniform(c.n, seed++);
      std::vector<cb::bf16_t> x16(x.size()), w16(w.size());
      cb::float_to_bf16_span(x.data(), x16.data(), int64_t(x.size()));
      cb::float_to_bf16_span(w.data(), w16.data(), int64_t(w.size()));
      const void* xa = bf16 ? static_cast<const void*>(x16.data()) : x.data();
      const void* wa = bf16 ? static_cast<const void*>(w16.data()) : w.data();
      const std::unique_ptr<cb::OnednnPackedWeights> packed =
          cb::onednn_pack_weights(type, c.n, c.k, wa);
      EXPECT(packed != nullptr, "oneDNN with AVX-512 took no packed weights");
      if (packed == nullptr) return;
      for (cb::GemmEpilogue epilogue : {cb::GemmEpilogue::none, cb::GemmEpilogue::gelu_tanh}) {
        for (const float* b : {bias.data(), static_cast<const float*>(nullptr)}) {
          const std::string what = std::string(bf16 ? "bf16" : "f32") + " m=" +
                                   std::to_string(c.m) + " n=" + std::to_string(c.n) +
                                   " k=" + std::to_string(c.k) +
                                   (epilogue == cb::GemmEpilogue::gelu_tanh ? " gelu" : "") +
                                   (b != nullptr ? " bias" : "");
          std::vector<float> plain(size_t(c.m) * c.n), got(plain.size(), NAN);
          cb::onednn_matmul(type, false, true, c.m, c.n, c.k, 1.0f, xa, c.k, wa, c.k, 0.0f,
                            plain.data(), c.n, b, epilogue);
          cb::onednn_linear_packed(*packed, c.m, xa, got.data(), b, epilogue);
          // Both sum the same (rounded) products in fp32, possibly in another order.
          std::vector<double> ref(plain.begin(), plain.end()), tol(plain.size());
          for (size_t i = 0; i < tol.size(); i++) {
            tol[i] = 4.0 * (c.k + 4) * cbt::kFloatEps * (std::fabs(ref[i]) + 1.0);
          }
          cbt::expect_within("packed weights " + what, got.data(), ref.data(), tol.data(),
                             int64_t(got.size()));
        }
      }
    }
  }
}
