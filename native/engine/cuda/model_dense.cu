// CudaModelOps dense layers: linear (y = x w^T + b) and its backward, all three products
// through one GEMM launcher C (m, n) = alpha op(A) op(B) + beta C (+ bias per column),
// row-major, in one of two precisions:
// - fp32: a SIMT kernel, 64x64 block tiles stepping k by 16 through shared memory, each of the
//   256 threads holding a 4x4 micro-tile (rows ty + 16a, columns tx + 16b);
// - bf16: tensor cores via WMMA m16n16k16, 128x128 block tiles stepping k by 16, 8 warps of
//   32x64 each; the float operands are rounded to bf16 while the tiles are staged in shared
//   memory (the next tile is loaded into registers while the current one is multiplied), fp32
//   accumulation and output.
// Edges are zero-padded while loading and masked while storing, so any sizes work (odd ones,
// n = 1, k = 0). When the output has few tiles and k is long (the weight gradient dw = dy^T x
// over many rows), k is split into chunks whose partial products go to scratch and are then
// summed in chunk order: no atomics, so every product is deterministic. The split depends only
// on the shapes. db is a two-pass column sum (column_sums.h).
//
// Mixed precision (mixed_ops.h): the bf16 kernel also reads bf16 operands directly (the bf16
// weight copy, the bf16 activations), at half the bytes; an fp32 operand is rounded as above,
// so a product is the same whichever way its operands arrive.
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "bf16.cuh"
#include "check.h"
#include "column_sums.h"
#include "model_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

namespace wmma = nvcuda::wmma;

// One GEMM (or one split-k pass of it): C = alpha op(A) op(B) + beta C + bias, where
// op(A)(i, l) = trans_a ? a[l*lda + i] : a[i*lda + l] and op(B)(l, j) = trans_b ?
// b[j*ldb + l] : b[l*ldb + j]. Block z of the grid covers k in [z k_split, (z+1) k_split) and
// writes at c + z * c_split_stride.
// AT and BT (the kernels' template arguments) are the element types of a and b.
struct GemmParams {
  int64_t m, n, k;
  float alpha;
  const void* a;  // op(A): (m, k) of AT
  int64_t lda;
  const void* b;  // op(B): (k, n) of BT
  int64_t ldb;
  float beta;
  float* c;  // (m, n) at row stride ldc
  int64_t ldc;
  const float* bias;  // (n) or null
  int64_t k_split, c_split_stride;
};

// The epilogue of one element: C = alpha acc + beta C + bias (C is not read when beta is 0,
// so it may hold anything).
__device__ inline void store_c(const GemmParams& p, float* c, int64_t row, int64_t col,
                               float acc) {
  float v = p.alpha * acc;
  if (p.beta != 0.0f) v += p.beta * c[row * p.ldc + col];
  if (p.bias != nullptr) v += p.bias[col];
  c[row * p.ldc + col] = v;
}

// ---- fp32 SIMT --------------------------------------------------------------------------------

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

