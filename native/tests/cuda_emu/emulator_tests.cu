// Tests of the CUDA emulation itself (only in cb_engine_tests_emu, group `cuda`).
#include <vector>

#include "cuda_emu/emulator.h"
#include "harness.h"

namespace {

__global__ void fill_index(int* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = (int)(blockIdx.x * blockDim.x + threadIdx.x); }

}  // namespace

CB_TEST("cuda", emu_runs_every_thread) {
  int* d = nullptr;
  EXPECT(cudaMalloc(reinterpret_cast<void**>(&d), 64 * sizeof(int)) == cudaSuccess, "malloc");
  fill_index<<<2, 32>>>(d);
  EXPECT(cudaGetLastError() == cudaSuccess, "launch");
  int h[64];
  cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 64; i++) EXPECT(h[i] == i, "index " + std::to_string(i));
  cudaFree(d);
}

namespace {

// The block-wide sum of two values in a row through one shared array of warp partials (as
// conv_reduce.cuh's block_sum), with or without the barrier after the partials are read. Without
// it, a warp that runs ahead through the second sum's shuffles rewrites its partial while a
// late warp still reads the first sum's: wrong on a GPU whose warp scheduler runs one warp
// ahead, right whenever the threads run in order.
template <bool kTrailingBarrier>
__device__ float two_block_sums(float first, float second, float* partial) {  // partial: (8)
  float sums[2] = {first, second};
  for (float& v : sums) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < 8; w++) total += partial[w];
    if (kTrailingBarrier) __syncthreads();
    v = total;
  }
  return sums[0] + 1000.0f * sums[1];
}

template <bool kTrailingBarrier>
__global__ void sum_twice(float* out) {  // (blocks, 256)
  __shared__ float partial[8];
  out[blockIdx.x * 256 + threadIdx.x] = two_block_sums<kTrailingBarrier>(1.0f, 2.0f, partial);
}

// Elements of the (blocks, 256) sums that differ from 256 + 1000 * 512.
template <bool kTrailingBarrier>
int wrong_sums(uint64_t seed) {
  constexpr int kBlocks = 8;
  const uint64_t before = cb_emu::set_schedule_seed(seed);
  float* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), kBlocks * 256 * sizeof(float));
  sum_twice<kTrailingBarrier><<<kBlocks, 256>>>(d);
  std::vector<float> h(kBlocks * 256);
  cudaMemcpy(h.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(d);
  cb_emu::set_schedule_seed(before);
  int wrong = 0;
  for (float v : h) wrong += v != 256.0f + 1000.0f * 512.0f;
  return wrong;
}

}  // namespace

CB_TEST("cuda", emu_schedule_exposes_a_race_between_warps) {
  // With the barrier: right under every schedule (the emulation adds no false races).
  for (uint64_t seed = 0; seed <= 8; seed++) {
    EXPECT(wrong_sums<true>(seed) == 0, "with the barrier, seed " + std::to_string(seed));
  }
  // Without it: threads in order (seed 0) hide the race, the seeded schedules show it.
  EXPECT(wrong_sums<false>(0) == 0, "without the barrier, threads in order");
  int seeds_that_show_it = 0;
  for (uint64_t seed = 1; seed <= 8; seed++) seeds_that_show_it += wrong_sums<false>(seed) > 0;
  EXPECT(seeds_that_show_it > 0, "no seed of 1..8 showed the missing barrier");
}
