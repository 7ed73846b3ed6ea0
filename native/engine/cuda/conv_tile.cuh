// The fp32 tile product shared by the GEMM-shaped conv kernels (conv_conv2d.cu,
// conv_attention.cu): a block of 256 threads owns a 64x64 tile of C = A (M, K) . B (K, N) and
// steps through K in slices of 16 staged in shared memory. Thread t = 16 ty + tx accumulates a
// 4x4 micro-tile, rows ty + 16a and columns tx + 16b of the tile (a, b in 0..3), so within a
// warp the A reads are broadcasts and the B reads hit 16 consecutive banks.
//
// Each kernel fills the two shared slices itself (its operands are laid out differently), with
// 4 values per thread per slice, then calls multiply_slices between two __syncthreads.
// Plain fp32 multiply-adds (FMA where the compiler contracts): no TF32, no tensor cores.
#pragma once

namespace cb {
namespace conv_tile {

constexpr int kM = 64;          // rows of C per block
constexpr int kN = 64;          // columns of C per block
constexpr int kK = 16;          // depth of one shared slice
constexpr int kThreads = 256;   // threads per block (16 x 16)
constexpr int kLoads = kM * kK / kThreads;  // values each thread stages per operand and slice
static_assert(kM * kK == kK * kN, "both slices are staged with the same number of loads");
static_assert(kLoads == 4, "the loaders below assume 4 values per thread");

// as[l][i] = A(m0 + i, k0 + l), bs[l][j] = B(k0 + l, n0 + j); the +1 keeps the column writes of
// the loaders off a single bank.
struct Slices {
  float a[kK][kM + 1];
  float b[kK][kN + 1];
};

// acc[a][b] += sum over l of as[l][ty + 16a] * bs[l][tx + 16b].
__device__ inline void multiply_slices(const Slices& s, int tx, int ty, float (&acc)[4][4]) {
#pragma unroll
  for (int l = 0; l < kK; l++) {
    float av[4], bv[4];
#pragma unroll
    for (int a = 0; a < 4; a++) av[a] = s.a[l][ty + 16 * a];
#pragma unroll
    for (int b = 0; b < 4; b++) bv[b] = s.b[l][tx + 16 * b];
#pragma unroll
    for (int a = 0; a < 4; a++) {
#pragma unroll
      for (int b = 0; b < 4; b++) acc[a][b] += av[a] * bv[b];
    }
  }
}

}  // namespace conv_tile
}  // namespace cb
