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

// The helpers below are inlined into each instruction-set copy of the exported kernels, so
// they get its registers (a call would run them at the baseline's).
#if defined(__GNUC__)
#define CB_INLINE inline __attribute__((always_inline))
#else
#define CB_INLINE inline
#endif

// 16 floats: one AVX-512 register in the x86-64-v4 copies of the kernels (GCC vector extension;
// the other copies split it into narrower registers).
typedef float f16x __attribute__((vector_size(64)));

CB_INLINE f16x load16(const float* p) {
  f16x v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
CB_INLINE void store16(float* p, f16x v) { std::memcpy(p, &v, sizeof v); }

// S (Q, lk) = scale q K^T for Q queries (q rows at stride ld_q), 16 keys at a time (key block
// j / 16 of kt at kt + (j / 16) kt_block, its dims 16 floats apart), the Q
// accumulators of a key block in registers over all hd dims; mx (Q) gets each row's largest
// score over the vis real keys (a vector max as the scores are made: a scalar pass over the row
// afterwards, one loop-carried max per key, cost as much as the products).
// With kMax false, mx is unused: the backward's products (scores again, and dO V^T) need no max.
template <int Q, bool kMax = true>
CB_INLINE void block_scores(int lk, int vis, int hd, float scale, const float* q, int64_t ld_q,
                            const float* kt, int64_t kt_block, float* S, float* mx) {
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
      const f16x k = load16(kt + (int64_t(j / 16) * kt_block + int64_t(d) * 16));  // block, dim
      for (int i = 0; i < Q; i++) acc[i] += k * qs[i][d];
    }
    for (int i = 0; i < Q; i++) store16(S + int64_t(i) * lk + j, acc[i]);
    if (!kMax) continue;
    if (j + 16 > vis) {  // the padding keys' scores take no part in the max
      f16x lane;
      for (int l = 0; l < 16; l++) lane[l] = float(j + l);
      const auto pad = lane >= float(vis);
      for (int i = 0; i < Q; i++) acc[i] = pad ? f16x{} + lowest : acc[i];
    }
    for (int i = 0; i < Q; i++) best[i] = acc[i] > best[i] ? acc[i] : best[i];
  }
  if (!kMax) return;
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
                            const float* kt, int64_t kt_block, const float* v, int64_t ld_kv, float* S, float* o,
                            float* lse) {
  float mx[Q], inv_sum[Q];
  block_scores<Q>(lk, vis, 16 * HD, scale, q, ld_q, kt, kt_block, S, mx);
  for (int i = 0; i < Q; i++) {
    const float sum = exp_shifted(S + int64_t(i) * lk, vis, mx[i]);
    inv_sum[i] = 1.0f / sum;
    if (lse != nullptr) lse[i] = mx[i] + std::log(sum);
  }
  block_values<Q, HD>(lk, vis, S, v, ld_kv, inv_sum, o, ld_q);
}

template <int HD>
CB_INLINE void attend_blocked(int m, int vis, float scale, const float* q, int64_t ld_q,
                              const float* kt, int64_t kt_block, const float* v, int64_t ld_kv, float* S, float* o,
                              float* lse) {
  const int lk = padded(vis);
  int i = 0;
  for (; i + kQueryBlock <= m; i += kQueryBlock) {
    attend_block<kQueryBlock, HD>(lk, vis, scale, q + i * ld_q, ld_q, kt, kt_block, v, ld_kv, S,
                                  o + i * ld_q, lse != nullptr ? lse + i : nullptr);
  }
  for (; i < m; i++) {
    attend_block<1, HD>(lk, vis, scale, q + i * ld_q, ld_q, kt, kt_block, v, ld_kv, S, o + i * ld_q,
                        lse != nullptr ? lse + i : nullptr);
  }
}

