// CudaModelOps attention: blockwise-causal flash attention in fp32 SIMT kernels (no cuBLAS, no
// dense mask). Slot t of a sequence sees keys [0, visible_end[t]); a tile of query rows walks the
// key tiles up to the largest visible_end of its rows, and each row masks keys past its own end.
//
// Every kernel runs 256 threads as a 16 x 16 grid (tx, ty) and works on shared-memory tiles of
// BQ query rows and BK keys with the head size padded to HD = 32, 64 or 128 (zero columns past
// hd, so any hd <= 128 works). A thread owns rows ty + 16a and keys (or columns) tx + 16b of a
// tile, so the 16 threads of a row are 16 lanes of one warp and row reductions are shuffles.
//   forward   per (b, h, query tile): S = scale Q K^T, online softmax (running max m and sum l),
//             O = P V rescaled as m grows; lse = m + log l. Also the cached (decode) attention,
//             with small query tiles when there are few query rows.
//   backward  delta = rowsum(dO * O) first; then two kernels that recompute P = exp(S - lse):
//             key-tile-major for dK, dV (a block owns BK keys and loops over the query tiles
//             that see any of them) and query-tile-major for dQ. Each output element is summed
//             by one thread in a fixed order: deterministic, no atomics.
// Shared tiles are padded against bank conflicts: Q/K/V tiles read down a column by 16 threads
// (rows tx + 16j) have row stride HD + 1; score tiles written by the two rows of a warp have row
// stride BK + 16, which puts those rows in opposite halves of the 32 banks.
#include <algorithm>
#include <cmath>
#include <string>

#include "../error.h"
#include "check.h"
#include "model_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

constexpr int kThreads = 256;  // 16 x 16
constexpr int TX = 16, TY = 16;
constexpr unsigned kFullMask = 0xffffffffu;

