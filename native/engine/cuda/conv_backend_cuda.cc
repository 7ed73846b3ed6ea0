// make_cuda_conv_ops (vq/conv_backends_cuda.h): the cuda conv ops on the current device, refused
// with the driver's reason when no GPU is usable (the same check as the model backends,
// model/backends.cc); and the scratch of CudaConvOps. Plain C++: no kernels here.
#include "../error.h"
#include "../vq/conv_backends_cuda.h"
#include "conv_ops_cuda.h"
#include "cuda.h"

namespace cb {

CudaConvOps::CudaConvOps() { scratch_.bind(cuda_memory()); }

float* CudaConvOps::scratch_floats(int64_t count) { return scratch_.reserve(count); }

double* CudaConvOps::scratch_doubles(int64_t count) {
  static_assert(sizeof(double) == 2 * sizeof(float), "a double is two floats of scratch");
  return reinterpret_cast<double*>(scratch_.reserve(2 * count));
}

std::unique_ptr<ConvOps<float>> make_cuda_conv_ops() {
  const CudaStatus status = cuda_status();
  CB_CHECK(status.available, "the cuda backend is not available: " + status.reason);
  return std::make_unique<CudaConvOps>();
}

}  // namespace cb
