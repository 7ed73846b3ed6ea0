// What this build of the engine is: version, compiler and flags, the BLAS in use, whether
// CUDA was compiled, and the CUDA status (driver, devices) at the time of the call.
#pragma once

#include <string>

#include "cuda/cuda.h"

namespace cb {

struct BuildInfo {
  std::string version;     // package.json's version at configure time
  std::string build_type;  // CMake build type, e.g. Release
  std::string compiler;    // e.g. "GNU 12.2.0"
  std::string cxx_flags;
  std::string blas;         // "openblas", or "blocked" (the portable loop; no BLAS was found)
  std::string blas_config;  // openblas_get_config(), empty for "blocked"
  int blas_threads = 1;     // openblas_get_num_threads(), or std::thread's count for "blocked"
  bool cuda_compiled = false;
  std::string cuda_compiler;       // e.g. "NVIDIA 13.0.88", empty without CUDA
  std::string cuda_flags;
  std::string cuda_architectures;  // e.g. "80-real;90-real;90-virtual"
  CudaStatus cuda;                 // cuda_status() when build_info() was called
};

BuildInfo build_info();

}  // namespace cb
