#include "compare.h"

#include <cmath>
#include <cstdio>
#include <random>

#include "harness.h"

namespace cbt {

std::vector<float> random_uniform(size_t count, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> x(count);
  for (auto& v : x) v = dist(rng);
  return x;
}

std::vector<float> random_ints(size_t count, uint32_t seed, int lo, int hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<float> x(count);
  for (auto& v : x) v = (float)dist(rng);
  return x;
}

std::vector<double> to_double(const std::vector<float>& x) { return {x.begin(), x.end()}; }

static std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void expect_within(const std::string& what, const float* got, const double* ref,
                   const double* tol, size_t count) {
  for (size_t i = 0; i < count; i++) {
    EXPECT(std::isfinite(got[i]), what + ": non-finite value at " + std::to_string(i));
  }
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < count; i++) {
    err2 += (got[i] - ref[i]) * (got[i] - ref[i]);
    ref2 += ref[i] * ref[i];
  }
  const double nmse = ref2 > 0 ? err2 / ref2 : err2;
  for (size_t i = 0; i < count; i++) {
    const double diff = std::fabs(got[i] - ref[i]);
    EXPECT(diff <= tol[i], what + ": at " + std::to_string(i) + " got " + fmt(got[i]) +
                               ", reference " + fmt(ref[i]) + " (|diff| " + fmt(diff) +
                               " > tolerance " + fmt(tol[i]) + "; nmse " + fmt(nmse) + ")");
  }
}

}  // namespace cbt
