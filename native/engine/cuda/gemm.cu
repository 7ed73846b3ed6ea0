// A plain shared-memory tiled SGEMM: each 16x16 thread block computes a 16x16 tile of C, one
// element per thread, stepping through k in tiles of 16 staged in shared memory.
#include "check.h"
#include "kernels.h"

namespace cb {
namespace {

constexpr int TILE = 16;

// op(X)(r, c) for a row-major X with row stride ld.
__device__ inline float op_at(const float* x, int ld, bool trans, int r, int c) {
  return trans ? x[(int64_t)c * ld + r] : x[(int64_t)r * ld + c];
}

__global__ void sgemm_tiled(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                            const float* a, int lda, const float* b, int ldb, float beta,
                            float* c, int ldc) {
  __shared__ float as[TILE][TILE + 1];  // (rows of C, depth); +1 avoids bank conflicts
  __shared__ float bs[TILE][TILE + 1];  // (depth, cols of C)
  const int ty = threadIdx.y, tx = threadIdx.x;
  const int row = blockIdx.x * TILE + ty, col = blockIdx.y * TILE + tx;
  float sum = 0.0f;
  for (int p0 = 0; p0 < k; p0 += TILE) {
    as[ty][tx] = (row < m && p0 + tx < k) ? op_at(a, lda, trans_a, row, p0 + tx) : 0.0f;
    bs[ty][tx] = (p0 + ty < k && col < n) ? op_at(b, ldb, trans_b, p0 + ty, col) : 0.0f;
    __syncthreads();
    for (int p = 0; p < TILE; p++) sum += as[ty][p] * bs[p][tx];
    __syncthreads();
  }
  if (row < m && col < n) {
    float* cij = c + (int64_t)row * ldc + col;
    *cij = alpha * sum + (beta == 0.0f ? 0.0f : beta * *cij);
  }
}

}  // namespace

void cuda_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  const dim3 block(TILE, TILE);
  const dim3 grid((m + TILE - 1) / TILE, (n + TILE - 1) / TILE);
  CB_CHECK(grid.y <= 65535, "cuda gemm: n is too large (" + std::to_string(n) + ")");
  sgemm_tiled<<<grid, block>>>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace cb
