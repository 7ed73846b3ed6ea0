// CudaConvOps l2 quantiser ops: row normalisation (the codebook at load), the nearest-code
// search, and the code lookup of decode_code.
//
// The search must pick exactly the reference's index, ties and near-ties included, so every
// quantity is computed as vq/conv_ops_ref.h computes it in float, in the same order, with
// explicitly rounded operations (__fmul_rn, __fadd_rn: no FMA contraction, which the
// reference's host build does not do either):
//   norm = max(sqrt(sum_d z_d^2), 1e-12); zn_d = z_d / norm; z2 = sum_d zn_d^2;
//   e2 = sum_d e_d^2; dot = sum_d zn_d e_d; dist = (z2 + e2) - 2 dot,
// and the smallest dist wins, the first index on a tie (a NaN never wins: index 0, as there).
//
// Thread mapping of the search: a block of 256 threads takes 32 positions (the lane is the
// position) and splits the codebook among its 8 warps (warp w scans codes w, w + 8, ...), so
// the 32 lanes of a warp read the same code row at the same time (one broadcast). Each lane
// keeps its first minimum over its codes in increasing order; warp 0 then merges the 8 in a
// fixed order with the tie rule and writes index, dist2 and zq. The codes' squared norms are
// computed once per call into scratch. Latent columns of up to 16 values live in registers;
// longer ones are re-read from z, as the reference does.
//
// quantize_l2_backward, in double per position (D is small: 8 in LlamaGen), in two kernels:
// - dz: one thread per position p = (b, i) (zn = z[b, :, i] / |z|, zq = codebook[index[p]],
//   g = dzq + 2 commit_scale (zn - zq)): dz = (g - zn (zn . g)) / |z| (the normalisation's
//   Jacobian, symmetric), or g / 1e-12 where |z| <= 1e-12 (the clamp);
// - dcodebook: one block per code row j; thread t scans the positions t, t + 256, ... in order
//   and, where index[p] == j, adds 2 codebook_scale (zq - zn) (zn recomputed from z, the same
//   doubles) to its own sums; the 256 sums meet in a fixed tree and the row gets its total once.
//   Which thread takes which position is fixed by the shape, so the sums are the same on every
//   run; no atomics. Each block reads the whole index (B HW int32), which is cheap against the
//   rest of a training step (16384 codes x 16384 positions: 1 GiB of L2-resident reads).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_ops_cuda.h"
#include "conv_reduce.cuh"
#include "grid_stride.cuh"
#include "stream.h"