// Reductions over the 16 threads of a row (lanes differing in their low 4 bits).
__device__ inline float row_max16(float x) {
  for (int o = 8; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}
__device__ inline float row_sum16(float x) {
  for (int o = 8; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}

// visible_end clamped to the keys there are, so a bad entry cannot read outside the tensors.
__device__ inline int clamp_vis(int vis, int keys) { return min(max(vis, 0), keys); }

// Loads `rows` rows of a head (hd values at row stride ld) into a (rows_pad, HD) shared tile of
// row stride sld; rows past `rows` and columns past hd are zero.
template <int HD>
__device__ inline void load_tile(float* dst, int sld, int rows_pad, const float* src, int64_t ld,
                                 int rows, int hd) {
  for (int e = threadIdx.x; e < rows_pad * HD; e += kThreads) {
    const int r = e / HD, d = e % HD;
    dst[r * sld + d] = (r < rows && d < hd) ? src[(int64_t)r * ld + d] : 0.0f;
  }
}

// ---- forward (also the cached attention) -----------------------------------------------------

struct FwdArgs {
  const float* q;             // (B, Tq, H*hd)
  const float* k;             // batch b's rows at k + b * kv_stride, row stride H*hd
  const float* v;             // as k
  float* out;                 // (B, Tq, H*hd)
  float* lse;                 // (B, H, Tq), or null
  const int32_t* visible_end; // (Tq)
  int64_t kv_stride;          // floats between the key rows of consecutive batches
  int Tq, keys, H, hd;        // keys: rows available per batch (visible_end is clamped to it)
  float scale;
};

constexpr size_t fwd_smem_floats(int HD, int BQ, int BK) {
  return size_t(BQ) * (HD + 1) + size_t(BK) * (HD + 1) + size_t(BK) * HD + size_t(BQ) * (BK + 16);
}

// grid (B*H, query tiles); the last query tiles (the most keys under blockwise causality) are
// issued first.
template <int HD, int BQ, int BK>
__global__ void __launch_bounds__(kThreads) attention_fwd(FwdArgs a) {
  constexpr int RA = BQ / TY;  // query rows per thread: ty + 16a
  constexpr int RB = BK / TX;  // keys per thread in a score tile: tx + 16b
  constexpr int RC = HD / TX;  // output columns per thread: tx + 16c
  constexpr int LD = HD + 1, PLD = BK + 16;
  extern __shared__ float smem[];
  float* Qs = smem;            // (BQ, LD)
  float* Ks = Qs + BQ * LD;    // (BK, LD)
  float* Vs = Ks + BK * LD;    // (BK, HD)
  float* Ps = Vs + BK * HD;    // (BQ, PLD) probabilities of the current key tile
  __shared__ int s_vis[BQ];

  const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
  const int b = blockIdx.x / a.H, h = blockIdx.x % a.H;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * BQ;
  const int64_t C = (int64_t)a.H * a.hd;
  const float* qb = a.q + ((int64_t)b * a.Tq + q0) * C + (int64_t)h * a.hd;  // (BQ, hd) at C
  const float* kb = a.k + b * a.kv_stride + (int64_t)h * a.hd;               // (keys, hd) at C
  const float* vb = a.v + b * a.kv_stride + (int64_t)h * a.hd;
  const int rows = min(BQ, a.Tq - q0);

  for (int i = tid; i < BQ; i += kThreads) {
    s_vis[i] = i < rows ? clamp_vis(a.visible_end[q0 + i], a.keys) : 0;
  }
  load_tile<HD>(Qs, LD, BQ, qb, C, rows, a.hd);
  __syncthreads();
  int kmax = 0;  // keys of this tile: the largest visible_end of its rows
  for (int i = 0; i < BQ; i++) kmax = max(kmax, s_vis[i]);

  int vis[RA];
  float m[RA], l[RA], acc[RA][RC];  // l: this thread's share of the row sum (its keys only)
#pragma unroll
  for (int i = 0; i < RA; i++) {
    vis[i] = s_vis[ty + TY * i];
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < RC; c++) acc[i][c] = 0.0f;
  }

  for (int k0 = 0; k0 < kmax; k0 += BK) {
    __syncthreads();  // the previous tile's Ks, Vs and Ps are no longer read
    const int nk = min(BK, kmax - k0);
    for (int e = tid; e < BK * HD; e += kThreads) {
      const int r = e / HD, d = e % HD;
      const bool ok = r < nk && d < a.hd;
      const int64_t g = (int64_t)(k0 + r) * C + d;
      Ks[r * LD + d] = ok ? kb[g] : 0.0f;
      Vs[r * HD + d] = ok ? vb[g] : 0.0f;
    }
    __syncthreads();

    float s[RA][RB];
#pragma unroll
    for (int i = 0; i < RA; i++) {
#pragma unroll
      for (int j = 0; j < RB; j++) s[i][j] = 0.0f;
    }
#pragma unroll 4
    for (int d = 0; d < HD; d++) {
      float qv[RA], kv[RB];
#pragma unroll
      for (int i = 0; i < RA; i++) qv[i] = Qs[(ty + TY * i) * LD + d];
#pragma unroll
      for (int j = 0; j < RB; j++) kv[j] = Ks[(tx + TX * j) * LD + d];
#pragma unroll
      for (int i = 0; i < RA; i++) {
#pragma unroll
        for (int j = 0; j < RB; j++) s[i][j] += qv[i] * kv[j];
      }
    }

    // Online softmax: the row max grows to mnew, earlier sums and outputs shrink by alpha.
#pragma unroll
    for (int i = 0; i < RA; i++) {
      float tmax = -INFINITY;
#pragma unroll
      for (int j = 0; j < RB; j++) {
        const int key = k0 + tx + TX * j;
        s[i][j] = key < vis[i] ? s[i][j] * a.scale : -INFINITY;
        tmax = fmaxf(tmax, s[i][j]);
      }
      const float mnew = fmaxf(m[i], row_max16(tmax));
      // mnew = -inf: the row has seen no key yet; everything stays zero.
      const bool none = mnew == -INFINITY;
      const float alpha = none ? 1.0f : expf(m[i] - mnew);
      float psum = 0.0f;
#pragma unroll
      for (int j = 0; j < RB; j++) {
        const float p = none ? 0.0f : expf(s[i][j] - mnew);
        Ps[(ty + TY * i) * PLD + tx + TX * j] = p;
        psum += p;
      }
      l[i] = l[i] * alpha + psum;
      m[i] = mnew;
#pragma unroll
      for (int c = 0; c < RC; c++) acc[i][c] *= alpha;
    }
    __syncthreads();

#pragma unroll 4
    for (int j = 0; j < nk; j++) {
      float pv[RA], vv[RC];
#pragma unroll
      for (int i = 0; i < RA; i++) pv[i] = Ps[(ty + TY * i) * PLD + j];
#pragma unroll
      for (int c = 0; c < RC; c++) vv[c] = Vs[j * HD + tx + TX * c];
#pragma unroll
      for (int i = 0; i < RA; i++) {
#pragma unroll
        for (int c = 0; c < RC; c++) acc[i][c] += pv[i] * vv[c];
      }
    }
  }

  float* ob = a.out + ((int64_t)b * a.Tq + q0) * C + (int64_t)h * a.hd;  // (BQ, hd) at C
#pragma unroll
  for (int i = 0; i < RA; i++) {
    const float lt = row_sum16(l[i]);  // every lane of the warp takes part
    const int r = ty + TY * i;
    if (r >= rows) continue;
    // No visible key: zero output and an empty log-sum-exp (-inf).
    const float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
#pragma unroll
    for (int c = 0; c < RC; c++) {
      const int d = tx + TX * c;
      if (d < a.hd) ob[(int64_t)r * C + d] = acc[i][c] * inv;
    }
    if (a.lse != nullptr && tx == 0) {
      a.lse[((int64_t)b * a.H + h) * a.Tq + q0 + r] = lt > 0.0f ? m[i] + logf(lt) : -INFINITY;
    }
  }
}

template <int HD, int BQ, int BK>
void launch_fwd(int B, const FwdArgs& a) {
  const size_t smem = fwd_smem_floats(HD, BQ, BK) * sizeof(float);
  auto kernel = attention_fwd<HD, BQ, BK>;
  CB_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  const dim3 grid((unsigned)(B * a.H), (unsigned)((a.Tq + BQ - 1) / BQ));
  kernel<<<grid, kThreads, smem, launch_stream()>>>(a);
  CB_CUDA_CHECK_LAUNCH();
}

// Query tiles of 64 rows, or 16 / 32 when there are fewer query rows (decoding one block).
template <int HD>
void launch_fwd_rows(int B, const FwdArgs& a) {
  if (a.Tq <= 16) {
    launch_fwd<HD, 16, 64>(B, a);
  } else if (a.Tq <= 32) {
    launch_fwd<HD, 32, 64>(B, a);
  } else {
    launch_fwd<HD, 64, 64>(B, a);
  }
}

// ---- backward -------------------------------------------------------------------------------

// delta (B, H, T) = rowsum(dO * O) per head: one warp per (b, t, h) row of hd values.
__global__ void attention_delta(int64_t rows, int T, int H, int hd, const float* out,
                                const float* dout, float* delta) {
  const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;  // (b*T + t)*H + h
  const int lane = threadIdx.x % 32;
  if (w >= rows) return;  // whole warps only: blockDim is a multiple of 32
  const float* o = out + w * hd;
  const float* d = dout + w * hd;
  float sum = 0.0f;
  for (int c = lane; c < hd; c += 32) sum += o[c] * d[c];
  for (int s = 16; s > 0; s >>= 1) sum += __shfl_xor_sync(kFullMask, sum, s);
  if (lane == 0) {
    const int h = (int)(w % H);
    const int64_t bt = w / H;
    const int t = (int)(bt % T);
    const int64_t b = bt / T;
    delta[(b * H + h) * T + t] = sum;
  }
}

struct BwdArgs {
  const float *q, *k, *v, *dout;  // (B, T, H*hd)
  const float* lse;                // (B, H, T)
  const float* delta;              // (B, H, T)
  const int32_t* visible_end;      // (T)
  float *dq, *dk, *dv;             // (B, T, H*hd)
  int T, H, hd;
  float scale;
};

constexpr size_t bwd_smem_floats(int HD, int BQ, int BK, int score_tiles) {
  return 2 * size_t(BQ) * (HD + 1) + 2 * size_t(BK) * (HD + 1) +
         size_t(score_tiles) * BQ * (BK + 16);
}

// S = Q K^T and dP = dO V^T for the tile, rows ty + 16i, keys tx + 16j, then
// P = exp(scale S - lse) on visible keys (0 elsewhere) and dS = P (dP - delta).
template <int HD, int BQ, int BK>
__device__ inline void bwd_scores(const float* Qs, const float* dOs, const float* Ks,
                                  const float* Vs, const float* s_lse, const float* s_delta,
                                  const int* s_vis, int k0, float scale, float (&p)[BQ / TY][BK / TX],
                                  float (&ds)[BQ / TY][BK / TX]) {
  constexpr int RA = BQ / TY, RB = BK / TX, LD = HD + 1;
  const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
  float s[RA][RB], dp[RA][RB];
#pragma unroll
  for (int i = 0; i < RA; i++) {
#pragma unroll
    for (int j = 0; j < RB; j++) s[i][j] = dp[i][j] = 0.0f;
  }
#pragma unroll 4
  for (int d = 0; d < HD; d++) {
    float qv[RA], ov[RA], kv[RB], vv[RB];
#pragma unroll
    for (int i = 0; i < RA; i++) {
      qv[i] = Qs[(ty + TY * i) * LD + d];
      ov[i] = dOs[(ty + TY * i) * LD + d];
    }
#pragma unroll
    for (int j = 0; j < RB; j++) {
      kv[j] = Ks[(tx + TX * j) * LD + d];
      vv[j] = Vs[(tx + TX * j) * LD + d];
    }
#pragma unroll
    for (int i = 0; i < RA; i++) {
#pragma unroll
      for (int j = 0; j < RB; j++) {
        s[i][j] += qv[i] * kv[j];
        dp[i][j] += ov[i] * vv[j];
      }
    }
  }
#pragma unroll
  for (int i = 0; i < RA; i++) {
    const int r = ty + TY * i;
#pragma unroll
    for (int j = 0; j < RB; j++) {
      const int key = k0 + tx + TX * j;
      p[i][j] = key < s_vis[r] ? expf(s[i][j] * scale - s_lse[r]) : 0.0f;
      ds[i][j] = p[i][j] * (dp[i][j] - s_delta[r]);
    }
  }
}

// Loads the query-side tiles of rows [q0, q0 + BQ): Q, dO, lse, delta and visible_end.
template <int HD, int BQ>
__device__ inline void load_query_side(const BwdArgs& a, int bh, int q0, float* Qs, float* dOs,
                                       float* s_lse, float* s_delta, int* s_vis) {
  const int b = bh / a.H, h = bh % a.H;
  const int64_t C = (int64_t)a.H * a.hd;
  const int64_t base = ((int64_t)b * a.T + q0) * C + (int64_t)h * a.hd;
  const int rows = min(BQ, a.T - q0);
  load_tile<HD>(Qs, HD + 1, BQ, a.q + base, C, rows, a.hd);
  load_tile<HD>(dOs, HD + 1, BQ, a.dout + base, C, rows, a.hd);
  for (int i = threadIdx.x; i < BQ; i += kThreads) {
    const bool ok = i < rows;
    s_vis[i] = ok ? clamp_vis(a.visible_end[q0 + i], a.T) : 0;
    // Rows past T or with nothing visible are masked by s_vis; 0 keeps the products finite.
    s_lse[i] = ok && s_vis[i] > 0 ? a.lse[(int64_t)bh * a.T + q0 + i] : 0.0f;
    s_delta[i] = ok ? a.delta[(int64_t)bh * a.T + q0 + i] : 0.0f;
  }
}

// dK, dV of BK keys of one (b, h): grid (B*H, key tiles). Loops over every query tile that has
// a row seeing one of these keys; dV += P^T dO, dK += scale dS^T Q.
template <int HD, int BQ, int BK>
__global__ void __launch_bounds__(kThreads) attention_bwd_dkdv(BwdArgs a) {
  constexpr int RA = BQ / TY, RB = BK / TX;
  constexpr int RK = BK / TY;  // keys per thread when accumulating: ty + 16i
  constexpr int RC = HD / TX;  // columns per thread: tx + 16c
  constexpr int LD = HD + 1, PLD = BK + 16;
  extern __shared__ float smem[];
  float* Ks = smem;            // (BK, LD)
  float* Vs = Ks + BK * LD;    // (BK, LD)
  float* Qs = Vs + BK * LD;    // (BQ, LD)
  float* dOs = Qs + BQ * LD;   // (BQ, LD)
  float* Ps = dOs + BQ * LD;   // (BQ, PLD)
  float* dSs = Ps + BQ * PLD;  // (BQ, PLD)
  __shared__ float s_lse[BQ], s_delta[BQ];
  __shared__ int s_vis[BQ];

  const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H;
  const int k0 = blockIdx.y * BK;
  const int64_t C = (int64_t)a.H * a.hd;
  const int64_t kbase = ((int64_t)b * a.T + k0) * C + (int64_t)h * a.hd;
  const int nk = min(BK, a.T - k0);
  load_tile<HD>(Ks, LD, BK, a.k + kbase, C, nk, a.hd);
  load_tile<HD>(Vs, LD, BK, a.v + kbase, C, nk, a.hd);

  float dk[RK][RC], dv[RK][RC];
#pragma unroll
  for (int i = 0; i < RK; i++) {
#pragma unroll
    for (int c = 0; c < RC; c++) dk[i][c] = dv[i][c] = 0.0f;
  }

  for (int q0 = 0; q0 < a.T; q0 += BQ) {
    // Skip query tiles none of whose rows sees key k0 or later. The barrier also ends the
    // previous iteration's reads of the shared tiles.
    const bool sees = tid < BQ && q0 + tid < a.T && clamp_vis(a.visible_end[q0 + tid], a.T) > k0;
    if (!__syncthreads_or(sees)) continue;
    load_query_side<HD, BQ>(a, bh, q0, Qs, dOs, s_lse, s_delta, s_vis);
    __syncthreads();

    float p[RA][RB], ds[RA][RB];
    bwd_scores<HD, BQ, BK>(Qs, dOs, Ks, Vs, s_lse, s_delta, s_vis, k0, a.scale, p, ds);
#pragma unroll
    for (int i = 0; i < RA; i++) {
#pragma unroll
      for (int j = 0; j < RB; j++) {
        Ps[(ty + TY * i) * PLD + tx + TX * j] = p[i][j];
        dSs[(ty + TY * i) * PLD + tx + TX * j] = ds[i][j];
      }
    }
    __syncthreads();

    const int nq = min(BQ, a.T - q0);
#pragma unroll 2
    for (int r = 0; r < nq; r++) {
      float pv[RK], sv[RK], ov[RC], qv[RC];
#pragma unroll
      for (int i = 0; i < RK; i++) {
        pv[i] = Ps[r * PLD + ty + TY * i];
        sv[i] = dSs[r * PLD + ty + TY * i];
      }
#pragma unroll
      for (int c = 0; c < RC; c++) {
        ov[c] = dOs[r * LD + tx + TX * c];
        qv[c] = Qs[r * LD + tx + TX * c];
      }
#pragma unroll
      for (int i = 0; i < RK; i++) {
#pragma unroll
        for (int c = 0; c < RC; c++) {
          dv[i][c] += pv[i] * ov[c];
          dk[i][c] += sv[i] * qv[c];
        }
      }
    }
  }

  // Every key row of the tile is written (zero when no query sees it): dk, dv are overwritten.
#pragma unroll
  for (int i = 0; i < RK; i++) {
    const int r = ty + TY * i;
    if (r >= nk) continue;
#pragma unroll
    for (int c = 0; c < RC; c++) {
      const int d = tx + TX * c;
      if (d >= a.hd) continue;
      a.dk[kbase + (int64_t)r * C + d] = dk[i][c] * a.scale;
      a.dv[kbase + (int64_t)r * C + d] = dv[i][c];
    }
  }
}

// dQ of BQ query rows of one (b, h): grid (B*H, query tiles), the last tiles first. Walks the
// key tiles up to the tile's largest visible_end; dQ += scale dS K.
template <int HD, int BQ, int BK>
__global__ void __launch_bounds__(kThreads) attention_bwd_dq(BwdArgs a) {
  constexpr int RA = BQ / TY, RB = BK / TX, RC = HD / TX;
  constexpr int LD = HD + 1, PLD = BK + 16;
  extern __shared__ float smem[];
  float* Qs = smem;            // (BQ, LD)
  float* dOs = Qs + BQ * LD;   // (BQ, LD)
  float* Ks = dOs + BQ * LD;   // (BK, LD)
  float* Vs = Ks + BK * LD;    // (BK, LD)
  float* dSs = Vs + BK * LD;   // (BQ, PLD)
  __shared__ float s_lse[BQ], s_delta[BQ];
  __shared__ int s_vis[BQ];

  const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * BQ;
  const int64_t C = (int64_t)a.H * a.hd;
  const int64_t head = (int64_t)b * a.T * C + (int64_t)h * a.hd;  // row 0 of (b, h)
  load_query_side<HD, BQ>(a, bh, q0, Qs, dOs, s_lse, s_delta, s_vis);
  __syncthreads();
  int kmax = 0;
  for (int i = 0; i < BQ; i++) kmax = max(kmax, s_vis[i]);

  float dq[RA][RC];
#pragma unroll
  for (int i = 0; i < RA; i++) {
#pragma unroll
    for (int c = 0; c < RC; c++) dq[i][c] = 0.0f;
  }

  for (int k0 = 0; k0 < kmax; k0 += BK) {
    __syncthreads();  // the previous tile's Ks, Vs and dSs are no longer read
    const int nk = min(BK, kmax - k0);
    load_tile<HD>(Ks, LD, BK, a.k + head + (int64_t)k0 * C, C, nk, a.hd);
    load_tile<HD>(Vs, LD, BK, a.v + head + (int64_t)k0 * C, C, nk, a.hd);
    __syncthreads();

    float p[RA][RB], ds[RA][RB];
    bwd_scores<HD, BQ, BK>(Qs, dOs, Ks, Vs, s_lse, s_delta, s_vis, k0, a.scale, p, ds);
#pragma unroll
    for (int i = 0; i < RA; i++) {
#pragma unroll
      for (int j = 0; j < RB; j++) dSs[(ty + TY * i) * PLD + tx + TX * j] = ds[i][j];
    }
    __syncthreads();

#pragma unroll 4
    for (int j = 0; j < nk; j++) {
      float sv[RA], kv[RC];
#pragma unroll
      for (int i = 0; i < RA; i++) sv[i] = dSs[(ty + TY * i) * PLD + j];
#pragma unroll
      for (int c = 0; c < RC; c++) kv[c] = Ks[j * LD + tx + TX * c];
#pragma unroll
      for (int i = 0; i < RA; i++) {
#pragma unroll
        for (int c = 0; c < RC; c++) dq[i][c] += sv[i] * kv[c];
      }
    }
  }

  const int rows = min(BQ, a.T - q0);
#pragma unroll
  for (int i = 0; i < RA; i++) {
    const int r = ty + TY * i;
    if (r >= rows) continue;
#pragma unroll
    for (int c = 0; c < RC; c++) {
      const int d = tx + TX * c;
      if (d < a.hd) a.dq[head + (int64_t)(q0 + r) * C + d] = dq[i][c] * a.scale;
    }
  }
}

// Tiles of the backward: 64 x 64, or 32 query rows at hd 128 to stay near 120 KB of shared
// memory per block (A100 allows 163 KB).
template <int HD>
void launch_bwd(int B, const BwdArgs& a) {
  constexpr int BQ = HD > 64 ? 32 : 64, BK = 64;
  const dim3 block(kThreads);
  {
    const size_t smem = bwd_smem_floats(HD, BQ, BK, 2) * sizeof(float);
    auto kernel = attention_bwd_dkdv<HD, BQ, BK>;
    CB_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const dim3 grid((unsigned)(B * a.H), (unsigned)((a.T + BK - 1) / BK));
    kernel<<<grid, block, smem, launch_stream()>>>(a);
    CB_CUDA_CHECK_LAUNCH();
  }
  {
    const size_t smem = bwd_smem_floats(HD, BQ, BK, 1) * sizeof(float);
    auto kernel = attention_bwd_dq<HD, BQ, BK>;
    CB_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const dim3 grid((unsigned)(B * a.H), (unsigned)((a.T + BQ - 1) / BQ));
    kernel<<<grid, block, smem, launch_stream()>>>(a);
    CB_CUDA_CHECK_LAUNCH();
  }
}

// The head size the kernels are instantiated for: 32, 64 or 128.
int padded_head(int hd) {
  CB_CHECK(hd >= 1 && hd <= 128,
           "cuda attention: head size " + std::to_string(hd) + " is outside [1, 128]");
  return hd <= 32 ? 32 : hd <= 64 ? 64 : 128;
}

void check_grid(int B, int H, int rows) {
  CB_CHECK((int64_t)B * H <= 0x7fffffff && rows <= 65535 * 16,
           "cuda attention: B*H = " + std::to_string((int64_t)B * H) + ", " +
               std::to_string(rows) + " rows exceed the launch grid");
}

}  // namespace

