// CudaConvOps::spatial_attention: single-head attention over the HW positions of each image, in
// three launches per chunk of images, with the (HW, HW) weights of each image in scratch:
//   1. scores[b] (HW_i, HW_j) = q[b]^T (HW_i, C) . k[b] (C, HW_j) / sqrt(C)   (tile product)
//   2. softmax of every row of scores over j (max subtracted), in place     (one warp per row)
//   3. out[b] (C, HW_i) = v[b] (C, HW_j) . scores[b]^T (HW_j, HW_i)          (tile product)
// fp32 throughout, the same steps as the reference. At the tokenizer's 16x16 level (HW 256)
// an image's weights are 256 KiB, so a chunk holds hundreds of images.
//
// Thread mapping of the tile products (conv_tile.cuh): blockIdx.x walks the 64-column tiles of
// the product, blockIdx.y its 64-row tiles, blockIdx.z the image within the chunk. Staging
// follows each operand's contiguous direction so consecutive threads read consecutive
// addresses: q and k are contiguous along positions (rows of q^T, columns of k), v along its
// depth j, and scores^T along its depth j as well. Each thread fetches its 4 + 4 values of the
// next slice into registers while the block multiplies the current one.
//
// spatial_attention_backward recomputes P (the softmax weights) per chunk of images the same way
// (launches 1 and 2), then, with dS = P (dP - rowsum(dP P)) the softmax's gradient at the scores:
//   dv[b] (C, HW_j)    = dout[b] (C, HW_i) . P (HW_i, HW_j)
//   dP (HW_i, HW_j)    = dout[b]^T (HW_i, C) . v[b] (C, HW_j)
//   dS                 = P (dP - rowsum(dP P))               in place of dP (one warp per row)
//   dq[b] (C, HW_i)    = scale k[b] (C, HW_j) . dS^T (HW_j, HW_i)
//   dk[b] (C, HW_j)    = scale q[b] (C, HW_i) . dS (HW_i, HW_j)
// Every output value is one thread's plain sum in depth order (the tile product): no reduction
// across threads, so the results are the same on every run. P and dS share the scratch, half
// each, so a chunk holds half as many images as the forward's.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_ops_cuda.h"
#include "conv_reduce.cuh"
#include "conv_tile.cuh"
#include "grid_stride.cuh"
#include "stream.h"

namespace cb {
namespace {

// C (M, N) = alpha A (M, K) . B (K, N) for each image z of a chunk, with
//   A(i, l) = a[z a_batch + i a_row + l a_depth],  B(l, j) = b[z b_batch + l b_depth + j b_col],
//   C(i, j) = c[z c_batch + i c_row + j].
struct BatchedProduct {
  int64_t M, N, K;
  float alpha;
  const float* a;
  int64_t a_batch, a_row, a_depth;
  const float* b;
  int64_t b_batch, b_depth, b_col;
  float* c;
  int64_t c_batch, c_row;
};

// kAAlongM: A is contiguous along its rows i (else along its depth l); kBAlongN: B is
// contiguous along its columns j (else along its depth l). Each operand is staged across
// (conv_tile.cuh) when it is contiguous along its rows or columns, else along the depth.
template <bool kAAlongM, bool kBAlongN>
__global__ void __launch_bounds__(conv_tile::kThreads) batched_product_kernel(BatchedProduct p) {
  using namespace conv_tile;
  __shared__ Slices s;
  const int tid = threadIdx.x;
  const int64_t m0 = tile_row0(), n0 = tile_col0();
  const int64_t z = blockIdx.z;
  const float* a = p.a + z * p.a_batch;
  const float* b = p.b + z * p.b_batch;
  float* c = p.c + z * p.c_batch;

  auto fetch = [&](int64_t k0, float (&ra)[kLoads], float (&rb)[kLoads]) {
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const Staged sa = staged<!kAAlongM>(tid, t), sb = staged<!kBAlongN>(tid, t);
      const int64_t gi = m0 + sa.line, gl = k0 + sa.depth;
      ra[t] = (gi < p.M && gl < p.K) ? a[gi * p.a_row + gl * p.a_depth] : 0.0f;
      const int64_t gj = n0 + sb.line, glb = k0 + sb.depth;
      rb[t] = (gj < p.N && glb < p.K) ? b[glb * p.b_depth + gj * p.b_col] : 0.0f;
    }
  };