namespace cb {
namespace {

using namespace grid_stride;  // kThreads, blocks_for, thread_index, thread_stride

// sum over j < d of x[j * stride]^2, in index order, without contraction.
__device__ inline float sum_squares(const float* x, int d, int64_t stride) {
  float s = 0.0f;
  for (int j = 0; j < d; j++) s = __fadd_rn(s, __fmul_rn(x[j * stride], x[j * stride]));
  return s;
}

// max(sqrt(sq), 1e-12) as std::max computes it in the reference: a NaN stays NaN (fmaxf would
// turn it into 1e-12).
__device__ inline float clamped_norm(float sq) {
  const float norm = sqrtf(sq);
  return norm < 1e-12f ? 1e-12f : norm;
}

// One thread per row (d is small: 8 for LlamaGen); y may alias x (each value is read before the
// thread writes it).
__global__ void l2_normalize_rows_kernel(int64_t n, int d,
                                         const float* x,  // (n, d)
                                         float* y) {      // (n, d)
  for (int64_t r = thread_index(); r < n; r += thread_stride()) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    const float norm = clamped_norm(sum_squares(xr, d, 1));
    for (int j = 0; j < d; j++) yr[j] = xr[j] / norm;
  }
}

__global__ void code_sq_norms_kernel(int K, int D,
                                     const float* codebook,  // (K, D)
                                     float* e2) {            // (K)
  for (int64_t j = thread_index(); j < K; j += thread_stride()) {
    e2[j] = sum_squares(codebook + j * D, D, 1);
  }
}

constexpr int kPositionsPerBlock = 32;             // one per lane
constexpr int kCodeSlices = kThreads / 32;         // one per warp
constexpr int kRegisterDepth = 16;                 // latent columns this long stay in registers

// kInRegisters: D <= kRegisterDepth, the normalised column is kept in registers; otherwise each
// value is recomputed as z_d / norm when it is needed (the same float either way).
template <bool kInRegisters>
__global__ void __launch_bounds__(kThreads)
    quantize_l2_kernel(int D, int64_t HW, int64_t positions,
                       const float* z,         // (B, D, HW)
                       const float* codebook,  // (K, D), rows normalised
                       const float* e2,        // (K) squared norms of the rows
                       int K,
                       int32_t* index,         // (B, HW)
                       float* zq,              // (B, D, HW) or null
                       float* dist2) {         // (B, HW) or null
  __shared__ float slice_dist[kCodeSlices][kPositionsPerBlock];
  __shared__ int slice_index[kCodeSlices][kPositionsPerBlock];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t p = (int64_t)blockIdx.x * kPositionsPerBlock + lane;  // b HW + i
  const bool active = p < positions;
  const int64_t b = active ? p / HW : 0, i = active ? p - b * HW : 0;
  const float* zcol = z + b * D * HW + i;  // (D) at stride HW

  float best = INFINITY;
  int best_index = 0;
  if (active) {
    const float norm = clamped_norm(sum_squares(zcol, D, HW));
    float zn[kInRegisters ? kRegisterDepth : 1];
    float z2 = 0.0f;
    if (kInRegisters) {
#pragma unroll
      for (int d = 0; d < kRegisterDepth; d++) {
        zn[d] = d < D ? zcol[d * HW] / norm : 0.0f;
        if (d < D) z2 = __fadd_rn(z2, __fmul_rn(zn[d], zn[d]));
      }
    } else {
      for (int d = 0; d < D; d++) {
        const float v = zcol[d * HW] / norm;
        z2 = __fadd_rn(z2, __fmul_rn(v, v));
      }
    }
    for (int j = warp; j < K; j += kCodeSlices) {
      const float* row = codebook + (int64_t)j * D;  // (D)
      float dot = 0.0f;
      if (kInRegisters) {
#pragma unroll
        for (int d = 0; d < kRegisterDepth; d++) {
          if (d < D) dot = __fadd_rn(dot, __fmul_rn(zn[d], row[d]));
        }
      } else {
        for (int d = 0; d < D; d++) dot = __fadd_rn(dot, __fmul_rn(zcol[d * HW] / norm, row[d]));
      }
      const float dist = __fsub_rn(__fadd_rn(z2, e2[j]), __fmul_rn(2.0f, dot));
      if (dist < best) {  // strict: within a slice the first index wins a tie
        best = dist;
        best_index = j;
      }
    }
  }
  slice_dist[warp][lane] = best;
  slice_index[warp][lane] = best_index;
  __syncthreads();
  if (warp != 0 || !active) return;

  // The smallest distance over the slices; on equal distances the smallest index.
  for (int w = 1; w < kCodeSlices; w++) {
    const float dw = slice_dist[w][lane];
    const int jw = slice_index[w][lane];
    if (dw < best || (dw == best && jw < best_index)) {
      best = dw;
      best_index = jw;
    }
  }
  index[p] = best_index;
  if (dist2 != nullptr) dist2[p] = best;
  if (zq != nullptr) {
    float* zq_col = zq + b * D * HW + i;  // (D) at stride HW
    const float* row = codebook + (int64_t)best_index * D;
    for (int d = 0; d < D; d++) zq_col[d * HW] = row[d];
  }
}

__device__ inline int32_t clamped_index(int32_t j, int K) {
  return j < 0 ? 0 : (j >= K ? K - 1 : j);  // callers check; this only keeps reads in bounds
}

// Output element e of (B, D, HW) is (b, d, i); it copies row clamp(index[b, i]) of the codebook.
__global__ void embed_codes_kernel(int D, int64_t HW, int64_t count,
                                   const int32_t* index,   // (B, HW)
                                   const float* codebook,  // (K, D)
                                   int K,
                                   float* zq) {            // (B, D, HW)
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int64_t i = e % HW, rest = e / HW;
    const int64_t d = rest % D, b = rest / D;
    zq[e] = codebook[(int64_t)clamped_index(index[b * HW + i], K) * D + d];
  }
}

// ---- backward ---------------------------------------------------------------------------------

// |z| of the column (D values at stride HW) in double; and the divisor of the normalisation,
// max(|z|, 1e-12) as the reference computes it (a NaN stays NaN).
__device__ inline double column_norm(const float* zcol, int D, int64_t HW) {
  double sq = 0.0;
  for (int d = 0; d < D; d++) sq += (double)zcol[d * HW] * (double)zcol[d * HW];
  return sqrt(sq);
}

