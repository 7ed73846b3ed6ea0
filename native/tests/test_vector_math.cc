// The cpu backend's vectorisable exp against libm's in double, and the GELU loops built on it
// against the formula (whichever instruction-set clone the loader picked).
#include <cmath>
#include <string>
#include <vector>

#include "compare.h"
#include "cpu/vector_math.h"
#include "harness.h"

CB_TEST("cpu", exp_approx_is_within_2e7_relative_of_exp) {
  double worst = 0;
  for (int i = 0; i <= 1000000; i++) {
    const float x = -87.0f + 175.0f * float(i) / 1000000.0f;
    const double want = std::exp(double(x));
    worst = std::max(worst, std::fabs(cb::exp_approx(x) - want) / want);
  }
  EXPECT(worst < 2e-7, "worst relative error " + std::to_string(worst));
  EXPECT(cb::exp_approx(0.0f) == 1.0f, "exp(0) must be exactly 1");
  EXPECT(cb::exp_approx(-INFINITY) < 1e-37f && cb::exp_approx(-1000.0f) < 1e-37f,
         "large negative arguments must underflow to about 0");
}

CB_TEST("cpu", exp_shifted_and_gelu_spans_match_their_formulas) {
  const int n = 1037;  // not a multiple of any vector width
  const std::vector<float> x = cbt::random_uniform(n, 5, -6.0f, 6.0f);
  std::vector<float> s = x, y(n), dx(n);
  const std::vector<float> dy = cbt::random_uniform(n, 6);
  const float sum = cb::exp_shifted(s.data(), n, 1.5f);
  double want_sum = 0;
  for (int i = 0; i < n; i++) {
    const double e = std::exp(double(x[i]) - 1.5);
    want_sum += e;
    EXPECT(std::fabs(s[i] - e) <= 3e-7 * e, "exp_shifted at " + std::to_string(i));
  }
  EXPECT(std::fabs(sum - want_sum) <= 1e-5 * want_sum, "exp_shifted sum");
  cb::gelu_span(x.data(), y.data(), n);
  cb::gelu_backward_span(x.data(), dy.data(), dx.data(), n);
  for (int i = 0; i < n; i++) {
    const double v = x[i], c = std::sqrt(2.0 / M_PI), u = c * (v + 0.044715 * v * v * v);
    const double t = std::tanh(u);
    const double g = 0.5 * v * (1 + t);
    const double dg = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * 0.044715 * v * v);
    EXPECT(std::fabs(y[i] - g) <= 1e-6 * (1 + std::fabs(g)), "gelu at " + std::to_string(i));
    EXPECT(std::fabs(dx[i] - dy[i] * dg) <= 1e-6 * (1 + std::fabs(dy[i] * dg)),
           "gelu backward at " + std::to_string(i));
  }
}
