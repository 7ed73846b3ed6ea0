// The CUDA side as seen by the rest of the engine: no CUDA headers here, so it compiles the
// same with or without nvcc. device.cc and cuda_backend.cc implement it when CUDA was compiled,
// absent.cc otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../ops.h"

namespace cb {

struct CudaDevice {
  std::string name;
  uint64_t memory_bytes = 0;
  int major = 0, minor = 0;  // compute capability
};

struct CudaStatus {
  bool compiled = false;   // the CUDA backend is in this build
  bool available = false;  // ... and a driver and at least one GPU are present
  std::string reason;      // why it is not available (cudaGetErrorString of the failure)
  int runtime_version = 0; // e.g. 13000 for 13.0
  int driver_version = 0;  // 0 when no driver is installed
  std::vector<CudaDevice> devices;
};

// Queries the driver; never throws for a missing driver or GPU (that is `reason`).
CudaStatus cuda_status();

// The cuda backend on device 0; throws cb::Error with the reason when CUDA is not available.
std::unique_ptr<Backend> make_cuda_backend(int64_t chunk_rows);

}  // namespace cb
