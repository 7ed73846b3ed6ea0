#include "guarded_buffer.h"

#include <algorithm>
#include <utility>

#include "harness.h"

namespace cbt {

std::vector<uint8_t> guard_pattern(size_t bytes) {
  std::vector<uint8_t> p(bytes);
  for (size_t i = 0; i < bytes; i++) p[i] = uint8_t(GuardedBuffer::kPattern >> (8 * (i % 4)));
  return p;
}

GuardedBuffer::GuardedBuffer(cb::DeviceMemory& memory, std::string name, size_t bytes,
                             size_t misalign)
    : memory_(memory), name_(std::move(name)), bytes_(bytes), front_(kGuardBytes + misalign) {
  base_ = static_cast<uint8_t*>(memory_.allocate(front_ + bytes_ + kGuardBytes));
  // Each region's pattern starts at its own first byte, so every float of it is the NaN.
  const std::vector<uint8_t> front = guard_pattern(front_), fill = guard_pattern(bytes_);
  memory_.upload(base_, front.data(), front_);
  memory_.upload(base_ + front_, fill.data(), bytes_);
  memory_.upload(base_ + front_ + bytes_, front.data(), kGuardBytes);
}

GuardedBuffer::~GuardedBuffer() { memory_.release(base_); }

void GuardedBuffer::upload(const void* host) { memory_.upload(data(), host, bytes_); }

void GuardedBuffer::download(void* host) const {
  memory_.synchronize();
  memory_.download(host, data(), bytes_);
}

void GuardedBuffer::check_guards() const {
  memory_.synchronize();
  for (int side = 0; side < 2; side++) {
    const size_t size = side == 0 ? front_ : kGuardBytes;
    const uint8_t* at = side == 0 ? base_ : base_ + front_ + bytes_;
    const std::vector<uint8_t> want = guard_pattern(size);
    std::vector<uint8_t> got(size);
    memory_.download(got.data(), at, size);
    size_t first = size, last = 0, changed = 0;
    for (size_t i = 0; i < size; i++) {
      if (got[i] == want[i]) continue;
      first = std::min(first, i);
      last = i;
      changed++;
    }
    if (changed == 0) continue;
    // Byte offsets relative to the data: negative before it, >= bytes after it.
    const long long shift = side == 0 ? -(long long)front_ : (long long)bytes_;
    EXPECT(false, "out-of-bounds write into buffer '" + name_ + "' (" + std::to_string(bytes_) +
                      " bytes): " + std::to_string(changed) + " guard bytes changed " +
                      (side == 0 ? "before" : "after") + " the data, at byte offsets " +
                      std::to_string(shift + (long long)first) + ".." +
                      std::to_string(shift + (long long)last));
  }
}

GuardedBuffer& DeviceBuffers::add(const std::string& name, size_t bytes) {
  buffers_.push_back(std::make_unique<GuardedBuffer>(memory_, name, bytes, misalign_));
  return *buffers_.back();
}

const GuardedBuffer& DeviceBuffers::find(const void* data) const {
  for (const auto& b : buffers_) {
    if (b->data() == data) return *b;
  }
  CB_FAIL("DeviceBuffers: no buffer starts at this pointer");
}

void DeviceBuffers::check_guards() const {
  for (const auto& b : buffers_) b->check_guards();
}

}  // namespace cbt
