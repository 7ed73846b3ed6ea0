#include "attention_amx.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "../error.h"
#include "vector_math.h"

namespace cb {
namespace {

constexpr int kRows = 16;   // queries per tile: the rows of A and C
constexpr int kKeys = 16;   // keys per score tile: its columns, one block of the key layout
constexpr int kChunk = 32;  // bf16 values one tile multiply reduces over (16 pairs)

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// The scratch of one call, in floats: the query tile, the scores, the weights, a zero-padded
// copy of the last slot pairs' values, the output tile.
struct AmxScratch {
  int64_t lk;  // scores a row: vis rounded up to whole 32-key chunks
  int64_t qs, s, p, vt, os, total;
  AmxScratch(int vis, int hd) {
    lk = round_up(vis, kChunk);
    qs = 0;                           // (16, hd) bf16
    s = qs + kRows * hd / 2;          // (16, lk) fp32
    p = s + kRows * lk;               // (16, lk) bf16
    vt = p + kRows * lk / 2;          // (16 slot pairs, hd, 2) bf16
    os = vt + int64_t(kChunk / 2) * hd;  // (16, hd) fp32
    total = os + int64_t(kRows) * hd;
  }
};

}  // namespace

int64_t attend_amx_scratch_floats(int vis, int hd) { return AmxScratch(vis, hd).total; }

}  // namespace cb

#if defined(__x86_64__) && defined(__GNUC__)

#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")
// GCC 12's intrinsics trip -Wmaybe-uninitialized once inlined (bug 105593; attention_bf16.cc).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace cb {
namespace {

// Palette 1, as ldtilecfg reads it: every tile 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};


// Asks for the cache lines of values [p, p + count) (nothing for count <= 0).
inline void prefetch(const bf16_t* p, int64_t count) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t at = 0; at < count * int64_t(sizeof(bf16_t)); at += 64) {
    _mm_prefetch(c + at, _MM_HINT_T0);
  }
}

void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; t++) {
    config.rows[t] = kRows;
    config.bytes_per_row[t] = 64;
  }
  // GCC 12 does not count ldtilecfg as reading the whole struct, and dropped the stores above
  // (the tiles then came out unconfigured); the empty asm makes them happen first.
  __asm__ volatile("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
}

void release_tiles() { _tile_release(); }

// 16 floats rounded to bf16 (nearest even) at `to`.
inline void store_rounded(__m512 from, bf16_t* to) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(to), (__m256i)_mm512_cvtneps_pbh(from));
}

// qs (16, hd) bf16: the block's mq queries times scale, rounded; the rows after them zero.
void load_queries(int mq, int hd, float scale, const float* q, int64_t ld_q, bf16_t* qs) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int i = 0; i < kRows; i++) {
    bf16_t* row = qs + int64_t(i) * hd;
    if (i >= mq) {
      std::memset(static_cast<void*>(row), 0, sizeof(bf16_t) * hd);
      continue;
    }
    for (int d = 0; d < hd; d += 16) {
      store_rounded(_mm512_mul_ps(_mm512_loadu_ps(q + i * ld_q + d), s), row + d);
    }
  }
}

// S (16, lk) fp32 = Qs Kp^T over the key blocks that hold the vis keys, four blocks (tiles
// 0-3) per pass. Block jb's B tile for dims 32c .. 32c + 31 is rows 16c .. 16c + 15 of its
// (hd / 2, 16, 2) array. Columns past vis hold whatever the padding keys give (not read).
void scores(int vis, int hd, const bf16_t* qs, const bf16_t* kp, float* S, int64_t lk) {
  const int blocks = int(round_up(vis, kKeys) / kKeys);
  const int64_t block_values = int64_t(kKeys) * hd;  // bf16 values of one key block
  const int64_t ld_s = lk * sizeof(float), ld_q = int64_t(hd) * sizeof(bf16_t);
  for (int jb = 0; jb < blocks; jb += 4) {
    const int nb = std::min(4, blocks - jb);
    const bf16_t* k0 = kp + jb * block_values;
    // The cache is cold (each layer's is written a step ago and then evicted by the others'),
    // and a tile load waits for its 16 lines: ask for the blocks two passes ahead now.
    prefetch(k0 + 8 * block_values, std::min(4, blocks - jb - 8) * block_values);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int c = 0; c < hd / kChunk; c++) {
      const int64_t at = int64_t(c) * (kChunk / 2) * 2 * kKeys;  // rows 16c.. of a block
      _tile_loadd(4, qs + c * kChunk, ld_q);
      _tile_loadd(5, k0 + at, 64);
      _tile_dpbf16ps(0, 4, 5);
      if (nb > 1) {
        _tile_loadd(6, k0 + block_values + at, 64);
        _tile_dpbf16ps(1, 4, 6);
      }
      if (nb > 2) {
        _tile_loadd(7, k0 + 2 * block_values + at, 64);
        _tile_dpbf16ps(2, 4, 7);
      }
      if (nb > 3) {
        _tile_loadd(5, k0 + 3 * block_values + at, 64);
        _tile_dpbf16ps(3, 4, 5);
      }
    }
    float* s0 = S + int64_t(jb) * kKeys;
    _tile_stored(0, s0, ld_s);
    if (nb > 1) _tile_stored(1, s0 + kKeys, ld_s);
    if (nb > 2) _tile_stored(2, s0 + 2 * kKeys, ld_s);
    if (nb > 3) _tile_stored(3, s0 + 3 * kKeys, ld_s);
  }
}

