// One sampling draw from a row of logits (DESIGN.md "Sampling"), shared by the CPU backends:
//   z = l_c + w (l_c - l_u)      classifier-free guidance (no l_u when w = 0)
//   z = z / temperature          temperature 0: greedy (the first largest logit, entropy 0)
//   top-k                        keep the k largest z (ties: the lower code first)
//   top-p                        keep the fewest most likely codes whose mass reaches p
//   draw                         the first kept code, in code order, whose cumulative mass
//                                exceeds u * total, with u from philox (seed, image, slot)
// Everything after the guidance is in double, sums run in code order, so the draw depends only
// on the logits and the key.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace cb {

struct TokenSampling {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  uint64_t seed = 0;
};

// Scratch for sample_row, reused across rows by one thread.
struct TokenSamplingScratch {
  std::vector<double> z, e;
  std::vector<int32_t> order;
  std::vector<uint8_t> kept;
};

// The code sample_row returns for a row whose guided logits are not all finite (NaN or Inf: a
// model with damaged or overflowing weights); the sampler turns it into an error.
constexpr int32_t kNonFiniteLogits = -1;

// Samples one code from cond (K) (and uncond (K) when w != 0) with the uniform u in [0, 1).
// Returns the code, or kNonFiniteLogits; *entropy_bits (when not null) gets the entropy of the
// final distribution.
template <typename Real>
int32_t sample_row(int K, const Real* cond, const Real* uncond, float w, const TokenSampling& s,
                   double u, TokenSamplingScratch& scratch, float* entropy_bits) {
  std::vector<double>& z = scratch.z;
  z.resize(K);
  for (int i = 0; i < K; i++) {
    const double c = double(cond[i]);
    z[i] = uncond != nullptr && w != 0.0f ? c + double(w) * (c - double(uncond[i])) : c;
  }
  if (!std::all_of(z.begin(), z.end(), [](double v) { return std::isfinite(v); })) {
    if (entropy_bits != nullptr) *entropy_bits = 0.0f;
    return kNonFiniteLogits;
  }
  if (s.temperature <= 0.0f) {
    if (entropy_bits != nullptr) *entropy_bits = 0.0f;
    return int32_t(std::max_element(z.begin(), z.end()) - z.begin());
  }
  const double inv_t = 1.0 / double(s.temperature);
  for (double& v : z) v *= inv_t;

  std::vector<uint8_t>& kept = scratch.kept;
  kept.assign(K, 1);
  std::vector<int32_t>& order = scratch.order;
  // Codes by decreasing z, ties by increasing code: the order top-k and top-p cut.
  auto by_rank = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
  int count = K;
  if (s.top_k > 0 && s.top_k < K) {
    order.resize(K);
    std::iota(order.begin(), order.end(), 0);
    std::nth_element(order.begin(), order.begin() + (s.top_k - 1), order.end(), by_rank);
    std::fill(kept.begin(), kept.end(), 0);
    for (int r = 0; r < s.top_k; r++) kept[order[r]] = 1;
    count = s.top_k;
  }
  double mx = -INFINITY;
  for (int i = 0; i < K; i++) {
    if (kept[i]) mx = std::max(mx, z[i]);
  }
  // z becomes z - max and e = exp(z - max) for kept codes (0 for the others).
  std::vector<double>& e = scratch.e;
  e.resize(K);
  for (int i = 0; i < K; i++) {
    z[i] = kept[i] ? z[i] - mx : 0.0;
    e[i] = kept[i] ? std::exp(z[i]) : 0.0;
  }
  if (s.top_p < 1.0f) {
    double total = 0;
    for (int i = 0; i < K; i++) total += e[i];
    order.resize(count);
    int at = 0;
    for (int i = 0; i < K; i++) {
      if (kept[i]) order[at++] = i;
    }
    std::sort(order.begin(), order.end(), by_rank);
    const double target = double(s.top_p) * total;
    double cum = 0;
    int keep = 0;
    while (keep < count && cum < target) cum += e[order[keep++]];
    for (int r = std::max(keep, 1); r < count; r++) {
      kept[order[r]] = 0;
      e[order[r]] = 0.0;
    }
  }
  // The final distribution p_i = e_i / total, summed in code order.
  double total = 0, weighted = 0;  // sum of e_i, sum of e_i (z_i - max)
  for (int i = 0; i < K; i++) {
    if (!kept[i]) continue;
    total += e[i];
    weighted += e[i] * z[i];
  }
  if (entropy_bits != nullptr) {
    const double h = std::log(total) - weighted / total;  // nats
    *entropy_bits = float(std::max(0.0, h) / std::log(2.0));
  }
  const double target = u * total;
  double cum = 0;
  int32_t last = -1;
  for (int i = 0; i < K; i++) {
    if (!kept[i]) continue;
    cum += e[i];
    last = i;
    if (cum > target) return i;
  }
  return last;  // rounding left the target just above the total
}

}  // namespace cb
