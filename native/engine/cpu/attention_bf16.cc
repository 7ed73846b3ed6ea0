#include "attention_bf16.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "../error.h"
#include "attention_amx.h"
#include "cpu_features.h"
#include "vector_math.h"

namespace cb {
namespace {

constexpr int kKeyBlock = 16;   // keys per block of the key layout (one vector of scores)
constexpr int kQueryBlock = 4;  // queries sharing each load of a key or value vector

int padded(int vis) { return (vis + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }

}  // namespace

bool attend_bf16_supported(int hd) {
#if defined(__x86_64__) && defined(__GNUC__)
  return hd % 32 == 0 && hd >= 32 && hd <= 128;
#else
  return false;
#endif
}

int64_t bf16_key_pair_values(int T, int hd) { return int64_t(padded(T)) * hd; }

int64_t bf16_value_pair_values(int T, int hd) { return int64_t((T + 1) / 2) * 2 * hd; }

// The AVX512-BF16 kernel's: scores (Q x lk floats), then the same rows' weights as bf16 (Q x
// lk / 2 pairs); the AMX kernel's, where it runs.
int64_t attend_bf16_scratch_floats(int vis, int hd) {
  const int64_t avx512 = int64_t(kQueryBlock) * padded(vis) * 3 / 2;
  return cpu_features().amx_bf16 ? std::max(avx512, attend_amx_scratch_floats(vis, hd)) : avx512;
}

}  // namespace cb

#if defined(__x86_64__) && defined(__GNUC__)

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma")
// GCC 12's intrinsics start some results from a self-initialised "undefined" vector, which
// -Wmaybe-uninitialized reports once inlined (GCC bug 105593); nothing here reads one.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace cb {
namespace {

#define CB_INLINE inline __attribute__((always_inline))

// Two bf16 values as the 32-bit lane vdpbf16ps multiplies pairwise, in all 16 lanes.
CB_INLINE __m512bh pair_broadcast(uint32_t pair) { return (__m512bh)_mm512_set1_epi32(int(pair)); }

CB_INLINE __m512bh load_pairs(const bf16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }

// 16 floats rounded to bf16 (nearest even), stored at `to` (8 pairs).
CB_INLINE void store_rounded(float* from, uint32_t* to) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(to),
                      (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(from)));
}

// S (Q rows of lk) columns of key blocks jb .. jb + KB: the Q x KB sums in registers over the
// hd / 2 dim pairs, each load of a block's pair vector shared by the Q queries and each query
// broadcast by the KB blocks. best (Q) gets the lane max over the real keys (below vis).
template <int Q, int KB>
CB_INLINE void score_blocks(int jb, int lk, int vis, int hp, const uint32_t (*qp)[64],
                            const bf16_t* kp, float* S, __m512* best) {
  __m512 acc[Q][KB];
  for (int i = 0; i < Q; i++) {
    for (int b = 0; b < KB; b++) acc[i][b] = _mm512_setzero_ps();
  }
  const bf16_t* block = kp + int64_t(jb) * hp * 2 * kKeyBlock;  // (KB, hp, 16, 2)
  for (int dp = 0; dp < hp; dp++) {
    __m512bh k[KB];
    for (int b = 0; b < KB; b++) k[b] = load_pairs(block + (int64_t(b) * hp + dp) * 2 * kKeyBlock);
    for (int i = 0; i < Q; i++) {
      const __m512bh qv = pair_broadcast(qp[i][dp]);
      for (int b = 0; b < KB; b++) acc[i][b] = _mm512_dpbf16_ps(acc[i][b], k[b], qv);
    }
  }
  for (int b = 0; b < KB; b++) {
    const int j0 = (jb + b) * kKeyBlock;
    const int real = std::min(kKeyBlock, vis - j0);
    const __mmask16 keep = real >= kKeyBlock ? __mmask16(0xffff) : __mmask16((1u << real) - 1);
    for (int i = 0; i < Q; i++) {
      _mm512_storeu_ps(S + int64_t(i) * lk + j0, acc[i][b]);
      best[i] = _mm512_mask_max_ps(best[i], keep, best[i], acc[i][b]);
    }
  }
}

