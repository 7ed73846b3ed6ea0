// cuda_status: what the CUDA runtime and driver report about the devices.
#include <cuda_runtime_api.h>

#include "check.h"
#include "cuda.h"

namespace cb {

CudaStatus cuda_status() {
  CudaStatus status;
  status.compiled = true;
  cudaRuntimeGetVersion(&status.runtime_version);
  if (cudaDriverGetVersion(&status.driver_version) != cudaSuccess) status.driver_version = 0;

  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it: a missing driver or GPU is a status, not a failure
    status.reason = cudaGetErrorString(err);
    return status;
  }
  if (count == 0) {
    status.reason = "no CUDA device found";
    return status;
  }
  for (int i = 0; i < count; i++) {
    cudaDeviceProp prop;
    CB_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    status.devices.push_back({prop.name, (uint64_t)prop.totalGlobalMem, prop.major, prop.minor});
  }
  status.available = true;
  return status;
}

}  // namespace cb
