// nearest_codes: every backend against the reference in double. On random data a different
// index is accepted only for a near-tie: the true distance of the chosen code must be within
// the rounding bound of the best one. On small-integer data every result is exact, so indices
// (first index wins ties) and distances must match exactly.
#include <cmath>
#include <vector>

#include "compare.h"
#include "cpu/ref.h"
#include "harness.h"
#include "ops.h"

namespace {

struct Case {
  int64_t n;
  int d, k;
};
// Odd sizes; k and d larger than the CUDA tiles (64 codes, 16 dims); n larger than the chunks.
const std::vector<Case> kCases = {{1, 1, 1},   {5, 3, 2},     {1000, 13, 37},
                                  {1001, 40, 300}, {257, 16, 64}, {3, 2, 129}};
const std::vector<int64_t> kChunks = {0, 7, 64};  // 0: automatic

double exact_d2(const float* x, const float* e, int d) {
  double s = 0;
  for (int l = 0; l < d; l++) s += ((double)x[l] - e[l]) * ((double)x[l] - e[l]);
  return s;
}

double norm(const float* x, int d) {  // |x|
  double s = 0;
  for (int l = 0; l < d; l++) s += (double)x[l] * x[l];
  return std::sqrt(s);
}

void check_random(const std::string& name) {
  uint32_t seed = 7;
  for (const Case& c : kCases) {
    for (int64_t chunk : kChunks) {
      auto backend = cb::make_backend(name, chunk);
      const std::vector<float> x = cbt::random_uniform((size_t)c.n * c.d, seed += 2);
      const std::vector<float> e = cbt::random_uniform((size_t)c.k * c.d, seed + 1);
      std::vector<int32_t> index(c.n, -1), ref_index(c.n);
      std::vector<float> dist2(c.n, -1.0f);
      std::vector<double> ref_d2(c.n);
      const std::vector<double> xd = cbt::to_double(x), ed = cbt::to_double(e);
      cb::nearest_codes_ref<double>(xd.data(), c.n, c.d, ed.data(), c.k, ref_index.data(),
                                    ref_d2.data());
      backend->nearest_codes(x.data(), c.n, c.d, e.data(), c.k, index.data(), dist2.data());
      double emax = 0;
      for (int j = 0; j < c.k; j++) emax = std::max(emax, norm(&e[(size_t)j * c.d], c.d));
      const std::string what = name + " nearest_codes n=" + std::to_string(c.n) +
                               " d=" + std::to_string(c.d) + " k=" + std::to_string(c.k) +
                               " chunk=" + std::to_string(chunk);
      for (int64_t i = 0; i < c.n; i++) {
        const float* xi = &x[(size_t)i * c.d];
        // Rounding bound of |x|^2 - 2 x.e + |e|^2 in float.
        const double scale = norm(xi, c.d) + emax;
        const double tol = 4.0 * (c.d + 4) * cbt::kFloatEps * scale * scale;
        EXPECT(index[i] >= 0 && index[i] < c.k, what + ": index out of range");
        const double chosen = exact_d2(xi, &e[(size_t)index[i] * c.d], c.d);
        EXPECT(chosen - ref_d2[i] <= tol, what + ": point " + std::to_string(i) + " got code " +
                                              std::to_string(index[i]) + ", reference " +
                                              std::to_string(ref_index[i]) + " is nearer");
        cbt::expect_within(what + " dist2", &dist2[i], &chosen, &tol, 1);
      }
    }
  }
}

void check_exact(const std::string& name) {
  // Codes and points on a small integer grid, with repeated codes: ties everywhere.
  for (int64_t chunk : kChunks) {
    auto backend = cb::make_backend(name, chunk);
    const int d = 3, base = 7, k = 70;
    const int64_t n = 515;
    const std::vector<float> rows = cbt::random_ints((size_t)base * d, 11, -2, 2);
    std::vector<float> e((size_t)k * d);
    for (int j = 0; j < k; j++) {
      for (int l = 0; l < d; l++) e[(size_t)j * d + l] = rows[(size_t)(j % base) * d + l];
    }
    std::vector<float> x = cbt::random_ints((size_t)n * d, 12, -3, 3);
    // Point 0 is the origin with codes 1 and 2 at distance 1 from it: code 1 must win.
    for (int l = 0; l < d; l++) {
      x[l] = 0;
      e[0 * d + l] = 5;
      e[1 * d + l] = l == 0 ? 1.0f : 0.0f;
      e[2 * d + l] = l == 1 ? 1.0f : 0.0f;
    }
    std::vector<int32_t> index(n), ref_index(n);
    std::vector<float> dist2(n), ref_d2(n);
    cb::nearest_codes_ref<float>(x.data(), n, d, e.data(), k, ref_index.data(), ref_d2.data());
    backend->nearest_codes(x.data(), n, d, e.data(), k, index.data(), dist2.data());
    EXPECT(index[0] == 1 && dist2[0] == 1.0f, name + ": the first of two equal codes must win");
    for (int64_t i = 0; i < n; i++) {
      EXPECT(index[i] == ref_index[i] && dist2[i] == ref_d2[i],
             name + " chunk=" + std::to_string(chunk) + ": point " + std::to_string(i) + " got (" +
                 std::to_string(index[i]) + ", " + std::to_string(dist2[i]) + "), reference (" +
                 std::to_string(ref_index[i]) + ", " + std::to_string(ref_d2[i]) + ")");
    }
  }
}

void check_errors(const std::string& name) {
  auto backend = cb::make_backend(name);
  std::vector<float> x(6), e(6);
  std::vector<int32_t> index(3);
  std::vector<float> dist2(3);
  backend->nearest_codes(x.data(), 0, 2, e.data(), 3, index.data(), dist2.data());  // n = 0: ok
  for (int bad = 0; bad < 2; bad++) {
    bool thrown = false;
    try {
      const int d = bad == 0 ? 0 : 2, k = bad == 0 ? 3 : 0;
      backend->nearest_codes(x.data(), 3, d, e.data(), k, index.data(), dist2.data());
    } catch (const cb::Error& err) {
      thrown = true;
      EXPECT(err.file() == "native/engine/ops.cc" && err.line() > 0,
             "the error should name native/engine/ops.cc, got " + err.file());
    }
    EXPECT(thrown, name + ": nearest_codes with " + (bad == 0 ? "d = 0" : "k = 0") +
                       " should throw cb::Error");
  }
}

}  // namespace

CB_TEST("cpu-ref", ref_random_matches_double) { check_random("cpu-ref"); }
CB_TEST("cpu-ref", ref_exact_and_ties) { check_exact("cpu-ref"); }
CB_TEST("cpu-ref", ref_rejects_bad_shapes) { check_errors("cpu-ref"); }

CB_TEST("cpu", cpu_random_matches_ref) { check_random("cpu"); }
CB_TEST("cpu", cpu_exact_and_ties) { check_exact("cpu"); }
CB_TEST("cpu", cpu_rejects_bad_shapes) { check_errors("cpu"); }

CB_TEST("cuda", cuda_random_matches_ref) { check_random("cuda"); }
CB_TEST("cuda", cuda_exact_and_ties) { check_exact("cuda"); }
CB_TEST("cuda", cuda_rejects_bad_shapes) { check_errors("cuda"); }
