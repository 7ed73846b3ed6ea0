// The CUDA side of a build without nvcc: it reports why, and creating the backend fails.
#include "../error.h"
#include "cuda.h"

namespace cb {

CudaStatus cuda_status() {
  CudaStatus status;
  status.reason = "this build has no CUDA backend (nvcc was not found when it was compiled)";
  return status;
}

std::unique_ptr<Backend> make_cuda_backend(int64_t) {
  CB_FAIL("CUDA is not available: " + cuda_status().reason);
}

}  // namespace cb