__device__ inline double norm_divisor(double norm) { return norm < 1e-12 ? 1e-12 : norm; }

__global__ void quantize_l2_backward_dz_kernel(int D, int64_t HW, int64_t positions,
                                               const float* z,         // (B, D, HW)
                                               const float* codebook,  // (K, D)
                                               int K,
                                               const int32_t* index,   // (B, HW)
                                               const float* dzq,       // (B, D, HW)
                                               float commit_scale,
                                               float* dz) {            // (B, D, HW)
  const double commit2 = 2.0 * (double)commit_scale;
  for (int64_t p = thread_index(); p < positions; p += thread_stride()) {
    const int64_t b = p / HW, i = p - b * HW;
    const float* zc = z + b * D * HW + i;    // (D) at stride HW
    const float* gc = dzq + b * D * HW + i;  // (D) at stride HW
    float* out = dz + b * D * HW + i;        // (D) at stride HW
    const float* row = codebook + (int64_t)clamped_index(index[p], K) * D;  // (D)
    const double norm = column_norm(zc, D, HW), div = norm_divisor(norm);
    // Two passes over the column (zn and g recomputed, the same doubles): zn . g, then dz.
    double dot = 0.0;
    for (int d = 0; d < D; d++) {
      const double zn = (double)zc[d * HW] / div;
      const double g = (double)gc[d * HW] + commit2 * (zn - (double)row[d]);
      dot += zn * g;
    }
    const bool clamped = !(norm > 1e-12);
    for (int d = 0; d < D; d++) {
      const double zn = (double)zc[d * HW] / div;
      const double g = (double)gc[d * HW] + commit2 * (zn - (double)row[d]);
      out[d * HW] = (float)(clamped ? g / 1e-12 : (g - zn * dot) / norm);
    }
  }
}

constexpr int kRowDepth = 16;  // code-row values one scan of the positions sums (registers)

// Block j (blocks stride over the rows): dcodebook[j] += sum over p with index[p] == j of
// 2 codebook_scale (codebook[j] - zn[p]), kRowDepth values of the row per scan.
__global__ void __launch_bounds__(kThreads)
    quantize_l2_backward_codebook_kernel(int D, int64_t HW, int64_t positions,
                                         const float* z,         // (B, D, HW)
                                         const float* codebook,  // (K, D)
                                         int K,
                                         const int32_t* index,   // (B, HW)
                                         float codebook_scale,
                                         float* dcodebook) {     // (K, D), +=
  __shared__ double partial[kThreads / 32][kRowDepth];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const double cb2 = 2.0 * (double)codebook_scale;
  for (int64_t j = blockIdx.x; j < K; j += gridDim.x) {
    const float* row = codebook + j * D;  // (D)
    for (int d0 = 0; d0 < D; d0 += kRowDepth) {
      double acc[kRowDepth];
#pragma unroll
      for (int dd = 0; dd < kRowDepth; dd++) acc[dd] = 0.0;
      for (int64_t p = threadIdx.x; p < positions; p += kThreads) {
        if (clamped_index(index[p], K) != j) continue;
        const int64_t b = p / HW, i = p - b * HW;
        const float* zc = z + b * D * HW + i;  // (D) at stride HW
        const double div = norm_divisor(column_norm(zc, D, HW));
#pragma unroll
        for (int dd = 0; dd < kRowDepth; dd++) {
          const int d = d0 + dd;
          if (d < D) acc[dd] += cb2 * ((double)row[d] - (double)zc[d * HW] / div);
        }
      }
#pragma unroll
      for (int dd = 0; dd < kRowDepth; dd++) {
        const double v = conv_reduce::warp_sum(acc[dd]);
        if (lane == 0) partial[warp][dd] = v;
      }
      __syncthreads();
      const int d = d0 + (int)threadIdx.x;
      if (threadIdx.x < kRowDepth && d < D) {
        double total = 0.0;
        for (int w = 0; w < kThreads / 32; w++) total += partial[w][threadIdx.x];  // in order
        dcodebook[j * D + d] += (float)total;
      }
      __syncthreads();  // partial is read before the next scan overwrites it
    }
  }
}

}  // namespace

