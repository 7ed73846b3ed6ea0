// CB_CUDA_CHECK(call): a failed CUDA runtime call throws cb::Error naming the call and the CUDA
// error, with this file and line. CB_CUDA_CHECK_LAUNCH(): the same for the last kernel launch.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "../error.h"

#define CB_CUDA_CHECK(call)                                                                    \
  do {                                                                                         \
    const cudaError_t cb_err_ = (call);                                                        \
    if (cb_err_ != cudaSuccess) {                                                              \
      cudaGetLastError(); /* clear a non-sticky error so later calls can proceed */            \
      throw ::cb::Error(std::string(#call) + " failed: " + cudaGetErrorString(cb_err_),        \
                        __FILE__, __LINE__);                                                   \
    }                                                                                          \
  } while (0)

#define CB_CUDA_CHECK_LAUNCH() CB_CUDA_CHECK(cudaGetLastError())
