#include "attention_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "vector_math.h"

// The 64-byte vector type below never crosses a call (its helpers are always inlined), so
// GCC's note that passing it changes the ABI without AVX-512 does not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace cb {
namespace {

// Keys padded to a multiple of this, so the score loop has no tail.
constexpr int kKeyPad = 16;
// Queries per block: their scores share each load of K^T, their outputs each load of V.
constexpr int kQueryBlock = 4;

int padded(int vis) { return (vis + kKeyPad - 1) / kKeyPad * kKeyPad; }

// The helpers below are inlined into each instruction-set copy of attend_queries, so
// they get its registers (a call would run them at the baseline's).
#if defined(__GNUC__)
#define CB_INLINE inline __attribute__((always_inline))
#else
#define CB_INLINE inline
#endif

// 16 floats: one AVX-512 register in the x86-64-v4 copy of attend_queries (GCC vector extension; the other
// copies split it into narrower registers).
typedef float f16x __attribute__((vector_size(64)));

CB_INLINE f16x load16(const float* p) {
  f16x v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
CB_INLINE void store16(float* p, f16x v) { std::memcpy(p, &v, sizeof v); }

// S (Q, lk) = scale q K^T for Q queries (q rows at stride ld_q), 16 keys at a time, the Q
// accumulators of a key block in registers over all hd dims; mx (Q) gets each row's largest
// score over the vis real keys (a vector max as the scores are made: a scalar pass over the row
// afterwards, one loop-carried max per key, cost as much as the products).
template <int Q>
CB_INLINE void block_scores(int lk, int vis, int hd, float scale, const float* q, int64_t ld_q,
                            const float* kt, float* S, float* mx) {
  float qs[Q][128];  // the queries, scaled (hd <= 128 on this path)
  for (int i = 0; i < Q; i++) {
    for (int d = 0; d < hd; d++) qs[i][d] = q[i * ld_q + d] * scale;
  }
  const float lowest = -std::numeric_limits<float>::infinity();
  f16x best[Q];
  for (int i = 0; i < Q; i++) best[i] = f16x{} + lowest;
  for (int j = 0; j < lk; j += 16) {
    f16x acc[Q];
    for (int i = 0; i < Q; i++) acc[i] = f16x{};
    for (int d = 0; d < hd; d++) {
      const f16x k = load16(kt + (int64_t(j) * hd + int64_t(d) * 16));  // block j / 16, dim d
      for (int i = 0; i < Q; i++) acc[i] += k * qs[i][d];
    }
    for (int i = 0; i < Q; i++) store16(S + int64_t(i) * lk + j, acc[i]);
    if (j + 16 > vis) {  // the padding keys' scores take no part in the max
      f16x lane;
      for (int l = 0; l < 16; l++) lane[l] = float(j + l);
      const auto pad = lane >= float(vis);
      for (int i = 0; i < Q; i++) acc[i] = pad ? f16x{} + lowest : acc[i];
    }
    for (int i = 0; i < Q; i++) best[i] = acc[i] > best[i] ? acc[i] : best[i];
  }
  for (int i = 0; i < Q; i++) {
    float m = best[i][0];
    for (int l = 1; l < 16; l++) m = std::max(m, best[i][l]);
    mx[i] = m;
  }
}

// o (Q, hd) = P V / sums for Q weight rows P (Q, lk) over vis keys, HD = hd / 16 registers of
// each output row in registers over all keys.
template <int Q, int HD>
CB_INLINE void block_values(int lk, int vis, const float* P, const float* v, int64_t ld_kv,
                         const float* inv_sum, float* o, int64_t ld_q) {
  f16x acc[Q][HD];
  for (int i = 0; i < Q; i++) {
    for (int c = 0; c < HD; c++) acc[i][c] = f16x{};
  }
  for (int j = 0; j < vis; j++) {
    const float* vj = v + int64_t(j) * ld_kv;
    f16x vv[HD];
    for (int c = 0; c < HD; c++) vv[c] = load16(vj + 16 * c);
    for (int i = 0; i < Q; i++) {
      const float p = P[int64_t(i) * lk + j];
      for (int c = 0; c < HD; c++) acc[i][c] += vv[c] * p;
    }
  }
  for (int i = 0; i < Q; i++) {
    for (int c = 0; c < HD; c++) store16(o + i * ld_q + 16 * c, acc[i][c] * inv_sum[i]);
  }
}

template <int Q, int HD>
CB_INLINE void attend_block(int lk, int vis, float scale, const float* q, int64_t ld_q,
                            const float* kt, const float* v, int64_t ld_kv, float* S, float* o,
                            float* lse) {
  float mx[Q], inv_sum[Q];
  block_scores<Q>(lk, vis, 16 * HD, scale, q, ld_q, kt, S, mx);
  for (int i = 0; i < Q; i++) {
    const float sum = exp_shifted(S + int64_t(i) * lk, vis, mx[i]);
    inv_sum[i] = 1.0f / sum;
    if (lse != nullptr) lse[i] = mx[i] + std::log(sum);
  }
  block_values<Q, HD>(lk, vis, S, v, ld_kv, inv_sum, o, ld_q);
}

template <int HD>
CB_INLINE void attend_blocked(int m, int vis, float scale, const float* q, int64_t ld_q,
                              const float* kt, const float* v, int64_t ld_kv, float* S, float* o,
                              float* lse) {
  const int lk = padded(vis);
  int i = 0;
  for (; i + kQueryBlock <= m; i += kQueryBlock) {
    attend_block<kQueryBlock, HD>(lk, vis, scale, q + i * ld_q, ld_q, kt, v, ld_kv, S,
                                  o + i * ld_q, lse != nullptr ? lse + i : nullptr);
  }
  for (; i < m; i++) {
    attend_block<1, HD>(lk, vis, scale, q + i * ld_q, ld_q, kt, v, ld_kv, S, o + i * ld_q,
                        lse != nullptr ? lse + i : nullptr);
  }
}

// Any hd: one query at a time, loops vectorised over the keys (scores) and the dims (values).
CB_INLINE void attend_plain(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                            const float* kt, const float* v, int64_t ld_kv, float* s, float* acc,
                            float* o, float* lse) {
  const int lk = padded(vis);
  for (int i = 0; i < m; i++) {
    const float* qi = q + int64_t(i) * ld_q;  // (hd)
    for (int j = 0; j < lk; j++) s[j] = 0.0f;
    for (int j = 0; j < lk; j += 16) {
      const float* block = kt + int64_t(j) * hd;  // (hd, 16)
      for (int d = 0; d < hd; d++) {
        const float qd = qi[d] * scale;
        for (int l = 0; l < 16; l++) s[j + l] += qd * block[d * 16 + l];
      }
    }
    float mx = s[0];
    for (int j = 1; j < vis; j++) mx = std::max(mx, s[j]);
    const float sum = exp_shifted(s, vis, mx), inv = 1.0f / sum;
    if (lse != nullptr) lse[i] = mx + std::log(sum);
    for (int d = 0; d < hd; d++) acc[d] = 0.0f;
    for (int j = 0; j < vis; j++) {
      const float p = s[j];
      const float* vj = v + int64_t(j) * ld_kv;
      for (int d = 0; d < hd; d++) acc[d] += p * vj[d];
    }
    float* oi = o + int64_t(i) * ld_q;
    for (int d = 0; d < hd; d++) oi[d] = acc[d] * inv;
  }
}

}  // namespace

int64_t attention_scratch_floats(int vis, int hd) {
  const int64_t lk = padded(vis);
  return int64_t(hd) * lk + kQueryBlock * lk + hd;  // K^T, a block's score rows, one output
}

// One copy per instruction set (AVX-512, AVX2, baseline), as vector_math.cc.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void attend_queries(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                    const float* k, const float* v, int64_t ld_kv, float* scratch, float* o,
                    float* lse) {
  const int lk = padded(vis);
  // (lk / 16, hd, 16) keys transposed in blocks of 16, zero padded: a key block's dims lie in
  // one 2 KiB run (hd 32), which the score loop reads straight through.
  float* kt = scratch;
  float* S = kt + int64_t(hd) * lk;         // (kQueryBlock, lk) scores, then weights
  float* acc = S + int64_t(kQueryBlock) * lk;  // (hd) attend_plain's output row
  // Key by key, each read once and whole (a column at a time strided through every key row once
  // per dim, and a (hd, lk) layout made the score loop's loads miss L1: together half the
  // kernel, measured).
  for (int j = 0; j < vis; j++) {
    const float* kj = k + int64_t(j) * ld_kv;              // (hd)
    float* to = kt + int64_t(j / 16) * hd * 16 + (j % 16);  // stride 16
    for (int d = 0; d < hd; d++) to[d * 16] = kj[d];
  }
  for (int j = vis; j < lk; j++) {
    float* to = kt + int64_t(j / 16) * hd * 16 + (j % 16);
    for (int d = 0; d < hd; d++) to[d * 16] = 0.0f;
  }
  switch (hd) {
    case 16: return attend_blocked<1>(m, vis, scale, q, ld_q, kt, v, ld_kv, S, o, lse);
    case 32: return attend_blocked<2>(m, vis, scale, q, ld_q, kt, v, ld_kv, S, o, lse);
    case 64: return attend_blocked<4>(m, vis, scale, q, ld_q, kt, v, ld_kv, S, o, lse);
    case 128: return attend_blocked<8>(m, vis, scale, q, ld_q, kt, v, ld_kv, S, o, lse);
    default: return attend_plain(m, vis, hd, scale, q, ld_q, kt, v, ld_kv, S, acc, o, lse);
  }
}

}  // namespace cb
