// GPU memory for the cuda model backend: CudaMemory (plain cudaMalloc, never managed memory;
// synchronous copies) and the scratch arrays of CudaModelOps.
#include <cuda_runtime_api.h>

#include <string>

#include "check.h"
#include "model_ops_cuda.h"

namespace cb {
namespace {

class CudaMemory final : public DeviceMemory {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();  // out of memory is not sticky: clear it so later calls proceed
      CB_FAIL("out of GPU memory: cannot allocate " + std::to_string(bytes) + " bytes (" +
              cudaGetErrorString(err) + ")");
    }
    return p;
  }

  // noexcept: a failed cudaFree is not actionable here (the context is already broken).
  void release(void* p) noexcept override {
    if (p != nullptr) cudaFree(p);
  }

  void upload(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) CB_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  }

  void download(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) CB_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  }

  // A device-to-device cudaMemcpy returns before the copy has run; the interface promises
  // completion, so wait for it.
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0 || dst == src) return;
    CB_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
    CB_CUDA_CHECK(cudaDeviceSynchronize());
  }

  // Queued on the default stream, so it is ordered before every later kernel and copy.
  void zero(void* dst, size_t bytes) override {
    if (bytes > 0) CB_CUDA_CHECK(cudaMemset(dst, 0, bytes));
  }

  void synchronize() override { CB_CUDA_CHECK(cudaDeviceSynchronize()); }
};

}  // namespace

// Never destroyed: a worker thread may still use it while exit() runs static destructors.
DeviceMemory& cuda_memory() {
  static CudaMemory* memory = new CudaMemory();
  return *memory;
}

// Growing frees the old array with cudaFree, which waits for queued kernels that may still read
// it; callers take all the scratch an op needs with one call, then split it. The scratch only
// grows, so after the first calls of each shape no op allocates: with the model's and the
// sampler's arenas, the backend's memory is a few long-lived cudaMalloc blocks.
namespace {

template <typename T>
T* grow(DeviceArray<T>& scratch, int64_t count, bool capturing, uint64_t& generation) {
  if (count <= scratch.size()) return scratch.data();
  CB_CHECK(!capturing, "cuda: an op asked for more scratch while a graph was being recorded "
                       "(the recorder runs each step once before recording it)");
  generation++;
  return scratch.reserve(count);
}

}  // namespace

float* CudaModelOps::scratch_floats(int64_t count) {
  return grow(scratch_f_, count, capturing_, scratch_generation_);
}

int32_t* CudaModelOps::scratch_ints(int64_t count) {
  return grow(scratch_i_, count, capturing_, scratch_generation_);
}

}  // namespace cb
