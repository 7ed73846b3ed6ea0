#include <cstdlib>
#include <cstring>
#include <string>

#include "../error.h"
#include "device_memory.h"

namespace cb {
namespace {

class HostMemory final : public DeviceMemory {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = std::malloc(bytes);
    CB_CHECK(p != nullptr, "out of memory: cannot allocate " + std::to_string(bytes) + " bytes");
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { move(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { move(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { move(dst, src, bytes); }
  void zero(void* dst, size_t bytes) override {
    if (bytes > 0) std::memset(dst, 0, bytes);
  }
  void synchronize() override {}

 private:
  static void move(void* dst, const void* src, size_t bytes) {
    if (bytes > 0 && dst != src) std::memmove(dst, src, bytes);
  }
};

}  // namespace

// Never destroyed: a worker thread may still use it while exit() runs static destructors.
DeviceMemory& host_memory() {
  static HostMemory* memory = new HostMemory();
  return *memory;
}

}  // namespace cb