template <bool TA, bool TB>
__global__ void __launch_bounds__(kThreads) gemm_fp32_kernel(GemmParams p) {
  const float* pa = static_cast<const float*>(p.a);
  const float* pb = static_cast<const float*>(p.b);
  __shared__ float as[kBK][kBM + 1];  // as[l][i] = op(A)(m0 + i, k0 + l)
  __shared__ float bs[kBK][kBN + 1];  // bs[l][j] = op(B)(k0 + l, n0 + j)
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = (int64_t)blockIdx.x * kBM, n0 = (int64_t)blockIdx.y * kBN;
  const int64_t kb = (int64_t)blockIdx.z * p.k_split, ke = min(p.k, kb + p.k_split);
  float* c = p.c + blockIdx.z * p.c_split_stride;
  float acc[4][4] = {};
  for (int64_t k0 = kb; k0 < ke; k0 += kBK) {
    // 1024 values per tile, 4 per thread; consecutive threads read consecutive addresses
    // (along k for a plain A, along m for a transposed one; likewise for B).
#pragma unroll
    for (int s = 0; s < 4; s++) {
      const int idx = tid + kThreads * s;
      const int i = TA ? idx % kBM : idx / kBK, l = TA ? idx / kBM : idx % kBK;
      const int64_t gi = m0 + i, gl = k0 + l;
      float v = 0.0f;
      if (gi < p.m && gl < ke) v = TA ? pa[gl * p.lda + gi] : pa[gi * p.lda + gl];
      as[l][i] = v;
    }
#pragma unroll
    for (int s = 0; s < 4; s++) {
      const int idx = tid + kThreads * s;
      const int j = TB ? idx / kBK : idx % kBN, l = TB ? idx % kBK : idx / kBN;
      const int64_t gj = n0 + j, gl = k0 + l;
      float v = 0.0f;
      if (gj < p.n && gl < ke) v = TB ? pb[gj * p.ldb + gl] : pb[gl * p.ldb + gj];
      bs[l][j] = v;
    }
    __syncthreads();
#pragma unroll
    for (int l = 0; l < kBK; l++) {
      float av[4], bv[4];
#pragma unroll
      for (int a = 0; a < 4; a++) av[a] = as[l][ty + 16 * a];
#pragma unroll
      for (int b = 0; b < 4; b++) bv[b] = bs[l][tx + 16 * b];
#pragma unroll
      for (int a = 0; a < 4; a++) {
#pragma unroll
        for (int b = 0; b < 4; b++) acc[a][b] += av[a] * bv[b];
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int a = 0; a < 4; a++) {
    const int64_t row = m0 + ty + 16 * a;
    if (row >= p.m) continue;
#pragma unroll
    for (int b = 0; b < 4; b++) {
      const int64_t col = n0 + tx + 16 * b;
      if (col < p.n) store_c(p, c, row, col, acc[a][b]);
    }
  }
}

// ---- bf16 tensor cores ------------------------------------------------------------------------

constexpr int kTM = 128, kTN = 128, kTK = 16;
// Padding: WMMA wants leading dimensions that are multiples of 8 and fragment starts (every
// 16th row, every 16th column) 32-byte aligned; both hold for kTK + 8 and kTN + 8.
constexpr int kPad = 8;
constexpr int kALd = kTK + kPad, kBLd = kTN + kPad;
constexpr int kLoads = kTM * kTK / kThreads;  // values per thread per tile (A and B alike)
static_assert(kTM * kTK == kTK * kTN, "A and B tiles are loaded with the same pattern");

__device__ inline float as_float(float v) { return v; }
__device__ inline float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <bool TA, bool TB, typename AT, typename BT>
__global__ void __launch_bounds__(kThreads) gemm_bf16_kernel(GemmParams p) {
  const AT* pa = static_cast<const AT*>(p.a);
  const BT* pb = static_cast<const BT*>(p.b);
  __shared__ __align__(32) __nv_bfloat16 as[kTM][kALd];  // as[i][l] = op(A)(m0 + i, k0 + l)
  __shared__ __align__(32) __nv_bfloat16 bs[kTK][kBLd];  // bs[l][j] = op(B)(k0 + l, n0 + j)
  __shared__ __align__(32) float stage[kThreads / 32][16 * 16];  // per warp, for the epilogue
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / 2, wn = warp % 2;  // the warp's tile: rows 32 wm .. +32, cols 64 wn .. +64
  const int64_t m0 = (int64_t)blockIdx.x * kTM, n0 = (int64_t)blockIdx.y * kTN;
  const int64_t kb = (int64_t)blockIdx.z * p.k_split, ke = min(p.k, kb + p.k_split);
  float* c = p.c + blockIdx.z * p.c_split_stride;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][4];
#pragma unroll
  for (int a = 0; a < 2; a++) {
#pragma unroll
    for (int b = 0; b < 4; b++) wmma::fill_fragment(acc[a][b], 0.0f);
  }

  // Tile element s of this thread: for A (i, l), for B (l, j); consecutive threads read
  // consecutive addresses. Out-of-range values (rows, columns, or k past this split) are 0.
  float ra[kLoads], rb[kLoads];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int s = 0; s < kLoads; s++) {
      const int idx = tid + kThreads * s;
      const int i = TA ? idx % kTM : idx / kTK, l = TA ? idx / kTM : idx % kTK;
      const int64_t gi = m0 + i, gl = k0 + l;
      ra[s] = 0.0f;
      if (gi < p.m && gl < ke) ra[s] = as_float(TA ? pa[gl * p.lda + gi] : pa[gi * p.lda + gl]);
    }
#pragma unroll
    for (int s = 0; s < kLoads; s++) {
      const int idx = tid + kThreads * s;
      const int j = TB ? idx / kTK : idx % kTN, l = TB ? idx % kTK : idx / kTN;
      const int64_t gj = n0 + j, gl = k0 + l;
      rb[s] = 0.0f;
      if (gj < p.n && gl < ke) rb[s] = as_float(TB ? pb[gj * p.ldb + gl] : pb[gl * p.ldb + gj]);
    }
  };
  auto stash = [&]() {  // registers -> shared, rounded to bf16 (exact for bf16 operands)
#pragma unroll
    for (int s = 0; s < kLoads; s++) {
      const int idx = tid + kThreads * s;
      const int i = TA ? idx % kTM : idx / kTK, l = TA ? idx / kTM : idx % kTK;
      as[i][l] = __float2bfloat16(ra[s]);
    }
#pragma unroll
    for (int s = 0; s < kLoads; s++) {
      const int idx = tid + kThreads * s;
      const int j = TB ? idx / kTK : idx % kTN, l = TB ? idx % kTK : idx / kTN;
      bs[l][j] = __float2bfloat16(rb[s]);
    }
  };

  load(kb);
  stash();
  __syncthreads();
  for (int64_t k0 = kb; k0 < ke; k0 += kTK) {
    const bool more = k0 + kTK < ke;
    if (more) load(k0 + kTK);  // in flight while the tensor cores work on this tile
#pragma unroll
    for (int kk = 0; kk < kTK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb[4];
#pragma unroll
      for (int a = 0; a < 2; a++) wmma::load_matrix_sync(fa[a], &as[32 * wm + 16 * a][kk], kALd);
#pragma unroll
      for (int b = 0; b < 4; b++) wmma::load_matrix_sync(fb[b], &bs[kk][64 * wn + 16 * b], kBLd);
#pragma unroll
      for (int a = 0; a < 2; a++) {
#pragma unroll
        for (int b = 0; b < 4; b++) wmma::mma_sync(acc[a][b], fa[a], fb[b], acc[a][b]);
      }
    }
    __syncthreads();  // everyone is done reading the tile
    if (more) {
      stash();
      __syncthreads();
    }
  }

  // Each 16x16 accumulator goes through the warp's staging tile, then 8 values per lane to C.
  float* st = stage[warp];
