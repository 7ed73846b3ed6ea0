// The fp32 tile product shared by the GEMM-shaped conv kernels (conv_conv2d.cu,
// conv_conv2d_backward.cu, conv_attention.cu): a block of 256 threads owns a 64x64 tile of
// C = A (M, K) . B (K, N) and steps through K in slices of 16 staged in shared memory. Thread
// t = 16 ty + tx accumulates a 4x4 micro-tile, rows ty + 16a and columns tx + 16b of the tile
// (a, b in 0..3), so within a warp the A reads are broadcasts and the B reads hit 16
// consecutive banks. blockIdx.x walks the 64-column tiles of C, blockIdx.y its 64-row tiles
// (tile_grid); blockIdx.z is the kernel's own.
//
// Each kernel fetches the values of the two slices itself (its operands are laid out
// differently), 4 values per thread per slice and operand in one of the two staging patterns
// (staged), into registers; accumulate stages them and multiplies the slices, fetching the next
// slice while the block multiplies the current one. Every value of C is one thread's plain sum
// in depth order: no reduction across threads.
// Plain fp32 multiply-adds (FMA where the compiler contracts): no TF32, no tensor cores.
#pragma once

#include <cstdint>

namespace cb {
namespace conv_tile {

constexpr int kM = 64;          // rows of C per block
constexpr int kN = 64;          // columns of C per block
constexpr int kK = 16;          // depth of one shared slice
constexpr int kThreads = 256;   // threads per block (16 x 16)
constexpr int kLoads = kM * kK / kThreads;  // values each thread stages per operand and slice
static_assert(kM * kK == kK * kN, "both slices are staged with the same number of loads");
static_assert(kLoads == 4, "the loaders below assume 4 values per thread");
static_assert(kM == kN && kThreads % kM == 0 && kThreads % kK == 0,
              "both staging patterns fit either operand");

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

// Where value t (0 .. kLoads - 1) of thread tid goes in a slice: its line (a row of the A
// slice, or a column of the B slice) and its depth within the slice. With idx = tid + kThreads t:
// along the depth, line idx / kK and depth idx % kK, so consecutive threads take consecutive
// depths of a line (for operands contiguous along K); across, line idx % 64 and depth idx / 64,
// so consecutive threads take consecutive lines of a depth (operands contiguous along M or N),
// and the line is tid % 64 for every t (a kernel may decode it once). Written with tid alone,
// which kThreads % kK == kThreads % 64 == 0 allows.
struct Staged {
  int line, depth;
};
template <bool kAlongDepth>
__device__ inline Staged staged(int tid, int t) {
  return kAlongDepth ? Staged{tid / kK + (kThreads / kK) * t, tid % kK}
                     : Staged{tid % kM, tid / kM + (kThreads / kM) * t};
}

// The first row and the first column of this block's tile of C.
__device__ inline int64_t tile_row0() { return (int64_t)blockIdx.y * kM; }
__device__ inline int64_t tile_col0() { return (int64_t)blockIdx.x * kN; }

// acc += the product over depths [k_begin, k_end). fetch(k0, a, b) loads this thread's values of
// the slices at depth k0 into a and b (value t of A at staged<kAAlongDepth>(tid, t), of B at
// staged<kBAlongDepth>(tid, t); 0 outside the operands and past k_end, without reading there);
// they are stored into s, and the next slice is fetched while the block multiplies the current
// one. Every thread of the block calls it with the same range (it synchronises the block).
template <bool kAAlongDepth, bool kBAlongDepth, typename Fetch>
__device__ inline void accumulate(Slices& s, int64_t k_begin, int64_t k_end, Fetch fetch,
                                  float (&acc)[4][4]) {
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  float a[kLoads], b[kLoads];
  if (k_begin < k_end) fetch(k_begin, a, b);
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kK) {
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const Staged sa = staged<kAAlongDepth>(tid, t), sb = staged<kBAlongDepth>(tid, t);
      s.a[sa.depth][sa.line] = a[t];
      s.b[sb.depth][sb.line] = b[t];
    }
    __syncthreads();
    if (k0 + kK < k_end) fetch(k0 + kK, a, b);
    multiply_slices(s, tx, ty, acc);
    __syncthreads();  // everyone is done reading the slices before they are overwritten
  }
}

// The values of this thread's micro-tile that lie inside C (rows, columns): for each such row
// i = m0 + ty + 16 a, row(i) returns the row's writer, which is then called as put(j, acc[a][b])
// for each such column j = n0 + tx + 16 b (so what depends on the row alone is done once).
template <typename Row>
__device__ inline void for_each_result(int64_t m0, int64_t n0, int64_t rows, int64_t columns,
                                       const float (&acc)[4][4], Row row) {
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
#pragma unroll
  for (int a = 0; a < 4; a++) {
    const int64_t i = m0 + ty + 16 * a;
    if (i >= rows) continue;
    const auto put = row(i);
#pragma unroll
    for (int b = 0; b < 4; b++) {
      const int64_t j = n0 + tx + 16 * b;
      if (j < columns) put(j, acc[a][b]);
    }
  }
}

// ---- host ---------------------------------------------------------------------------------------

// The grid of a product C (rows, columns), `z` blocks deep; grid_fits says whether its x and y
// are within CUDA's limits (2^31 - 1 column tiles, 65535 row tiles).
inline dim3 tile_grid(int64_t rows, int64_t columns, int64_t z = 1) {
  return dim3((unsigned)((columns + kN - 1) / kN), (unsigned)((rows + kM - 1) / kM), (unsigned)z);
}
inline bool grid_fits(int64_t rows, int64_t columns) {
  return (columns + kN - 1) / kN < (int64_t(1) << 31) && (rows + kM - 1) / kM <= 65535;
}

}  // namespace conv_tile
}  // namespace cb
