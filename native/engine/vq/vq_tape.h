// The tape of a VQ training pass: the forward copies each tensor its backward needs onto the
// tape (save), and the backward takes them back in reverse order (take). The entries keep their
// memory from pass to pass (they only grow), so after the first step a pass allocates nothing.
// Inference passes no tape (VqModel's blocks take a null VqTape) and copies nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../error.h"
#include "../model/device_memory.h"

namespace cb {

template <typename Real>
class VqTape {
 public:
  explicit VqTape(DeviceMemory& memory) : memory_(memory) {}

  // Copies `count` values at `src` (backend memory) onto the tape; returns the copy.
  const Real* save(const Real* src, int64_t count) {
    if (top_ == entries_.size()) entries_.emplace_back();
    Entry& e = entries_[top_++];
    e.values.bind(memory_);
    e.values.reserve(count);
    e.count = count;
    memory_.copy(e.values.data(), src, size_t(count) * sizeof(Real));
    return e.values.data();
  }

  // The last saved tensor not yet taken, which must hold `count` values (a mismatch is a bug
  // in the call sequences: forward and backward disagree).
  const Real* take(int64_t count) {
    CB_CHECK(top_ > 0, "VQ tape: the backward takes more tensors than the forward saved");
    Entry& e = entries_[--top_];
    CB_CHECK(e.count == count, "VQ tape: the backward takes " + std::to_string(count) +
                                   " values where the forward saved " + std::to_string(e.count));
    return e.values.data();
  }

  // Tensors saved and not yet taken (0 after a complete backward).
  size_t size() const { return top_; }
  // Forgets every saved tensor (keeps the memory).
  void clear() { top_ = 0; }

 private:
  struct Entry {
    DeviceArray<Real> values;
    int64_t count = 0;
  };
  DeviceMemory& memory_;
  std::vector<Entry> entries_;
  size_t top_ = 0;
};

}  // namespace cb