#pragma unroll
  for (int a = 0; a < 2; a++) {
#pragma unroll
    for (int b = 0; b < 4; b++) {
      wmma::store_matrix_sync(st, acc[a][b], 16, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int s = 0; s < 8; s++) {
        const int e = lane + 32 * s;
        const int64_t row = m0 + 32 * wm + 16 * a + e / 16;
        const int64_t col = n0 + 64 * wn + 16 * b + e % 16;
        if (row < p.m && col < p.n) store_c(p, c, row, col, st[e]);
      }
      __syncwarp();  // the staging tile is overwritten next
    }
  }
}

// ---- bf16 tensor cores, vectorised ----------------------------------------------------------
// The same product as gemm_bf16_kernel, bit for bit (the same bf16 roundings, the same 16-deep
// mma steps in increasing k), for operands whose contiguous dimension loads in whole vectors of
// 4 (vector_loads_fit): each thread loads 4 such vectors of each operand per 32-deep k step, as
// bf16 in registers while the tensor cores work, into the second of two shared-memory stages (one
// barrier a step). A tile keeps the operand's own contiguous dimension innermost (so both the
// loads and the shared stores are whole vectors); the fragments read it as row_major or
// col_major. 8 warps of 64x32. (The first H200 profile of gemm_bf16_kernel at 4096^3: 252
// registers, one block an SM, 11% of the SM's throughput, latency-bound on its scalar loads;
// this kernel needs 170 registers without spills, and spilled ~200 bytes a thread when held to
// 128 for two blocks an SM, so it stays at one.)
constexpr int kVK = 32;  // k per step
constexpr int kSplitAlignForVectors = 32;  // = kSplitAlign below (checked there)
constexpr int kVLdK = kVK + kPad;  // a k-contiguous tile (128 rows of kVK)
constexpr int kVLdMN = kTM + kPad;  // an m- or n-contiguous tile (kVK rows of 128)
constexpr int kVTile = kTM * kVLdK;  // values of the larger of the two tile shapes
static_assert(kVTile >= kVK * kVLdMN, "tile buffer size");
constexpr int kVVectors = kTM * kVK / 4 / kThreads;  // vectors of 4 per thread per operand

