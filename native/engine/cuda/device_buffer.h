// DeviceBuffer<T>: `count` elements of device memory from plain cudaMalloc (never managed
// memory), freed when it goes out of scope, with checked copies to and from the host.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "check.h"

namespace cb {

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    if (count_ > 0) CB_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), count_ * sizeof(T)));
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);  // a destructor must not throw; a failure here is not actionable
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return count_; }

  void upload(const T* host, size_t count) {
    CB_CHECK(count <= count_, "DeviceBuffer::upload: too many elements");
    if (count > 0) CB_CUDA_CHECK(cudaMemcpy(ptr_, host, count * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host, size_t count) const {
    CB_CHECK(count <= count_, "DeviceBuffer::download: too many elements");
    if (count > 0) CB_CUDA_CHECK(cudaMemcpy(host, ptr_, count * sizeof(T), cudaMemcpyDeviceToHost));
  }

 private:
  T* ptr_ = nullptr;
  size_t count_;
};

}  // namespace cb