// Row i of S (vis scores) becomes its weights exp(s - max) rounded to bf16 in P (lk, the
// columns from vis on zero); returns 1 / their fp32 sum.
float softmax_row(int vis, int64_t lk, float* s, bf16_t* p) {
  __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int j = 0;
  for (; j + 16 <= vis; j += 16) best = _mm512_max_ps(best, _mm512_loadu_ps(s + j));
  if (j < vis) {
    const __mmask16 real = __mmask16((1u << (vis - j)) - 1);
    best = _mm512_mask_max_ps(best, real, best, _mm512_maskz_loadu_ps(real, s + j));
  }
  alignas(64) float lanes[16];  // (GCC 12's _mm512_reduce_max_ps trips -Wmaybe-uninitialized)
  _mm512_store_ps(lanes, best);
  const float mx = *std::max_element(lanes, lanes + 16);
  const float sum = exp_shifted(s, vis, mx);
  for (int64_t c = vis; c < lk; c++) s[c] = 0.0f;  // the padding keys weigh nothing
  for (int64_t c = 0; c < lk; c += 16) store_rounded(_mm512_loadu_ps(s + c), p + c);
  return 1.0f / sum;
}

// The slot pairs of the last, partial 32-slot chunk (from slot 32 * chunk to vis) copied into
// vt (16 pairs, hd, 2) with zeros after slot vis: the values there may be anything.
void pad_last_values(int vis, int chunk, int hd, const bf16_t* vp, bf16_t* vt) {
  const int first = chunk * kChunk / 2, pairs = (vis + 1) / 2 - first;
  const int64_t pair_values = 2 * int64_t(hd);
  std::memcpy(static_cast<void*>(vt), vp + first * pair_values, sizeof(bf16_t) * pairs * pair_values);
  std::memset(static_cast<void*>(vt + pairs * pair_values), 0,
              sizeof(bf16_t) * (kChunk / 2 - pairs) * pair_values);
  if (vis % 2 == 1) {  // the last pair's second slot is not one of the vis
    bf16_t* last = vt + (pairs - 1) * pair_values;
    for (int d = 0; d < hd; d++) last[2 * d + 1] = bf16_t{0};
  }
}

// Os (16, hd) fp32 = P Vp over the lk / 32 chunks of slots, 64 dims (tiles 0-3) per pass: A is
// P's 32 columns of the chunk, B for dims 16t .. 16t + 15 the chunk's 16 slot pairs at those
// dims (4 hd bytes a row). The last chunk reads vt when it is partial.
void weighted_values(int vis, int hd, const bf16_t* P, int64_t lk, const bf16_t* vp,
                     const bf16_t* vt, float* Os) {
  const int chunks = int(lk / kChunk);
  const bool partial = vis % kChunk != 0;
  const int64_t ld_p = lk * sizeof(bf16_t), ld_v = 4 * int64_t(hd), ld_o = hd * sizeof(float);
  for (int d0 = 0; d0 < hd; d0 += 64) {
    const int nt = std::min(4, (hd - d0) / 16);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int j = 0; j < chunks; j++) {
      const bf16_t* v = (partial && j == chunks - 1 ? vt : vp + int64_t(j) * kChunk * hd) + 2 * d0;
      if (d0 == 0 && j + 2 < chunks) prefetch(vp + int64_t(j + 2) * kChunk * hd, kChunk * hd);
      _tile_loadd(4, P + int64_t(j) * kChunk, ld_p);
      _tile_loadd(5, v, ld_v);
      _tile_dpbf16ps(0, 4, 5);
      if (nt > 1) {
        _tile_loadd(6, v + 32, ld_v);
        _tile_dpbf16ps(1, 4, 6);
      }
      if (nt > 2) {
        _tile_loadd(7, v + 64, ld_v);
        _tile_dpbf16ps(2, 4, 7);
      }
      if (nt > 3) {
        _tile_loadd(5, v + 96, ld_v);
        _tile_dpbf16ps(3, 4, 5);
      }
    }
    _tile_stored(0, Os + d0, ld_o);
    if (nt > 1) _tile_stored(1, Os + d0 + 16, ld_o);
    if (nt > 2) _tile_stored(2, Os + d0 + 32, ld_o);
    if (nt > 3) _tile_stored(3, Os + d0 + 48, ld_o);
  }
}

}  // namespace