// 4 values at p (aligned as vector_loads_fit checked) as 4 bf16 in two 32-bit words.
__device__ inline uint2 load4_bf16(const float* p) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  uint2 r;
  memcpy(&r.x, &lo, sizeof r.x);  // the two bf16 of each pair as one word
  memcpy(&r.y, &hi, sizeof r.y);
  return r;
}
__device__ inline uint2 load4_bf16(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint2*>(p);
}

// One operand's tile: op(X)(r, l) for the block's 128 rows r (m for A, n for B) and k0 + l, from
// x stored k-contiguous (x[(r0 + r) ld + k0 + l]) or not (x[(k0 + l) ld + r0 + r]). Vector s of
// this thread: 4 consecutive values along the contiguous dimension; outside the product: 0.
template <bool KContig, typename T>
struct VectorTile {
  const T* x;
  int64_t ld, rows, r0;  // rows: m or n
  uint2 v[kVVectors];

  __device__ void load(int64_t k0, int64_t ke, int tid) {
#pragma unroll
    for (int s = 0; s < kVVectors; s++) {
      const int e = tid + kThreads * s;
      const int r = KContig ? e / (kVK / 4) : (e % (kTM / 4)) * 4;
      const int l = KContig ? (e % (kVK / 4)) * 4 : e / (kTM / 4);
      const int64_t gr = r0 + r, gl = k0 + l;
      v[s] = make_uint2(0u, 0u);
      if (gr < rows && gl < ke) v[s] = load4_bf16(KContig ? x + gr * ld + gl : x + gl * ld + gr);
    }
  }
  __device__ void store(__nv_bfloat16* tile, int tid) const {
#pragma unroll
    for (int s = 0; s < kVVectors; s++) {
      const int e = tid + kThreads * s;
      const int r = KContig ? e / (kVK / 4) : (e % (kTM / 4)) * 4;
      const int l = KContig ? (e % (kVK / 4)) * 4 : e / (kTM / 4);
      *reinterpret_cast<uint2*>(tile + (KContig ? r * kVLdK + l : l * kVLdMN + r)) = v[s];
    }
  }
};

// Fragment (row r0.., k kk..) of a tile: A's rows are m, B's are n.
template <bool KContig>
__device__ inline const __nv_bfloat16* tile_at(const __nv_bfloat16* tile, int r, int kk) {
  return KContig ? tile + r * kVLdK + kk : tile + kk * kVLdMN + r;
}

