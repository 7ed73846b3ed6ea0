// The fiber switch (fiber.h). x86-64 System V: a switch pushes the callee-saved registers on
// the running stack, stores the stack pointer, loads the other fiber's and pops its registers;
// the return address on that stack resumes it. A fresh fiber's stack is laid out as if it had
// switched away just before fiber_start, which calls entry(arg) with an aligned stack.
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__x86_64__)

extern "C" void cb_emu_switch_fiber(void** save_sp, void* load_sp);
extern "C" void cb_emu_fiber_start();

asm(R"(
  .text
  .p2align 4
  .globl cb_emu_switch_fiber
  .hidden cb_emu_switch_fiber
  .type cb_emu_switch_fiber, @function
cb_emu_switch_fiber:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cb_emu_switch_fiber, .-cb_emu_switch_fiber

  .p2align 4
  .globl cb_emu_fiber_start
  .hidden cb_emu_fiber_start
  .type cb_emu_fiber_start, @function
cb_emu_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size cb_emu_fiber_start, .-cb_emu_fiber_start
)");

namespace cb_emu {

void prepare_fiber(FiberContext& fiber, void* stack, size_t size, void (*entry)(void*),
                   void* arg) {
  // The top, 16-byte aligned; fiber_start runs with rsp = top, so its call aligns the callee.
  auto top = reinterpret_cast<uintptr_t>(stack) + size;
  top &= ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = reinterpret_cast<void*>(&cb_emu_fiber_start);  // return address of the first switch
  *--sp = nullptr;                                        // rbp
  *--sp = nullptr;                                        // rbx
  *--sp = arg;                                            // r12
  *--sp = reinterpret_cast<void*>(entry);                 // r13
  *--sp = nullptr;                                        // r14
  *--sp = nullptr;                                        // r15
  fiber.sp = sp;
}

void switch_fiber(FiberContext& from, FiberContext& to) { cb_emu_switch_fiber(&from.sp, to.sp); }

}  // namespace cb_emu

#else  // ucontext

namespace cb_emu {
namespace {

// makecontext passes ints; the pointers travel as two halves.
void start_with_halves(unsigned entry_lo, unsigned entry_hi, unsigned arg_lo, unsigned arg_hi) {
  auto join = [](unsigned lo, unsigned hi) { return (uintptr_t(hi) << 32) | uintptr_t(lo); };
  auto entry = reinterpret_cast<void (*)(void*)>(join(entry_lo, entry_hi));
  entry(reinterpret_cast<void*>(join(arg_lo, arg_hi)));
  std::abort();  // entry never returns
}

}  // namespace

void prepare_fiber(FiberContext& fiber, void* stack, size_t size, void (*entry)(void*),
                   void* arg) {
  getcontext(&fiber.uc);
  fiber.uc.uc_stack.ss_sp = stack;
  fiber.uc.uc_stack.ss_size = size;
  fiber.uc.uc_link = nullptr;
  const auto e = reinterpret_cast<uintptr_t>(entry), a = reinterpret_cast<uintptr_t>(arg);
  makecontext(&fiber.uc, reinterpret_cast<void (*)()>(&start_with_halves), 4, unsigned(e),
              unsigned(e >> 32), unsigned(a), unsigned(a >> 32));
}

void switch_fiber(FiberContext& from, FiberContext& to) { swapcontext(&from.uc, &to.uc); }

}  // namespace cb_emu

#endif

namespace cb_emu {

FiberStacks::~FiberStacks() {
  if (base_ != nullptr) munmap(base_, bytes_);
}

void FiberStacks::reserve(int count, size_t size) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t stride = (size + page - 1) / page * page + page;
  if (count <= count_ && stride == stride_) return;
  if (base_ != nullptr) munmap(base_, bytes_);
  bytes_ = stride * (size_t)count;
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "cuda-emu: cannot reserve %zu bytes of fiber stacks\n", bytes_);
    std::abort();
  }
  base_ = static_cast<char*>(p);
  stride_ = stride;
  guard_ = page;
  count_ = count;
  for (int i = 0; i < count; i++) mprotect(base_ + i * stride_, guard_, PROT_NONE);
}

}  // namespace cb_emu