// (The tile intrinsics in free functions: GCC 12 does not give the constructor and destructor
// of a class declared outside the pragma's region its target.)
AmxTileScope::AmxTileScope() { configure_tiles(); }

AmxTileScope::~AmxTileScope() { release_tiles(); }

void attend_bf16_amx(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                     const bf16_t* kp, const bf16_t* vp, float* scratch, float* o) {
  const AmxTileScope tiles;
  attend_bf16_amx_in_scope(m, vis, hd, scale, q, ld_q, kp, vp, scratch, o);
}

void attend_bf16_amx_in_scope(int m, int vis, int hd, float scale, const float* q,
                              int64_t ld_q, const bf16_t* kp, const bf16_t* vp, float* scratch,
                              float* o) {
  CB_CHECK(hd % kChunk == 0 && hd <= 128 && vis >= 1,
           "attend_bf16_amx: heads of " + std::to_string(hd) + " dims, " + std::to_string(vis) +
               " keys");
  const AmxScratch at(vis, hd);
  bf16_t* qs = reinterpret_cast<bf16_t*>(scratch + at.qs);
  float* S = scratch + at.s;
  bf16_t* P = reinterpret_cast<bf16_t*>(scratch + at.p);
  bf16_t* vt = reinterpret_cast<bf16_t*>(scratch + at.vt);
  float* Os = scratch + at.os;
  prefetch(kp, std::min<int64_t>(round_up(vis, kKeys), 8 * kKeys) * hd);  // what scores reads first
  prefetch(vp, std::min<int64_t>(round_up(vis, 2), 2 * kChunk) * hd);
  if (vis % kChunk != 0) pad_last_values(vis, int(at.lk / kChunk) - 1, hd, vp, vt);
  for (int i0 = 0; i0 < m; i0 += kRows) {
    const int mq = std::min(kRows, m - i0);
    load_queries(mq, hd, scale, q + i0 * ld_q, ld_q, qs);
    scores(vis, hd, qs, kp, S, at.lk);
    float inv_sum[kRows];
    for (int i = 0; i < kRows; i++) {
      bf16_t* pi = P + i * at.lk;
      if (i < mq) {
        inv_sum[i] = softmax_row(vis, at.lk, S + i * at.lk, pi);
      } else {
        std::memset(static_cast<void*>(pi), 0, sizeof(bf16_t) * at.lk);
      }
    }
    weighted_values(vis, hd, P, at.lk, vp, vt, Os);
    for (int i = 0; i < mq; i++) {
      const __m512 inv = _mm512_set1_ps(inv_sum[i]);
      float* oi = o + (i0 + i) * ld_q;
      for (int d = 0; d < hd; d += 16) {
        _mm512_storeu_ps(oi + d, _mm512_mul_ps(_mm512_loadu_ps(Os + i * hd + d), inv));
      }
    }
  }
}

}  // namespace cb

#pragma GCC diagnostic pop
#pragma GCC pop_options

#else

namespace cb {

AmxTileScope::AmxTileScope() { CB_FAIL("AMX tiles: needs an x86-64 CPU with AMX-BF16"); }

AmxTileScope::~AmxTileScope() = default;

void attend_bf16_amx_in_scope(int, int, int hd, float, const float*, int64_t, const bf16_t*,
                              const bf16_t*, float*, float*) {
  CB_FAIL("attend_bf16_amx: needs an x86-64 CPU with AMX-BF16 (heads of " + std::to_string(hd) +
          " dims)");
}

void attend_bf16_amx(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                     const bf16_t* kp, const bf16_t* vp, float* scratch, float* o) {
  attend_bf16_amx_in_scope(m, vis, hd, scale, q, ld_q, kp, vp, scratch, o);
}

}  // namespace cb

#endif