void CudaConvOps::l2_normalize_rows(int64_t n, int d, const float* x, float* y) {
  CB_CHECK(n >= 0 && d >= 0, "cuda l2_normalize_rows: invalid shape (n " + std::to_string(n) +
                                 ", d " + std::to_string(d) + ")");
  if (n == 0 || d == 0) return;
  l2_normalize_rows_kernel<<<blocks_for(n), kThreads, 0, launch_stream()>>>(n, d, x, y);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaConvOps::quantize_l2(int B, int D, int64_t HW,
                              const float* z,         // (B, D, HW)
                              const float* codebook,  // (K, D), rows normalised
                              int K,
                              int32_t* index,         // (B, HW)
                              float* zq,              // (B, D, HW) or null
                              float* dist2) {         // (B, HW) or null
  CB_CHECK(B >= 0 && D >= 0 && HW >= 0,
           "cuda quantize_l2: invalid shape (B " + std::to_string(B) + ", D " + std::to_string(D) +
               ", HW " + std::to_string(HW) + ")");
  const int64_t positions = (int64_t)B * HW;
  if (positions == 0) return;
  CB_CHECK(K >= 1, "cuda quantize_l2: the codebook is empty");
  const int64_t blocks = (positions + kPositionsPerBlock - 1) / kPositionsPerBlock;
  CB_CHECK(blocks < (int64_t(1) << 31), "cuda quantize_l2: too many positions");

  float* e2 = scratch_floats(K);  // (K)
  code_sq_norms_kernel<<<blocks_for(K), kThreads, 0, launch_stream()>>>(K, D, codebook, e2);
  CB_CUDA_CHECK_LAUNCH();
  if (D <= kRegisterDepth) {
    quantize_l2_kernel<true><<<(unsigned)blocks, kThreads, 0, launch_stream()>>>(
        D, HW, positions, z, codebook, e2, K, index, zq, dist2);
  } else {
    quantize_l2_kernel<false><<<(unsigned)blocks, kThreads, 0, launch_stream()>>>(
        D, HW, positions, z, codebook, e2, K, index, zq, dist2);
  }
  CB_CUDA_CHECK_LAUNCH();
}

void CudaConvOps::embed_codes(int B, int D, int64_t HW,
                              const int32_t* index,   // (B, HW)
                              const float* codebook,  // (K, D)
                              int K,
                              float* zq) {            // (B, D, HW)
  CB_CHECK(B >= 0 && D >= 0 && HW >= 0,
           "cuda embed_codes: invalid shape (B " + std::to_string(B) + ", D " + std::to_string(D) +
               ", HW " + std::to_string(HW) + ")");
  const int64_t count = (int64_t)B * D * HW;
  if (count == 0) return;
  CB_CHECK(K >= 1, "cuda embed_codes: the codebook is empty");
  embed_codes_kernel<<<blocks_for(count), kThreads, 0, launch_stream()>>>(D, HW, count, index,
                                                                          codebook, K, zq);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaConvOps::quantize_l2_backward(int B, int D, int64_t HW,
                                       const float* z,         // (B, D, HW)
                                       const float* codebook,  // (K, D), rows normalised
                                       int K,
                                       const int32_t* index,  // (B, HW)
                                       const float* dzq,      // (B, D, HW)
                                       float codebook_scale, float commit_scale,
                                       float* dz,           // (B, D, HW)
                                       float* dcodebook) {  // (K, D), +=
  CB_CHECK(B >= 0 && D >= 0 && HW >= 0,
           "cuda quantize_l2_backward: invalid shape (B " + std::to_string(B) + ", D " +
               std::to_string(D) + ", HW " + std::to_string(HW) + ")");
  const int64_t positions = (int64_t)B * HW;
  if (positions == 0 || D == 0) return;
  CB_CHECK(K >= 1, "cuda quantize_l2_backward: the codebook is empty");
  quantize_l2_backward_dz_kernel<<<blocks_for(positions), kThreads, 0, launch_stream()>>>(
      D, HW, positions, z, codebook, K, index, dzq, commit_scale, dz);
  CB_CUDA_CHECK_LAUNCH();
  const unsigned rows = (unsigned)std::min<int64_t>(K, kMaxBlocks);
  quantize_l2_backward_codebook_kernel<<<rows, kThreads, 0, launch_stream()>>>(
      D, HW, positions, z, codebook, K, index, codebook_scale, dcodebook);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace cb
