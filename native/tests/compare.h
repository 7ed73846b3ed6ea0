// Test data and comparisons against a reference computed in double.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cbt {

constexpr double kFloatEps = 1.0 / (1 << 23);  // 2^-23, float's machine epsilon

std::vector<float> random_uniform(size_t count, uint32_t seed, float lo = -1.0f, float hi = 1.0f);
std::vector<float> random_ints(size_t count, uint32_t seed, int lo, int hi);
std::vector<double> to_double(const std::vector<float>& x);

// Checks got[i] against ref[i]: first that every value is finite, then |got - ref| <= tol[i].
// A failure names `what`, the first bad index and the normalised MSE.
void expect_within(const std::string& what, const float* got, const double* ref,
                   const double* tol, size_t count);

}  // namespace cbt