template <bool TA, bool TB, typename AT, typename BT>
__global__ void __launch_bounds__(kThreads) gemm_bf16_vector_kernel(GemmParams p) {
  // A is k-contiguous unless transposed; B is k-contiguous when transposed.
  constexpr bool kAK = !TA, kBK = TB;
  using LayoutA = std::conditional_t<kAK, wmma::row_major, wmma::col_major>;
  using LayoutB = std::conditional_t<kBK, wmma::col_major, wmma::row_major>;
  // Two stages of A and B tiles; the epilogue's per-warp staging reuses them.
  __shared__ __align__(128) __nv_bfloat16 tiles[2][2][kVTile];
  static_assert(sizeof(tiles) >= kThreads / 32 * 256 * sizeof(float), "epilogue staging");
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / 4, wn = warp % 4;  // the warp's tile: rows 64 wm .. +64, cols 32 wn .. +32
  const int64_t m0 = (int64_t)blockIdx.x * kTM, n0 = (int64_t)blockIdx.y * kTN;
  const int64_t kb = (int64_t)blockIdx.z * p.k_split, ke = min(p.k, kb + p.k_split);
  float* c = p.c + blockIdx.z * p.c_split_stride;
  VectorTile<kAK, AT> ta{static_cast<const AT*>(p.a), p.lda, p.m, m0, {}};
  VectorTile<kBK, BT> tb{static_cast<const BT*>(p.b), p.ldb, p.n, n0, {}};

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
  for (int a = 0; a < 4; a++) {
#pragma unroll
    for (int b = 0; b < 2; b++) wmma::fill_fragment(acc[a][b], 0.0f);
  }
  ta.load(kb, ke, tid);
  tb.load(kb, ke, tid);
  ta.store(tiles[0][0], tid);
  tb.store(tiles[0][1], tid);
  __syncthreads();
  int stage = 0;
  for (int64_t k0 = kb; k0 < ke; k0 += kVK) {
    const bool more = k0 + kVK < ke;
    if (more) {  // in flight while the tensor cores work on this stage
      ta.load(k0 + kVK, ke, tid);
      tb.load(k0 + kVK, ke, tid);
    }
    const __nv_bfloat16* as = tiles[stage][0];
    const __nv_bfloat16* bs = tiles[stage][1];
#pragma unroll
    for (int kk = 0; kk < kVK; kk += 16) {
      // B's two fragments held, A's loaded one at a time (fewer live registers).
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LayoutB> fb[2];
#pragma unroll
      for (int b = 0; b < 2; b++) {
        wmma::load_matrix_sync(fb[b], tile_at<kBK>(bs, 32 * wn + 16 * b, kk),
                               kBK ? kVLdK : kVLdMN);
      }
#pragma unroll
      for (int a = 0; a < 4; a++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LayoutA> fa;
        wmma::load_matrix_sync(fa, tile_at<kAK>(as, 64 * wm + 16 * a, kk), kAK ? kVLdK : kVLdMN);
#pragma unroll
        for (int b = 0; b < 2; b++) wmma::mma_sync(acc[a][b], fa, fb[b], acc[a][b]);
      }
    }
    if (more) {  // the other stage was last read before the previous step's barrier
      ta.store(tiles[stage ^ 1][0], tid);
      tb.store(tiles[stage ^ 1][1], tid);
    }
    __syncthreads();
    stage ^= 1;
  }

  // Each 16x16 accumulator goes through the warp's staging tile, then 8 values per lane to C.
  float* st = reinterpret_cast<float*>(&tiles[0][0][0]) + warp * 256;
#pragma unroll
  for (int a = 0; a < 4; a++) {
#pragma unroll
    for (int b = 0; b < 2; b++) {
      wmma::store_matrix_sync(st, acc[a][b], 16, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int s = 0; s < 8; s++) {
        const int e = lane + 32 * s;
        const int64_t row = m0 + 64 * wm + 16 * a + e / 16;
        const int64_t col = n0 + 32 * wn + 16 * b + e % 16;
        if (row < p.m && col < p.n) store_c(p, c, row, col, st[e]);
      }
      __syncwarp();  // the staging tile is overwritten next
    }
  }
}

// Whether gemm_bf16_vector_kernel can read both operands: along each one's contiguous
// dimension, the extent, the row stride and the start are whole vectors of 4 values (a vector
// is then wholly inside the product or wholly outside), and splits of k start at multiples of 4.
template <typename T>
bool vectors_fit(const void* x, int64_t contiguous_extent, int64_t ld) {
  return contiguous_extent % 4 == 0 && ld % 4 == 0 &&
         reinterpret_cast<uintptr_t>(x) % (4 * sizeof(T)) == 0;
}
template <typename AT, typename BT>
bool vector_loads_fit(bool ta, bool tb, const GemmParams& p) {
  static_assert(kSplitAlignForVectors % 4 == 0, "splits start at vector boundaries");
  return vectors_fit<AT>(p.a, ta ? p.m : p.k, p.lda) && vectors_fit<BT>(p.b, tb ? p.k : p.n, p.ldb);
}

// ---- split-k --------------------------------------------------------------------------------

// C = alpha * (sum of the split partials in split order) + beta C + bias.
__global__ void splitk_reduce_kernel(GemmParams p, int splits,
                                     const float* part) {  // (splits, m, n)
  const int64_t count = p.m * p.n;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < count;
       e += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.0f;
    for (int z = 0; z < splits; z++) s += part[z * count + e];
    store_c(p, p.c, e / p.n, e % p.n, s);
  }
}

// ---- the launcher -----------------------------------------------------------------------------

constexpr int64_t kTargetBlocks = 264;       // about two waves of blocks on a large GPU
constexpr int64_t kMinSplitK = 256;          // k per split, at least
constexpr int64_t kMaxSplits = 32;
constexpr int64_t kSplitAlign = 32;  // a multiple of kBK and kTK
static_assert(kSplitAlign % kBK == 0 && kSplitAlign % kTK == 0 && kSplitAlign % kVK == 0 &&
                  kSplitAlign == kSplitAlignForVectors,
              "split alignment");
constexpr int64_t kMaxSplitScratch = int64_t(1) << 26;  // floats of partials, at most

