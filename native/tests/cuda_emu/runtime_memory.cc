// "Device" memory of the emulation (runtime_api.h): host memory from cudaMalloc, 256-byte
// aligned as CUDA's, filled with 0xff bytes (NaN floats) since GPU memory starts undefined,
// and registered, so that cudaFree of a foreign pointer and a copy or memset whose device side
// leaves every allocation fail with cudaErrorInvalidValue instead of writing anywhere.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "emulator.h"

namespace cb_emu {
namespace {

std::mutex& allocations_mutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}
std::map<uintptr_t, size_t>& allocations() {  // start -> bytes
  static auto* a = new std::map<uintptr_t, size_t>();
  return *a;
}

// Whether [p, p + bytes) lies in one allocation.
bool in_device_memory(const void* p, size_t bytes) {
  const auto at = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(allocations_mutex());
  auto it = allocations().upper_bound(at);
  if (it == allocations().begin()) return false;
  --it;
  return at >= it->first && at + bytes <= it->first + it->second;
}

cudaError_t check_side(const void* p, size_t bytes, const char* call, const char* side) {
  if (in_device_memory(p, bytes)) return cudaSuccess;
  return fail(cudaErrorInvalidValue, std::string(call) + ": the " + side + " (" +
                                         std::to_string(bytes) + " bytes) is not inside one "
                                         "cudaMalloc allocation");
}

cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                       const char* call) {
  if (bytes == 0) return cudaSuccess;
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind > cudaMemcpyDefault) return fail(cudaErrorInvalidMemcpyDirection, call);
  if (dst_device && check_side(dst, bytes, call, "destination") != cudaSuccess) {
    return cudaErrorInvalidValue;
  }
  if (src_device && check_side(src, bytes, call, "source") != cudaSuccess) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

}  // namespace
}  // namespace cb_emu

using namespace cb_emu;

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (refuse_during_capture("cudaMalloc") != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  const size_t rounded = (bytes + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (p == nullptr) {
    return fail(cudaErrorMemoryAllocation, "host memory for " + std::to_string(bytes) + " bytes");
  }
  std::memset(p, 0xff, rounded);
  {
    std::lock_guard<std::mutex> lock(allocations_mutex());
    allocations()[reinterpret_cast<uintptr_t>(p)] = bytes;
  }
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (refuse_during_capture("cudaFree") != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  {
    std::lock_guard<std::mutex> lock(allocations_mutex());
    if (allocations().erase(reinterpret_cast<uintptr_t>(ptr)) == 0) {
      return fail(cudaErrorInvalidValue, "cudaFree of a pointer that cudaMalloc did not return");
    }
  }
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (refuse_during_capture("cudaMemcpy") != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  const cudaError_t bad = check_copy(dst, src, bytes, kind, "cudaMemcpy");
  if (bad != cudaSuccess) return bad;
  if (bytes > 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  const cudaError_t bad = check_copy(dst, src, bytes, kind, "cudaMemcpyAsync");
  if (bad != cudaSuccess) return bad;
  return enqueue(stream, [dst, src, bytes] {
    if (bytes > 0) std::memmove(dst, src, bytes);
    return cudaSuccess;
  });
}

// On the legacy stream, which a non-blocking capture does not wait for: it runs at once.
cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (check_side(ptr, bytes, "cudaMemset", "destination") != cudaSuccess) {
    return cudaErrorInvalidValue;
  }
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (check_side(ptr, bytes, "cudaMemsetAsync", "destination") != cudaSuccess) {
    return cudaErrorInvalidValue;
  }
  return enqueue(stream, [ptr, value, bytes] {
    std::memset(ptr, value, bytes);
    return cudaSuccess;
  });
}
