#include "cached_attention_kernel.h"

#include <algorithm>

#include "vector_math.h"

namespace cb {
namespace {

// Keys padded to a multiple of this, so the score loop has no tail.
constexpr int kKeyPad = 16;

int padded(int vis) { return (vis + kKeyPad - 1) / kKeyPad * kKeyPad; }

}  // namespace

int64_t cached_attention_scratch(int vis, int hd) {
  const int64_t lk = padded(vis);
  return int64_t(hd) * lk + lk + hd;  // K^T, one score row, one output accumulator
}

// One copy per instruction set (AVX-512, AVX2, baseline), as vector_math.cc.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void attend_cached_queries(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                           const float* k, const float* v, int64_t ld_kv, float* scratch,
                           float* o) {
  const int lk = padded(vis);
  float* __restrict kt = scratch;                   // (hd, lk) keys transposed, zero padded
  float* __restrict s = kt + int64_t(hd) * lk;      // (lk) one query's scores, then weights
  float* __restrict acc = s + lk;                   // (hd) one query's weighted value sum
  for (int d = 0; d < hd; d++) {
    float* row = kt + int64_t(d) * lk;
    for (int j = 0; j < vis; j++) row[j] = k[int64_t(j) * ld_kv + d];
    for (int j = vis; j < lk; j++) row[j] = 0.0f;
  }
  for (int i = 0; i < m; i++) {
    const float* qi = q + int64_t(i) * ld_q;  // (hd)
    // Scores, vectorised over the keys: s = scale q_i K^T.
    for (int j = 0; j < lk; j++) s[j] = 0.0f;
    for (int d = 0; d < hd; d++) {
      const float qd = qi[d] * scale;
      const float* __restrict row = kt + int64_t(d) * lk;
      for (int j = 0; j < lk; j++) s[j] += qd * row[j];
    }
    float mx = s[0];
    for (int j = 1; j < vis; j++) mx = std::max(mx, s[j]);
    const float sum = exp_shifted(s, vis, mx);
    // Weighted values, vectorised over the dims: acc = sum_j s_j v_j.
    for (int d = 0; d < hd; d++) acc[d] = 0.0f;
    for (int j = 0; j < vis; j++) {
      const float p = s[j];
      const float* __restrict vj = v + int64_t(j) * ld_kv;
      for (int d = 0; d < hd; d++) acc[d] += p * vj[d];
    }
    const float inv = 1.0f / sum;
    float* oi = o + int64_t(i) * ld_q;
    for (int d = 0; d < hd; d++) oi[d] = acc[d] * inv;
  }
}

}  // namespace cb