void CudaModelOps::attention(int B, int T, int H, int hd, const float* q, const float* k,
                             const float* v, const int32_t* visible_end, float* out,
                             float* lse) {
  if (B == 0 || T == 0 || H == 0) return;
  check_grid(B, H, T);
  FwdArgs a{q, k, v, out, lse, visible_end, (int64_t)T * H * hd, T, T, H, hd,
            1.0f / std::sqrt((float)hd)};
  switch (padded_head(hd)) {
    case 32: launch_fwd<32, 64, 64>(B, a); break;
    case 64: launch_fwd<64, 64, 64>(B, a); break;
    default: launch_fwd<128, 64, 64>(B, a); break;
  }
}

void CudaModelOps::attention_cached(int B, int Tq, int H, int hd, const float* q,
                                    const float* k, const float* v, int64_t kv_batch_stride,
                                    const int32_t* visible_end, float* out) {
  if (B == 0 || Tq == 0 || H == 0) return;
  check_grid(B, H, Tq);
  const int64_t C = (int64_t)H * hd;
  const int64_t keys = kv_batch_stride / C;  // rows each batch's cache holds
  FwdArgs a{q, k, v, out, nullptr, visible_end, kv_batch_stride, Tq,
            (int)std::min<int64_t>(keys, 0x7fffffff), H, hd, 1.0f / std::sqrt((float)hd)};
  switch (padded_head(hd)) {
    case 32: launch_fwd_rows<32>(B, a); break;
    case 64: launch_fwd_rows<64>(B, a); break;
    default: launch_fwd_rows<128>(B, a); break;
  }
}

void CudaModelOps::attention_backward(int B, int T, int H, int hd, const float* q,
                                      const float* k, const float* v,
                                      const int32_t* visible_end, const float* out,
                                      const float* lse, const float* dout, float* dq, float* dk,
                                      float* dv) {
  if (B == 0 || T == 0 || H == 0) return;
  check_grid(B, H, T);
  const int head = padded_head(hd);
  const int64_t rows = (int64_t)B * T * H;  // (b, t, h) head rows
  float* delta = scratch_floats(rows);      // (B, H, T)
  {
    const int threads = 256, per_block = threads / 32;
    const int64_t blocks = (rows + per_block - 1) / per_block;
    attention_delta<<<(unsigned)blocks, threads, 0, launch_stream()>>>(
        rows, T, H, hd, out, dout, delta);
    CB_CUDA_CHECK_LAUNCH();
  }
  BwdArgs a{q, k, v, dout, lse, delta, visible_end, dq, dk, dv, T, H, hd,
            1.0f / std::sqrt((float)hd)};
  switch (head) {
    case 32: launch_bwd<32>(B, a); break;
    case 64: launch_bwd<64>(B, a); break;
    default: launch_bwd<128>(B, a); break;
  }
}

}  // namespace cb
