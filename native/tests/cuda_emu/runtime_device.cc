// The emulated device (runtime_api.h): one sm_90 device with H100/H200 limits
// (device_limits.h) whose name says it is the emulation, and the kernels' attributes.
#include <cstring>
#include <map>
#include <mutex>

#include "device_limits.h"
#include "emulator.h"

namespace cb_emu {
namespace {

constexpr int kRuntimeVersion = 13000;

std::mutex& attributes_mutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}
std::map<const void*, size_t>& dynamic_shared_limits() {
  static auto* limits = new std::map<const void*, size_t>();
  return *limits;
}

cudaError_t check_device(int device) {
  return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice, "the emulation has device 0 only");
}

}  // namespace

size_t max_dynamic_shared(const void* kernel) {
  std::lock_guard<std::mutex> lock(attributes_mutex());
  const auto it = dynamic_shared_limits().find(kernel);
  return it != dynamic_shared_limits().end() ? it->second : kDefaultMaxDynamicShared;
}

}  // namespace cb_emu

using namespace cb_emu;

cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = kRuntimeVersion;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
  *version = kRuntimeVersion;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return check_device(device); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (check_device(device) != cudaSuccess) return cudaErrorInvalidDevice;
  std::memset(prop, 0, sizeof *prop);
  std::strncpy(prop->name, kDeviceName, sizeof prop->name - 1);
  prop->totalGlobalMem = kGlobalMemoryBytes;
  prop->sharedMemPerBlock = kDefaultMaxDynamicShared;
  prop->sharedMemPerBlockOptin = kMaxSharedPerBlockOptin;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = kMaxThreadsPerBlock;
  for (int i = 0; i < 3; i++) {
    prop->maxThreadsDim[i] = (int)kMaxBlockDim[i];
    prop->maxGridSize[i] = (int)kMaxGridDim[i];
  }
  prop->major = kComputeMajor;
  prop->minor = kComputeMinor;
  prop->multiProcessorCount = kMultiProcessors;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (check_device(device) != cudaSuccess) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = kMaxThreadsPerBlock; return cudaSuccess;
    case cudaDevAttrMaxBlockDimX: *value = (int)kMaxBlockDim[0]; return cudaSuccess;
    case cudaDevAttrMaxGridDimX: *value = (int)kMaxGridDim[0]; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)kDefaultMaxDynamicShared; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = kMultiProcessors; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = kComputeMajor; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = kComputeMinor; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)kMaxSharedPerBlockOptin; return cudaSuccess;
  }
  return fail(cudaErrorInvalidValue, "device attribute " + std::to_string((int)attr) +
                                         " is not emulated");
}

cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) {
    return fail(cudaErrorInvalidValue, "function attribute " + std::to_string((int)attr) +
                                           " is not emulated");
  }
  if (value < 0 || (size_t)value > kMaxSharedPerBlockOptin) {
    return fail(cudaErrorInvalidValue,
                "cudaFuncAttributeMaxDynamicSharedMemorySize " + std::to_string(value) +
                    " is past the device's opt-in limit of " +
                    std::to_string(kMaxSharedPerBlockOptin) + " bytes");
  }
  std::lock_guard<std::mutex> lock(attributes_mutex());
  dynamic_shared_limits()[kernel] = (size_t)value;
  return cudaSuccess;
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* kernel) {
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = kMaxThreadsPerBlock;
  attr->maxDynamicSharedSizeBytes = (int)max_dynamic_shared(kernel);
  return cudaSuccess;
}