struct GemmPlan {
  int64_t splits = 1, k_split = 0;
  int64_t scratch = 0;  // floats of scratch the split partials need
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Depends only on the precision and the shapes, so a product is summed the same way each run.
GemmPlan plan_gemm(MatmulPrecision precision, int64_t m, int64_t n, int64_t k) {
  GemmPlan plan;
  const bool tc = precision == MatmulPrecision::bf16;
  const int64_t tiles = ceil_div(m, tc ? kTM : kBM) * ceil_div(n, tc ? kTN : kBN);
  int64_t splits = 1;
  if (tiles < kTargetBlocks && k >= 2 * kMinSplitK) {
    splits = std::min({ceil_div(kTargetBlocks, tiles), k / kMinSplitK, kMaxSplits,
                       kMaxSplitScratch / std::max<int64_t>(1, m * n)});
    splits = std::max<int64_t>(1, splits);
  }
  // Splits start at multiples of the k tiles of both kernels; none is empty.
  plan.k_split = splits > 1 ? ceil_div(ceil_div(k, splits), kSplitAlign) * kSplitAlign
                            : std::max<int64_t>(k, 1);
  plan.splits = ceil_div(std::max<int64_t>(k, 1), plan.k_split);
  plan.scratch = plan.splits > 1 ? plan.splits * m * n : 0;
  return plan;
}

// AT and BT: float for both precisions, __nv_bfloat16 (mixed precision) only with bf16.
template <typename AT, typename BT>
void launch_tiles(MatmulPrecision precision, bool ta, bool tb, const GemmParams& p,
                  int64_t splits) {
  const bool tc = precision == MatmulPrecision::bf16;
  const int64_t gx = ceil_div(p.m, tc ? kTM : kBM), gy = ceil_div(p.n, tc ? kTN : kBN);
  CB_CHECK(gx < (int64_t(1) << 31) && gy <= 65535 && splits <= 65535,
           "cuda gemm: too large (m " + std::to_string(p.m) + ", n " + std::to_string(p.n) + ")");
  const dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)splits);
  if (tc && vector_loads_fit<AT, BT>(ta, tb, p)) {
    if (!ta && !tb) gemm_bf16_vector_kernel<false, false, AT, BT><<<grid, kThreads, 0, launch_stream()>>>(p);
    if (!ta && tb) gemm_bf16_vector_kernel<false, true, AT, BT><<<grid, kThreads, 0, launch_stream()>>>(p);
    if (ta && !tb) gemm_bf16_vector_kernel<true, false, AT, BT><<<grid, kThreads, 0, launch_stream()>>>(p);
    if (ta && tb) gemm_bf16_vector_kernel<true, true, AT, BT><<<grid, kThreads, 0, launch_stream()>>>(p);
  } else if (tc) {
    if (!ta && !tb) gemm_bf16_kernel<false, false, AT, BT><<<grid, kThreads, 0, launch_stream()>>>(
        p);
    if (!ta && tb) gemm_bf16_kernel<false, true, AT, BT><<<grid, kThreads, 0, launch_stream()>>>(p);
    if (ta && !tb) gemm_bf16_kernel<true, false, AT, BT><<<grid, kThreads, 0, launch_stream()>>>(p);
    if (ta && tb) gemm_bf16_kernel<true, true, AT, BT><<<grid, kThreads, 0, launch_stream()>>>(p);
  } else if constexpr (std::is_same<AT, float>::value && std::is_same<BT, float>::value) {
    if (!ta && !tb) gemm_fp32_kernel<false, false><<<grid, kThreads, 0, launch_stream()>>>(p);
    if (!ta && tb) gemm_fp32_kernel<false, true><<<grid, kThreads, 0, launch_stream()>>>(p);
    if (ta && !tb) gemm_fp32_kernel<true, false><<<grid, kThreads, 0, launch_stream()>>>(p);
    if (ta && tb) gemm_fp32_kernel<true, true><<<grid, kThreads, 0, launch_stream()>>>(p);
  } else {
    CB_FAIL("cuda gemm: bf16 operands need the bf16 matmul precision");
  }
  CB_CUDA_CHECK_LAUNCH();
}

