// Test buffers in a model backend's memory (DeviceMemory: the GPU's for cuda, the host's for the
// cpu backends) with a guard region before and after the data, so that an op that writes out
// of bounds is caught: the guards are filled with a known pattern, the op runs, and
// check_guards() downloads them and fails naming the buffer and the first changed byte.
//
// The pattern word 0x7fe5a5a5 is a quiet NaN as a float and a huge int32, so an op that READS
// out of bounds also tends to show: NaN in a float result, an illegal address for an index.
// Outputs start filled with the same pattern (NaN), so an element an op forgets to write fails
// the finite check.
//
// Generic over DeviceMemory: it compiles and runs everywhere; the GPU tests use it on cuda.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/device_memory.h"

namespace cbt {

class GuardedBuffer {
 public:
  static constexpr size_t kGuardBytes = 16384;      // each side; keeps the data 256-byte aligned
  static constexpr uint32_t kPattern = 0x7fe5a5a5u;  // a quiet NaN as float, a huge int32

  // `bytes` of data (filled with the pattern) between two guards, in `memory`. With
  // `misalign` > 0 the data starts that many bytes past the allocation's alignment (the front
  // guard grows by as much), for ops that must accept any float pointer.
  GuardedBuffer(cb::DeviceMemory& memory, std::string name, size_t bytes, size_t misalign = 0);
  ~GuardedBuffer();
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  void* data() const { return base_ + front_; }
  size_t bytes() const { return bytes_; }
  const std::string& name() const { return name_; }

  void upload(const void* host);  // the whole data region
  void download(void* host) const;
  // Fails (EXPECT) when a guard byte changed: names the buffer, the side and the offset.
  void check_guards() const;

 private:
  cb::DeviceMemory& memory_;
  std::string name_;
  size_t bytes_;
  size_t front_;  // bytes of the front guard: kGuardBytes + misalign
  uint8_t* base_ = nullptr;
};

// The pattern bytes of a region of `bytes` (the word kPattern repeated, little-endian).
std::vector<uint8_t> guard_pattern(size_t bytes);

// The buffers of one op call on one backend: inputs uploaded, outputs pre-filled with the
// pattern, results downloaded by pointer, and every guard checked at once.
class DeviceBuffers {
 public:
  // Every buffer's data starts `misalign` bytes past an aligned address (0: aligned).
  explicit DeviceBuffers(cb::DeviceMemory& memory, size_t misalign = 0)
      : memory_(memory), misalign_(misalign) {}

  // A copy of `host` in the backend's memory.
  template <typename T>
  T* upload(const std::string& name, const std::vector<T>& host) {
    GuardedBuffer& b = add(name, host.size() * sizeof(T));
    b.upload(host.data());
    return static_cast<T*>(b.data());
  }
  // `count` values of the pattern (NaN for floats) for an op to overwrite.
  template <typename T>
  T* output(const std::string& name, size_t count) {
    return static_cast<T*>(add(name, count * sizeof(T)).data());
  }
  // The current contents of the buffer that starts at `data`.
  template <typename T>
  std::vector<T> download(const T* data) const {
    const GuardedBuffer& b = find(data);
    std::vector<T> host(b.bytes() / sizeof(T));
    b.download(host.data());
    return host;
  }
  void check_guards() const;

 private:
  GuardedBuffer& add(const std::string& name, size_t bytes);
  const GuardedBuffer& find(const void* data) const;

  cb::DeviceMemory& memory_;
  size_t misalign_;
  std::vector<std::unique_ptr<GuardedBuffer>> buffers_;
};

}  // namespace cbt
