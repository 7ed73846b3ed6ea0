// Fibers for the CUDA emulation: each emulated GPU thread runs on its own small stack, and the
// block scheduler (block_scheduler.cc) switches between them on one OS thread. On x86-64 the
// switch is a few instructions (fiber.cc: callee-saved registers and the stack pointer); other
// architectures use ucontext, whose swapcontext also saves the signal mask (a system call), so
// they are correct but slower.
#pragma once

#include <cstddef>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace cb_emu {

struct FiberContext {
#if defined(__x86_64__)
  void* sp = nullptr;  // the saved stack pointer; the registers are on that stack
#else
  ucontext_t uc;
#endif
};

// Makes `fiber` start entry(arg) on [stack, stack + size) at its first switch_fiber to it.
// entry must never return: it switches away for the last time instead.
void prepare_fiber(FiberContext& fiber, void* stack, size_t size, void (*entry)(void*), void* arg);

// Saves the running context in `from` and resumes `to`.
void switch_fiber(FiberContext& from, FiberContext& to);

// Stacks for up to `count` fibers, each `size` bytes with an inaccessible guard page below it
// (an overflow faults instead of corrupting the neighbour). Memory is reserved, not touched.
class FiberStacks {
 public:
  FiberStacks() = default;
  ~FiberStacks();
  FiberStacks(const FiberStacks&) = delete;
  FiberStacks& operator=(const FiberStacks&) = delete;

  void reserve(int count, size_t size);  // keeps what is there when it is enough
  void* stack(int i) const { return base_ + i * stride_ + guard_; }
  size_t size() const { return stride_ - guard_; }

 private:
  char* base_ = nullptr;
  size_t bytes_ = 0, stride_ = 0, guard_ = 0;
  int count_ = 0;
};

}  // namespace cb_emu