// o (Q, hd) = P V * inv_sum for the Q rows of bf16 weight pairs P (at ldp pairs a row) over the
// first vis slots: per slot pair, HD vectors of (value, value) pairs against each row's
// broadcast (weight, weight) pair, the Q x HD sums in registers.
template <int Q, int HD>
CB_INLINE void weighted_values(int vis, const uint32_t* P, int64_t ldp, const bf16_t* vp,
                               const float* inv_sum, float* o, int64_t ld_q) {
  constexpr int hd = 16 * HD;
  __m512 acc[Q][HD];
  for (int i = 0; i < Q; i++) {
    for (int c = 0; c < HD; c++) acc[i][c] = _mm512_setzero_ps();
  }
  // An odd vis ends on a pair whose second slot is not visible: its weight is 0, and its
  // value (which may be anything, NaN included) is loaded as 0.
  const int pairs = (vis + 1) / 2;
  for (int jp = 0; jp < pairs; jp++) {
    const bf16_t* block = vp + int64_t(jp) * 2 * hd;  // (hd, 2)
    const __mmask32 real = 2 * jp + 1 < vis ? __mmask32(0xffffffffu) : __mmask32(0x55555555u);
    __m512bh v[HD];
    for (int c = 0; c < HD; c++) v[c] = (__m512bh)_mm512_maskz_loadu_epi16(real, block + 32 * c);
    for (int i = 0; i < Q; i++) {
      const __m512bh p = pair_broadcast(P[int64_t(i) * ldp + jp]);
      for (int c = 0; c < HD; c++) acc[i][c] = _mm512_dpbf16_ps(acc[i][c], v[c], p);
    }
  }
  for (int i = 0; i < Q; i++) {
    const __m512 inv = _mm512_set1_ps(inv_sum[i]);
    for (int c = 0; c < HD; c++) _mm512_storeu_ps(o + i * ld_q + 16 * c, _mm512_mul_ps(acc[i][c], inv));
  }
}

template <int Q, int HD>
CB_INLINE void attend_rows(int vis, float scale, const float* q, int64_t ld_q, const bf16_t* kp,
                           const bf16_t* vp, float* S, uint32_t* P, float* o) {
  constexpr int hd = 16 * HD, hp = hd / 2;
  const int lk = padded(vis), blocks = lk / kKeyBlock;
  // The queries, scaled, as bf16 pairs.
  alignas(64) uint32_t qp[Q][64];
  alignas(64) float row[16];
  for (int i = 0; i < Q; i++) {
    for (int c = 0; c < HD; c++) {
      _mm512_store_ps(row, _mm512_mul_ps(_mm512_loadu_ps(q + i * ld_q + 16 * c), _mm512_set1_ps(scale)));
      store_rounded(row, qp[i] + 8 * c);
    }
  }
  __m512 best[Q];
  for (int i = 0; i < Q; i++) best[i] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int jb = 0;
  for (; jb + 4 <= blocks; jb += 4) score_blocks<Q, 4>(jb, lk, vis, hp, qp, kp, S, best);
  for (; jb + 2 <= blocks; jb += 2) score_blocks<Q, 2>(jb, lk, vis, hp, qp, kp, S, best);
  for (; jb < blocks; jb++) score_blocks<Q, 1>(jb, lk, vis, hp, qp, kp, S, best);
  float inv_sum[Q];
  for (int i = 0; i < Q; i++) {
    float* s = S + int64_t(i) * lk;  // (lk): scores, then weights
    alignas(64) float lanes[16];  // (GCC 12's _mm512_reduce_max_ps trips -Wmaybe-uninitialized)
    _mm512_store_ps(lanes, best[i]);
    const float mx = *std::max_element(lanes, lanes + 16);
    const float sum = exp_shifted(s, vis, mx);
    inv_sum[i] = 1.0f / sum;
    for (int j = vis; j < lk; j++) s[j] = 0.0f;  // the padding keys weigh nothing
    for (int j = 0; j < lk; j += 16) store_rounded(s + j, P + int64_t(i) * (lk / 2) + j / 2);
  }
  // At most 16 sums in registers: hd 96 and 128 take two rows at a time.
  constexpr int QV = HD <= 4 ? Q : std::min(Q, 2);
  for (int i = 0; i < Q; i += QV) {
    weighted_values<QV, HD>(vis, P + int64_t(i) * (lk / 2), lk / 2, vp, inv_sum + i,
                            o + i * ld_q, ld_q);
  }
}

template <int HD>
void attend_all(int m, int vis, float scale, const float* q, int64_t ld_q, const bf16_t* kp,
                const bf16_t* vp, float* scratch, float* o) {
  float* S = scratch;                                                        // (4, lk)
  uint32_t* P = reinterpret_cast<uint32_t*>(S + int64_t(kQueryBlock) * padded(vis));  // (4, lk/2)
  int i = 0;
  for (; i + kQueryBlock <= m; i += kQueryBlock) {
    attend_rows<kQueryBlock, HD>(vis, scale, q + i * ld_q, ld_q, kp, vp, S, P, o + i * ld_q);
  }
  for (; i < m; i++) attend_rows<1, HD>(vis, scale, q + i * ld_q, ld_q, kp, vp, S, P, o + i * ld_q);
}

}  // namespace