// C (m, n) = alpha op(A) op(B) + beta C + bias (bias (n) or null), row-major; `scratch` holds
// plan.scratch floats (plan from plan_gemm with the same precision and shapes).
template <typename AT, typename BT>
void gemm(MatmulPrecision precision, const GemmPlan& plan, bool ta, bool tb, int64_t m,
          int64_t n, int64_t k, float alpha, const AT* a, int64_t lda, const BT* b,
          int64_t ldb, float beta, float* c, int64_t ldc, const float* bias, float* scratch) {
  if (m <= 0 || n <= 0) return;
  GemmParams p{m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, plan.k_split, 0};
  if (plan.splits == 1) {
    launch_tiles<AT, BT>(precision, ta, tb, p, 1);
    return;
  }
  // Each split writes its plain product (alpha 1, beta 0, no bias) densely into scratch.
  GemmParams part = p;
  part.alpha = 1.0f;
  part.beta = 0.0f;
  part.bias = nullptr;
  part.c = scratch;
  part.ldc = n;
  part.c_split_stride = m * n;
  launch_tiles<AT, BT>(precision, ta, tb, part, plan.splits);
  const int64_t blocks = std::min<int64_t>(ceil_div(m * n, kThreads), int64_t(1) << 16);
  splitk_reduce_kernel<<<(unsigned)blocks, kThreads, 0, launch_stream()>>>(
      p, (int)plan.splits, scratch);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <typename XT, typename WT>
void CudaModelOps::linear_typed(int64_t n, int in, int out, const XT* x, const WT* w,
                                const float* b, float* y) {
  if (n <= 0 || out <= 0) return;
  // y (n, out) = x (n, in) . w^T, w stored (out, in).
  const GemmPlan plan = plan_gemm(precision_, n, out, in);
  float* scratch = scratch_floats(plan.scratch);
  gemm(precision_, plan, false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out, b, scratch);
}

template <typename XT, typename WT>
void CudaModelOps::linear_backward_typed(int64_t n, int in, int out, const XT* x, const WT* w,
                                         const float* dy, float* dx, float* dw, float* db) {
  if (n <= 0 || in < 0 || out < 0) return;
  // dx (n, in) = dy (n, out) . w (out, in); dw (out, in) += dy^T . x (dy stored (n, out)).
  const GemmPlan dx_plan = plan_gemm(precision_, n, in, out);
  const GemmPlan dw_plan = plan_gemm(precision_, out, in, n);
  const int64_t gemm_scratch =
      std::max(dx != nullptr ? dx_plan.scratch : 0, dw != nullptr ? dw_plan.scratch : 0);
  const int64_t chunks = column_chunks(n);
  const int64_t db_scratch = db != nullptr ? chunks * out : 0;
  // One request for everything (growing it later would wait for the queued kernels); the
  // products run one after another on the stream, so they share the first part.
  float* scratch = scratch_floats(gemm_scratch + db_scratch);
  if (dx != nullptr) {
    gemm(precision_, dx_plan, false, false, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in,
         nullptr, scratch);
  }
  if (dw != nullptr) {
    gemm(precision_, dw_plan, true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in,
         nullptr, scratch);
  }
  if (db != nullptr && out > 0) {
    column_sums_add(n, out, dy, out, db, scratch + gemm_scratch);  // part: (chunks, out)
  }
}

void CudaModelOps::linear(int64_t n, int in, int out, const float* x, const float* w,
                          const float* b, float* y) {
  linear_typed(n, in, out, x, w, b, y);
}

void CudaModelOps::linear_backward(int64_t n, int in, int out, const float* x, const float* w,
                                   const float* dy, float* dx, float* dw, float* db) {
  linear_backward_typed(n, in, out, x, w, dy, dx, dw, db);
}

void CudaModelOps::linear_mixed(int64_t n, int in, int out, const float* x, const bf16_t* w,
                                const float* b, float* y) {
  linear_typed(n, in, out, x, device_bf16(w), b, y);
}

void CudaModelOps::linear_mixed(int64_t n, int in, int out, const bf16_t* x, const bf16_t* w,
                                const float* b, float* y) {
  linear_typed(n, in, out, device_bf16(x), device_bf16(w), b, y);
}

void CudaModelOps::linear_backward_mixed(int64_t n, int in, int out, const float* x,
                                         const bf16_t* w, const float* dy, float* dx,
                                         float* dw, float* db) {
  linear_backward_typed(n, in, out, x, device_bf16(w), dy, dx, dw, db);
}

void CudaModelOps::linear_backward_mixed(int64_t n, int in, int out, const bf16_t* x,
                                         const bf16_t* w, const float* dy, float* dx,
                                         float* dw, float* db) {
  linear_backward_typed(n, in, out, device_bf16(x), device_bf16(w), dy, dx, dw, db);
}

}  // namespace cb
