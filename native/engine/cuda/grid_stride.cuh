// Grid-stride launches for the VQ conv kernels with one thread per element (or row) at a time:
// blocks of kThreads, at most kMaxBlocks of them (the loops cover the rest), int64 indices so
// any count works.
#pragma once

#include <algorithm>
#include <cstdint>

namespace cb {
namespace grid_stride {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 16;

// Blocks for `count` elements: one thread each up to kMaxBlocks blocks.
inline unsigned blocks_for(int64_t count) {
  return (unsigned)std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks);
}

// The first element of this thread, and the step to its next one.
__device__ inline int64_t thread_index() {
  return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ inline int64_t thread_stride() { return (int64_t)gridDim.x * blockDim.x; }

}  // namespace grid_stride
}  // namespace cb