// The slot's hd floats, rounded in vectors of 32: as 32-bit lanes they are the dim pairs, lane
// dp going to dim pair dp's 16 x 2 row of the block (64 bytes apart).
void store_bf16_key(int t, int hd, const float* k, bf16_t* kp) {
  uint32_t* to = reinterpret_cast<uint32_t*>(kp + int64_t(t / kKeyBlock) * kKeyBlock * hd) +
                 t % kKeyBlock;  // dim pair 0 of slot t; pair dp at dp * 16
  for (int d = 0; d < hd; d += 32) {
    const __m512i pairs = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(k + d + 16),
                                                       _mm512_loadu_ps(k + d));
    const __m512i at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                             12, 13, 14, 15),
                                          _mm512_set1_epi32(kKeyBlock));
    _mm512_i32scatter_epi32(to + (d / 2) * kKeyBlock, at, pairs, 4);
  }
}

// The slot's values, rounded, widened to 32-bit lanes and moved to the lane half that is
// slot t's within its slot pair, then stored over that half only.
void store_bf16_value(int t, int hd, const float* v, bf16_t* vp) {
  bf16_t* to = vp + int64_t(t / 2) * 2 * hd;  // (hd, 2)
  const __mmask32 half = t % 2 == 0 ? __mmask32(0x55555555u) : __mmask32(0xaaaaaaaau);
  for (int d = 0; d < hd; d += 16) {
    __m512i wide = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(v + d)));
    if (t % 2 == 1) wide = _mm512_slli_epi32(wide, 16);
    _mm512_mask_storeu_epi16(to + 2 * d, half, wide);
  }
}

// Slots t (even) and t + 1 at once: their rounded values interleaved into whole vectors.
void store_bf16_value_pair(int t, int hd, const float* v0, const float* v1, bf16_t* vp) {
  bf16_t* to = vp + int64_t(t / 2) * 2 * hd;  // (hd, 2)
  for (int d = 0; d < hd; d += 16) {
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(v0 + d)));
    const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(v1 + d)));
    _mm512_storeu_si512(to + 2 * d, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
}

void attend_bf16_avx512(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                        const bf16_t* kp, const bf16_t* vp, float* scratch, float* o) {
  switch (hd) {
    case 32: return attend_all<2>(m, vis, scale, q, ld_q, kp, vp, scratch, o);
    case 64: return attend_all<4>(m, vis, scale, q, ld_q, kp, vp, scratch, o);
    case 96: return attend_all<6>(m, vis, scale, q, ld_q, kp, vp, scratch, o);
    case 128: return attend_all<8>(m, vis, scale, q, ld_q, kp, vp, scratch, o);
    default: CB_FAIL("attend_bf16: heads of " + std::to_string(hd) + " dims are not supported");
  }
}


}  // namespace cb

#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace cb {

Bf16Attention::Bf16Attention() {
  if (cpu_features().amx_bf16) tiles_ = std::make_unique<AmxTileScope>();
}

Bf16Attention::~Bf16Attention() = default;

void Bf16Attention::attend(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                           const bf16_t* kp, const bf16_t* vp, float* scratch, float* o) {
  if (tiles_) return attend_bf16_amx_in_scope(m, vis, hd, scale, q, ld_q, kp, vp, scratch, o);
  attend_bf16_avx512(m, vis, hd, scale, q, ld_q, kp, vp, scratch, o);
}

}  // namespace cb

#else

namespace cb {

void store_bf16_key(int, int hd, const float*, bf16_t*) {
  CB_FAIL("store_bf16_key: needs an x86-64 CPU with AVX512-BF16 (heads of " +
          std::to_string(hd) + " dims)");
}

void store_bf16_value(int, int hd, const float*, bf16_t*) {
  CB_FAIL("store_bf16_value: needs an x86-64 CPU with AVX512-BF16 (heads of " +
          std::to_string(hd) + " dims)");
}

void store_bf16_value_pair(int, int hd, const float*, const float*, bf16_t*) {
  CB_FAIL("store_bf16_value_pair: needs an x86-64 CPU with AVX512-BF16 (heads of " +
          std::to_string(hd) + " dims)");
}

void attend_bf16_avx512(int, int, int hd, float, const float*, int64_t, const bf16_t*,
                        const bf16_t*, float*, float*) {
  CB_FAIL("attend_bf16_avx512: needs an x86-64 CPU with AVX512-BF16 (heads of " +
          std::to_string(hd) + " dims)");
}


}  // namespace cb

#endif
