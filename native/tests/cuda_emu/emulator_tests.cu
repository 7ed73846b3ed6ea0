// Tests of the CUDA emulation itself (only in cb_engine_tests_emu, group `cuda`).
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
