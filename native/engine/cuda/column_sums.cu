// Two-pass deterministic column sums (column_sums.h).
#include "check.h"
#include "column_sums.h"
#include "stream.h"

#include <algorithm>

namespace cb {
namespace {

constexpr int kThreads = 256;
constexpr int kColTile = 32, kRowLanes = 8;  // pass 1 blocks: 32 columns x 8 row lanes
constexpr int64_t kMaxChunks = 64;           // row chunks
constexpr int64_t kMinChunkRows = 256;

// Pass 1 of dst (c) += sum over rows of src: block (column tile blockIdx.x, row chunk
// blockIdx.y) writes part[chunk, j]. Thread row ty sums rows r0 + ty, r0 + ty + 8, ... in
// order; the 8 partials meet in a fixed tree. With a mask only rows with mask[r] != 0 count,
// and with zero_rows those rows are zeroed after being read.
__global__ void column_partials_kernel(int64_t n, int c,
                                       float* src,           // n rows at stride ld
                                       int64_t ld,
                                       const uint8_t* mask,  // (n) or null
                                       bool zero_rows, int64_t chunk,
                                       float* part) {        // (chunks, c)
  __shared__ float s[kRowLanes][kColTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t j = (int64_t)blockIdx.x * kColTile + tx;
  const int64_t r0 = (int64_t)blockIdx.y * chunk, r1 = min(n, r0 + chunk);
  float acc = 0.0f;
  if (j < c) {
    for (int64_t r = r0 + ty; r < r1; r += kRowLanes) {
      if (mask != nullptr && mask[r] == 0) continue;
      float* p = src + r * ld + j;
      acc += *p;
      if (zero_rows) *p = 0.0f;
    }
  }
  s[ty][tx] = acc;
  __syncthreads();
  for (int h = kRowLanes / 2; h > 0; h /= 2) {
    if (ty < h) s[ty][tx] += s[ty + h][tx];
    __syncthreads();
  }
  if (ty == 0 && j < c) part[blockIdx.y * (int64_t)c + j] = s[0][tx];
}

// Pass 2: dst[j] += the partials of column j in chunk order.
__global__ void column_finish_kernel(int c, int chunks,
                                     const float* part,  // (chunks, c)
                                     float* dst) {       // (c) +=
  const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  float acc = 0.0f;
  for (int g = 0; g < chunks; g++) acc += part[(int64_t)g * c + j];
  dst[j] += acc;
}

}  // namespace

int64_t column_chunks(int64_t n) {
  return std::max<int64_t>(1, std::min(kMaxChunks, (n + kMinChunkRows - 1) / kMinChunkRows));
}

namespace {

void launch(int64_t n, int c, float* src, int64_t ld, const uint8_t* mask, bool zero_rows,
            float* dst, float* part) {
  if (n <= 0 || c <= 0) return;
  const int64_t chunks = column_chunks(n), chunk = (n + chunks - 1) / chunks;
  const dim3 grid((unsigned)((c + kColTile - 1) / kColTile), (unsigned)chunks);
  const dim3 block(kColTile, kRowLanes);
  column_partials_kernel<<<grid, block, 0, launch_stream()>>>(
      n, c, src, ld, mask, zero_rows, chunk, part);
  CB_CUDA_CHECK_LAUNCH();
  column_finish_kernel<<<(unsigned)((c + kThreads - 1) / kThreads), kThreads, 0, launch_stream()>>>(
      c, (int)chunks, part, dst);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace

void column_sums_add(int64_t n, int c, const float* src, int64_t ld, float* dst, float* part) {
  // Without a mask and zeroing the kernel only reads src.
  launch(n, c, const_cast<float*>(src), ld, nullptr, false, dst, part);
}

void masked_column_sums_add_and_zero(int64_t n, int c, float* src, int64_t ld,
                                     const uint8_t* mask, float* dst, float* part) {
  launch(n, c, src, ld, mask, true, dst, part);
}

}  // namespace cb