  float acc[4][4] = {};
  accumulate<!kAAlongM, !kBAlongN>(s, 0, p.K, fetch, acc);
  for_each_result(m0, n0, p.M, p.N, acc, [&](int64_t i) {
    return [&, i](int64_t j, float v) { c[i * p.c_row + j] = v * p.alpha; };
  });
}

constexpr int kSoftmaxThreads = 256;
constexpr int kSoftmaxWarps = kSoftmaxThreads / 32;

using conv_reduce::warp_max;
using conv_reduce::warp_sum;

// Each row of s (rows, len) becomes its softmax: exp(x - max) / sum. One warp per row (rows are
// warp-uniform, so every shuffle sees all 32 lanes), the lanes striding along the row.
__global__ void softmax_rows_kernel(int64_t rows, int64_t len, float* s) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = (int64_t)blockIdx.x * kSoftmaxWarps + threadIdx.x / 32; r < rows;
       r += (int64_t)gridDim.x * kSoftmaxWarps) {
    float* row = s + r * len;  // (len)
    float m = -INFINITY;
    for (int64_t j = lane; j < len; j += 32) m = fmaxf(m, row[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int64_t j = lane; j < len; j += 32) {
      const float e = expf(row[j] - m);
      row[j] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    for (int64_t j = lane; j < len; j += 32) row[j] = row[j] / sum;
  }
}

// Each row of ds (rows, len), dP on entry, becomes P (dP - sum_j dP P) with P the same row of p:
// the softmax's backward. One warp per row as softmax_rows_kernel; the row sum in double, each
// lane's share in index order, then the warp's butterfly.
__global__ void softmax_backward_rows_kernel(int64_t rows, int64_t len,
                                             const float* p,  // (rows, len)
                                             float* ds) {     // (rows, len)
  const int lane = threadIdx.x % 32;
  for (int64_t r = (int64_t)blockIdx.x * kSoftmaxWarps + threadIdx.x / 32; r < rows;
       r += (int64_t)gridDim.x * kSoftmaxWarps) {
    const float* pr = p + r * len;  // (len)
    float* dr = ds + r * len;       // (len)
    double dot = 0.0;
    for (int64_t j = lane; j < len; j += 32) dot += (double)dr[j] * (double)pr[j];
    const float c = (float)warp_sum(dot);
    for (int64_t j = lane; j < len; j += 32) dr[j] = pr[j] * (dr[j] - c);
  }
}

template <bool kAAlongM, bool kBAlongN>
void launch_product(const BatchedProduct& p, int64_t images) {
  batched_product_kernel<kAAlongM, kBAlongN>
      <<<conv_tile::tile_grid(p.M, p.N, images), conv_tile::kThreads, 0, launch_stream()>>>(p);
  CB_CUDA_CHECK_LAUNCH();
}

// Scores of at most this many floats per chunk (128 MiB), and at least one image.
constexpr int64_t kMaxScoreFloats = int64_t(1) << 25;

unsigned softmax_blocks(int64_t rows) {
  return (unsigned)std::min<int64_t>((rows + kSoftmaxWarps - 1) / kSoftmaxWarps,
                                     grid_stride::kMaxBlocks);
}

std::string attention_shape(int B, int C, int64_t HW) {
  return "B " + std::to_string(B) + ", C " + std::to_string(C) + ", HW " + std::to_string(HW);
}

}  // namespace

void CudaConvOps::spatial_attention(int B, int C, int64_t HW,
                                    const float* q,  // (B, C, HW)
                                    const float* k,  // (B, C, HW)
                                    const float* v,  // (B, C, HW)
                                    float* out) {    // (B, C, HW)
  CB_CHECK(B >= 0 && C >= 0 && HW >= 0,
           "cuda spatial_attention: invalid shape (" + attention_shape(B, C, HW) + ")");
  if (B == 0 || C == 0 || HW == 0) return;
  // Grid limits: the scores (HW, HW) and the output (C, HW).
  CB_CHECK(conv_tile::grid_fits(HW, HW) && conv_tile::grid_fits(C, HW),
           "cuda spatial_attention: too large (C " + std::to_string(C) + ", HW " +
               std::to_string(HW) + ")");
  const int64_t per_image = HW * HW;  // floats of one image's weights
  const int64_t chunk =
      std::min<int64_t>({(int64_t)B, std::max<int64_t>(1, kMaxScoreFloats / per_image), 65535});
  float* scores = scratch_floats(chunk * per_image);  // (chunk, HW_i, HW_j)
  const int64_t image = (int64_t)C * HW;              // floats of one image of q, k, v, out
  const float scale = 1.0f / std::sqrt((float)C);

  for (int64_t b0 = 0; b0 < B; b0 += chunk) {
    const int64_t images = std::min<int64_t>(chunk, B - b0);
    const int64_t offset = b0 * image;

    // scores (HW_i, HW_j): A(i, c) = q[c HW + i], B(c, j) = k[c HW + j].
    BatchedProduct sp{HW, HW, C, scale, q + offset, image, 1, HW, k + offset, image, HW, 1,
                      scores, per_image, HW};
    launch_product<true, true>(sp, images);

    const int64_t rows = images * HW;
    softmax_rows_kernel<<<softmax_blocks(rows), kSoftmaxThreads, 0, launch_stream()>>>(rows, HW,
                                                                                        scores);
    CB_CUDA_CHECK_LAUNCH();

    // out (C, HW_i): A(c, j) = v[c HW + j], B(j, i) = weights[i HW + j].
    BatchedProduct op{C, HW, HW, 1.0f, v + offset, image, HW, 1, scores, per_image, 1, HW,
                      out + offset, image, HW};
    launch_product<false, false>(op, images);
  }
}

