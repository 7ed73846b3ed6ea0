// Where a model backend keeps its tensors, and the copies in and out of there. The model, the
// sampler and the addon never touch a backend's memory directly: they allocate, fill and read
// it through this interface, so one call sequence serves host memory (cpu-ref, cpu) and GPU
// memory (cuda).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace cb {

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  // `bytes` of backend memory (plain device memory on a GPU, never managed memory); throws
  // cb::Error naming the size when it is not there. Zero bytes gives nullptr.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* p) noexcept = 0;
  // host -> backend, backend -> host, backend -> backend; all complete before returning.
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* dst, size_t bytes) = 0;
  // Waits for every queued kernel (a no-op on the host).
  virtual void synchronize() = 0;
};

// Host memory (the cpu-ref and cpu backends).
DeviceMemory& host_memory();

// An owned array of `count` T in a backend's memory; contents undefined until written.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(DeviceMemory& memory, int64_t count) : memory_(&memory) { resize(count); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept { swap(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    swap(o);
    return *this;
  }
  ~DeviceArray() {
    if (memory_ != nullptr) memory_->release(data_);
  }

  void bind(DeviceMemory& memory) { memory_ = &memory; }
  // Reallocates for `count` values when the size differs (contents are not kept).
  void resize(int64_t count) {
    if (count == count_) return;
    memory_->release(data_);
    data_ = nullptr;
    count_ = 0;
    data_ = static_cast<T*>(memory_->allocate(size_t(count) * sizeof(T)));
    count_ = count;
  }
  // Grows to at least `count` values (never shrinks).
  T* reserve(int64_t count) {
    if (count > count_) resize(count);
    return data_;
  }
  void upload(const T* host, int64_t count, int64_t offset = 0) {
    memory_->upload(data_ + offset, host, size_t(count) * sizeof(T));
  }
  void download(T* host, int64_t count, int64_t offset = 0) const {
    memory_->download(host, data_ + offset, size_t(count) * sizeof(T));
  }
  void zero() { memory_->zero(data_, size_t(count_) * sizeof(T)); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return count_; }

 private:
  void swap(DeviceArray& o) noexcept {
    std::swap(memory_, o.memory_);
    std::swap(data_, o.data_);
    std::swap(count_, o.count_);
  }
  DeviceMemory* memory_ = nullptr;
  T* data_ = nullptr;
  int64_t count_ = 0;
};

}  // namespace cb