// Any hd: one query at a time, loops vectorised over the keys (scores) and the dims (values).
CB_INLINE void attend_plain(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                            const float* kt, int64_t kt_block, const float* v, int64_t ld_kv, float* s, float* acc,
                            float* o, float* lse) {
  const int lk = padded(vis);
  for (int i = 0; i < m; i++) {
    const float* qi = q + int64_t(i) * ld_q;  // (hd)
    for (int j = 0; j < lk; j++) s[j] = 0.0f;
    for (int j = 0; j < lk; j += 16) {
      const float* block = kt + int64_t(j / 16) * kt_block;  // (hd, 16)
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

// ---- backward: one run of queries (P and dS rows), then the keys' sums over the run ----

// For Q query rows: P = exp(scale q K^T - lse) and dS = P * (dO V^T - rowsum(dO * O)) into
// rows of the run's (m, lk) P and dS, and dq = scale dS K.
template <int Q, int HD>
CB_INLINE void backward_rows(int lk, int vis, float scale, const float* q, const float* dout,
                             const float* o, int64_t ld_q, const float* lse, const float* k,
                             const float* kt, const float* vt, int64_t ld_kv, float* P, float* dS,
                             float* dq) {
  constexpr int hd = 16 * HD;
  block_scores<Q, false>(lk, vis, hd, scale, q, ld_q, kt, int64_t(hd) * 16, P, nullptr);
  block_scores<Q, false>(lk, vis, hd, 1.0f, dout, ld_q, vt, int64_t(hd) * 16, dS, nullptr);
  float scales[Q];
  for (int i = 0; i < Q; i++) {
    float* p = P + int64_t(i) * lk;   // (vis)
    float* ds = dS + int64_t(i) * lk; // (vis): dP, then dS
    exp_shifted(p, vis, lse[i]);
    f16x dot = f16x{};
    for (int c = 0; c < HD; c++) {
      dot += load16(dout + i * ld_q + 16 * c) * load16(o + i * ld_q + 16 * c);
    }
    float delta = 0.0f;  // rowsum(dO * O) = sum_j P_ij dP_ij
    for (int l = 0; l < 16; l++) delta += dot[l];
    for (int j = 0; j < vis; j++) ds[j] = p[j] * (ds[j] - delta);
    scales[i] = scale;
  }
  block_values<Q, HD>(lk, vis, dS, k, ld_kv, scales, dq, ld_q);
}

// dx_j += alpha sum_i A_ij y_i for the KB keys j0 <= j < j0 + KB, over the run's m rows: A (m, lk),
// y rows at ld_y, dx rows at ld_x; the KB x HD sums stay in registers over all rows.
template <int KB, int HD>
CB_INLINE void key_block_sums(int m, int lk, int j0, float alpha, const float* A, const float* y,
                              int64_t ld_y, float* dx, int64_t ld_x) {
  f16x acc[KB][HD];
  for (int t = 0; t < KB; t++) {
    for (int c = 0; c < HD; c++) acc[t][c] = f16x{};
  }
  for (int i = 0; i < m; i++) {
    f16x yv[HD];
    for (int c = 0; c < HD; c++) yv[c] = load16(y + i * ld_y + 16 * c);
    const float* a = A + int64_t(i) * lk + j0;
    for (int t = 0; t < KB; t++) {
      for (int c = 0; c < HD; c++) acc[t][c] += yv[c] * a[t];
    }
  }
  for (int t = 0; t < KB; t++) {
    float* x = dx + int64_t(j0 + t) * ld_x;
    for (int c = 0; c < HD; c++) store16(x + 16 * c, load16(x + 16 * c) + acc[t][c] * alpha);
  }
}

// key_block_sums over the keys j < vis, KB keys a call (16 accumulators), then one at a time.
template <int HD>
CB_INLINE void key_sums(int m, int lk, int vis, float alpha, const float* A, const float* y,
                        int64_t ld_y, float* dx, int64_t ld_x) {
  constexpr int KB = HD >= 8 ? 1 : 8 / HD;
  int j = 0;
  for (; j + KB <= vis; j += KB) key_block_sums<KB, HD>(m, lk, j, alpha, A, y, ld_y, dx, ld_x);
  for (; j < vis; j++) key_block_sums<1, HD>(m, lk, j, alpha, A, y, ld_y, dx, ld_x);
}

template <int HD>
CB_INLINE void backward_blocked(int m, int vis, float scale, const float* q, const float* dout,
                                const float* o, int64_t ld_q, const float* lse, const float* k,
                                const float* kt, const float* vt, int64_t ld_kv, float* P,
                                float* dS, float* dq, float* dk, float* dv) {
  const int lk = padded(vis);
  int i = 0;
  for (; i + kQueryBlock <= m; i += kQueryBlock) {
    const int64_t at = int64_t(i) * ld_q, row = int64_t(i) * lk;
    backward_rows<kQueryBlock, HD>(lk, vis, scale, q + at, dout + at, o + at, ld_q, lse + i, k, kt,
                                   vt, ld_kv, P + row, dS + row, dq + at);
  }
  for (; i < m; i++) {
    const int64_t at = int64_t(i) * ld_q, row = int64_t(i) * lk;
    backward_rows<1, HD>(lk, vis, scale, q + at, dout + at, o + at, ld_q, lse + i, k, kt, vt,
                         ld_kv, P + row, dS + row, dq + at);
  }
  key_sums<HD>(m, lk, vis, 1.0f, P, dout, ld_q, dv, ld_kv);
  key_sums<HD>(m, lk, vis, scale, dS, q, ld_q, dk, ld_kv);
}

// Any hd: the same steps in plain loops over the key and value rows.
CB_INLINE void backward_plain(int m, int vis, int hd, float scale, const float* q,
                              const float* dout, const float* o, int64_t ld_q, const float* lse,
                              const float* k, const float* v, int64_t ld_kv, float* P, float* dS,
                              float* dq, float* dk, float* dv) {
  const int lk = padded(vis);
  for (int i = 0; i < m; i++) {
    const float *qi = q + i * ld_q, *di = dout + i * ld_q, *oi = o + i * ld_q;  // (hd)
    float* p = P + int64_t(i) * lk;   // (vis)
    float* ds = dS + int64_t(i) * lk; // (vis)
    float delta = 0.0f;
    for (int c = 0; c < hd; c++) delta += di[c] * oi[c];
    for (int j = 0; j < vis; j++) {
      const float *kj = k + j * ld_kv, *vj = v + j * ld_kv;
      float s = 0.0f, dp = 0.0f;
      for (int c = 0; c < hd; c++) {
        s += qi[c] * kj[c];
        dp += di[c] * vj[c];
      }
      p[j] = s * scale;
      ds[j] = dp;
    }
    exp_shifted(p, vis, lse[i]);
    float* dqi = dq + i * ld_q;
    for (int c = 0; c < hd; c++) dqi[c] = 0.0f;
    for (int j = 0; j < vis; j++) {
      ds[j] = p[j] * (ds[j] - delta);
      const float* kj = k + j * ld_kv;
      for (int c = 0; c < hd; c++) dqi[c] += ds[j] * kj[c];
    }
    for (int c = 0; c < hd; c++) dqi[c] *= scale;
  }
  for (int j = 0; j < vis; j++) {
    float *dkj = dk + j * ld_kv, *dvj = dv + j * ld_kv;
    for (int i = 0; i < m; i++) {
      const float p = P[int64_t(i) * lk + j], ds = dS[int64_t(i) * lk + j] * scale;
      const float *qi = q + i * ld_q, *di = dout + i * ld_q;
      for (int c = 0; c < hd; c++) {
        dvj[c] += p * di[c];
        dkj[c] += ds * qi[c];
      }
    }
  }
}

}  // namespace

// One copy per instruction set (AVX-512, AVX2, baseline), as vector_math.cc.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CB_KERNEL_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CB_KERNEL_CLONES
#endif

int64_t transposed_floats(int n, int hd) { return int64_t(padded(n)) * hd; }

// Key by key, each read once and whole (a column at a time strided through every key row once
// per dim, and a (hd, n) layout made the score loop's loads miss L1: together half the
// forward kernel, measured).
CB_KERNEL_CLONES void transpose_blocked(int n, int hd, const float* x, int64_t ld, float* xt) {
  const int lk = padded(n);
  for (int j = 0; j < n; j++) {
    const float* xj = x + int64_t(j) * ld;                 // (hd)
    float* to = xt + int64_t(j / 16) * hd * 16 + (j % 16);  // stride 16
    for (int d = 0; d < hd; d++) to[d * 16] = xj[d];
  }
  for (int j = n; j < lk; j++) {
    float* to = xt + int64_t(j / 16) * hd * 16 + (j % 16);
    for (int d = 0; d < hd; d++) to[d * 16] = 0.0f;
  }
}

int64_t attend_scratch_floats(int vis, int hd) {
  return int64_t(kQueryBlock) * padded(vis) + hd;  // a block's score rows, one output row
}

CB_KERNEL_CLONES void attend_transposed(int m, int vis, int hd, float scale, const float* q,
                                        int64_t ld_q, const float* kt, int64_t kt_block,
                                        const float* v, int64_t ld_kv, float* scratch, float* o,
                                        float* lse) {
  float* S = scratch;                               // (kQueryBlock, lk) scores, then weights
  float* acc = S + int64_t(kQueryBlock) * padded(vis);  // (hd) attend_plain's output row
  switch (hd) {
    case 16: return attend_blocked<1>(m, vis, scale, q, ld_q, kt, kt_block, v, ld_kv, S, o, lse);
    case 32: return attend_blocked<2>(m, vis, scale, q, ld_q, kt, kt_block, v, ld_kv, S, o, lse);
    case 64: return attend_blocked<4>(m, vis, scale, q, ld_q, kt, kt_block, v, ld_kv, S, o, lse);
    case 128: return attend_blocked<8>(m, vis, scale, q, ld_q, kt, kt_block, v, ld_kv, S, o, lse);
    default: return attend_plain(m, vis, hd, scale, q, ld_q, kt, kt_block, v, ld_kv, S, acc, o, lse);
  }
}

int64_t attend_backward_scratch_floats(int m, int vis) { return 2 * int64_t(m) * padded(vis); }

CB_KERNEL_CLONES void attend_backward(int m, int vis, int hd, float scale, const float* q,
                                      const float* dout, const float* o, int64_t ld_q,
                                      const float* lse, const float* k, const float* kt,
                                      const float* v, const float* vt, int64_t ld_kv,
                                      float* scratch, float* dq, float* dk, float* dv) {
  float* P = scratch;                        // (m, lk)
  float* dS = P + int64_t(m) * padded(vis);  // (m, lk)
  switch (hd) {
    case 16:
      return backward_blocked<1>(m, vis, scale, q, dout, o, ld_q, lse, k, kt, vt, ld_kv, P, dS,
                                 dq, dk, dv);
    case 32:
      return backward_blocked<2>(m, vis, scale, q, dout, o, ld_q, lse, k, kt, vt, ld_kv, P, dS,
                                 dq, dk, dv);
    case 64:
      return backward_blocked<4>(m, vis, scale, q, dout, o, ld_q, lse, k, kt, vt, ld_kv, P, dS,
                                 dq, dk, dv);
    case 128:
      return backward_blocked<8>(m, vis, scale, q, dout, o, ld_q, lse, k, kt, vt, ld_kv, P, dS,
                                 dq, dk, dv);
    default:
      return backward_plain(m, vis, hd, scale, q, dout, o, ld_q, lse, k, v, ld_kv, P, dS, dq, dk,
                            dv);
  }
}

}  // namespace cb