void CudaConvOps::spatial_attention_backward(int B, int C, int64_t HW,
                                             const float* q,     // (B, C, HW)
                                             const float* k,     // (B, C, HW)
                                             const float* v,     // (B, C, HW)
                                             const float* dout,  // (B, C, HW)
                                             float* dq,          // (B, C, HW)
                                             float* dk,          // (B, C, HW)
                                             float* dv) {        // (B, C, HW)
  CB_CHECK(B >= 0 && C >= 0 && HW >= 0,
           "cuda spatial_attention_backward: invalid shape (" + attention_shape(B, C, HW) + ")");
  if (B == 0 || C == 0 || HW == 0) return;
  // Grid limits: P and dP (HW, HW), dq, dk and dv (C, HW).
  CB_CHECK(conv_tile::grid_fits(HW, HW) && conv_tile::grid_fits(C, HW),
           "cuda spatial_attention_backward: too large (" + attention_shape(B, C, HW) + ")");
  const int64_t per_image = HW * HW;  // floats of one image's P (and of its dS)
  const int64_t chunk = std::min<int64_t>(
      {(int64_t)B, std::max<int64_t>(1, kMaxScoreFloats / (2 * per_image)), 65535});
  float* probs = scratch_floats(2 * chunk * per_image);  // (chunk, HW_i, HW_j)
  float* dscores = probs + chunk * per_image;            // (chunk, HW_i, HW_j): dP, then dS
  const int64_t image = (int64_t)C * HW;                 // floats of one image of q, k, v, ...
  const float scale = 1.0f / std::sqrt((float)C);

  for (int64_t b0 = 0; b0 < B; b0 += chunk) {
    const int64_t images = std::min<int64_t>(chunk, B - b0);
    const int64_t offset = b0 * image;
    const int64_t rows = images * HW;

    // P (HW_i, HW_j), as the forward: A(i, c) = q[c HW + i], B(c, j) = k[c HW + j].
    BatchedProduct sp{HW, HW, C, scale, q + offset, image, 1, HW, k + offset, image, HW, 1,
                      probs, per_image, HW};
    launch_product<true, true>(sp, images);
    softmax_rows_kernel<<<softmax_blocks(rows), kSoftmaxThreads, 0, launch_stream()>>>(rows, HW,
                                                                                       probs);
    CB_CUDA_CHECK_LAUNCH();

    // dv (C, HW_j): A(c, i) = dout[c HW + i], B(i, j) = P[i HW + j].
    BatchedProduct pv{C, HW, HW, 1.0f, dout + offset, image, HW, 1, probs, per_image, HW, 1,
                      dv + offset, image, HW};
    launch_product<false, true>(pv, images);

    // dP (HW_i, HW_j): A(i, c) = dout[c HW + i], B(c, j) = v[c HW + j]; then dS in place.
    BatchedProduct dp{HW, HW, C, 1.0f, dout + offset, image, 1, HW, v + offset, image, HW, 1,
                      dscores, per_image, HW};
    launch_product<true, true>(dp, images);
    softmax_backward_rows_kernel<<<softmax_blocks(rows), kSoftmaxThreads, 0, launch_stream()>>>(
        rows, HW, probs, dscores);
    CB_CUDA_CHECK_LAUNCH();

    // dq (C, HW_i): A(c, j) = k[c HW + j], B(j, i) = dS[i HW + j].
    BatchedProduct dqp{C, HW, HW, scale, k + offset, image, HW, 1, dscores, per_image, 1, HW,
                       dq + offset, image, HW};
    launch_product<false, false>(dqp, images);

    // dk (C, HW_j): A(c, i) = q[c HW + i], B(i, j) = dS[i HW + j].
    BatchedProduct dkp{C, HW, HW, scale, q + offset, image, HW, 1, dscores, per_image, HW, 1,
                       dk + offset, image, HW};
    launch_product<false, true>(dkp, images);
  }
}

}  // namespace cb
