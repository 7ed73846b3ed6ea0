// Finite-difference gradient checks and the backward contract, shared by the cpu-ref op tests
// in double (test_model_ops_ref.cc, test_conv_ops_grad.cc; their file comments give the
// stencil's error bounds and the contract).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "harness.h"

namespace cbt {
namespace grad {

using Vec = std::vector<double>;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kRelTol = 1e-6;

inline std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

inline Vec rnd(size_t count, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec x(count);
  for (auto& v : x) v = dist(rng);
  return x;
}

// 12 h times the 4-point stencil's derivative, the paired values subtracted first: an L that
// does not depend on x[i] then gives exactly 0. For a loss given as terms, term by term, summed
// in order: terms that do not depend on x[i] cancel exactly.
inline double stencil(double m2, double m1, double p1, double p2) {
  return 8 * (p1 - m1) - (p2 - m2);
}
inline double stencil(const Vec& m2, const Vec& m1, const Vec& p1, const Vec& p2) {
  double g = 0;
  for (size_t t = 0; t < m2.size(); t++) g += stencil(m2[t], m1[t], p1[t], p2[t]);
  return g;
}

// dL/dx[i] by the 4-point central difference, h = 1e-4 max(1, |x[i]|); x[i] is restored. `loss`
// returns L (a double) or the terms whose sum is L (a Vec).
template <typename Loss>
double fd(Vec& x, size_t i, const Loss& loss) {
  const double x0 = x[i], h = 1e-4 * std::max(1.0, std::fabs(x0));
  auto at = [&](double step) {
    x[i] = x0 + step;
    return loss();
  };
  const auto m2 = at(-2 * h), m1 = at(-h), p1 = at(h), p2 = at(2 * h);
  x[i] = x0;
  return stencil(m2, m1, p1, p2) / (12 * h);
}

// Every element of `analytic` (the gradient of the loss with respect to x) against finite
// differences: |analytic - fd| / max(|analytic|, |fd|, 1e-8) <= kRelTol; `skip(i)` leaves out
// elements that are not part of the op's input (padding). Failures are named `what`. Returns
// the worst relative error.
template <typename Loss>
double check_elements(const std::string& what, Vec& x, const Vec& analytic, const Loss& loss,
                      const std::function<bool(size_t)>& skip = nullptr) {
  EXPECT(analytic.size() == x.size(), what + ": gradient size mismatch");
  double worst = 0;
  for (size_t i = 0; i < x.size(); i++) {
    if (skip && skip(i)) continue;
    const double a = analytic[i], n = fd(x, i, loss);
    const double rel = std::fabs(a - n) / std::max({std::fabs(a), std::fabs(n), 1e-8});
    EXPECT(std::isfinite(a) && rel <= kRelTol,
           what + ": element " + std::to_string(i) + " analytic " + fmt(a) +
               ", finite difference " + fmt(n) + " (relative error " + fmt(rel) + ")");
    worst = std::max(worst, rel);
  }
  return worst;
}

inline void expect_near(const std::string& what, double got, double want, double tol = 1e-12) {
  EXPECT(std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want)),
         what + ": got " + fmt(got) + ", want " + fmt(want));
}

inline void expect_equal(const std::string& what, const Vec& a, const Vec& b) {
  EXPECT(a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0,
         what + ": values differ");
}

// Runs `backward` twice. `over` are overwritten gradients: they start as NaN, then as 7, and
// must be identical after both calls. `acc` are accumulated ones: they start from random
// values s and must hold s + g, then s + 2g. On return `over` holds the gradients and `acc`
// holds g (the increment).
inline void backward_twice(const std::string& what, const std::vector<Vec*>& over,
                           const std::vector<Vec*>& acc, const std::function<void()>& backward) {
  std::vector<Vec> seeds;
  for (size_t k = 0; k < acc.size(); k++) {
    seeds.push_back(rnd(acc[k]->size(), 9000 + (uint32_t)k, 0.5, 1.5));
    *acc[k] = seeds[k];
  }
  for (Vec* g : over) g->assign(g->size(), kNaN);
  backward();
  std::vector<Vec> over1, acc1;
  for (Vec* g : over) over1.push_back(*g);
  for (Vec* g : acc) acc1.push_back(*g);
  for (Vec* g : over) g->assign(g->size(), 7.0);
  backward();
  for (size_t k = 0; k < over.size(); k++) {
    expect_equal(what + ": overwritten gradient " + std::to_string(k) + " on a second call",
                 *over[k], over1[k]);
  }
  for (size_t k = 0; k < acc.size(); k++) {
    Vec& g = *acc[k];
    for (size_t i = 0; i < g.size(); i++) {
      const double once = acc1[k][i] - seeds[k][i], again = g[i] - acc1[k][i];
      EXPECT(std::fabs(again - once) <= 1e-13 * (2.0 + std::fabs(once)),
             what + ": accumulated gradient " + std::to_string(k) + " element " +
                 std::to_string(i) + " grew by " + fmt(once) + " then " + fmt(again));
      g[i] = once;
    }
  }
}

}  // namespace grad
}  // namespace cbt
