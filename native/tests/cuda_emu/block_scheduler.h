// Runs one thread block of an emulated kernel: every GPU thread of the block is a fiber on the
// calling OS thread (fiber.h). A fiber runs until it reaches a synchronisation point (a block
// barrier, a warp rendezvous) or returns; the scheduler then picks the next runnable fiber from
// a generator seeded per (seed, block), so the interleaving of the threads between two barriers
// changes with the seed: a missing __syncthreads lets a thread read shared memory that another
// one has not written yet, or has already overwritten, and the result is wrong. Each block
// draws one of two policies:
// - any thread: the next fiber is any runnable one, at random;
// - greedy warps: the warps get a random order at each barrier, and the first warp in it with a
//   runnable lane runs (a random one of its lanes), as a GPU's greedy-then-oldest warp
//   scheduler may run one warp far ahead of the others. Picking any thread almost never lets a
//   warp get through several shuffles before another warp has run at all, so a race between
//   warps across warp intrinsics (a warp rewriting shared memory that a late warp still has to
//   read) shows only under this one.
// Seed 0 runs the fibers in thread order instead. Every barrier releases only when all threads
// that have not exited wait at it; a block whose threads can no longer all meet (threads at
// different barriers, a warp rendezvous missing a lane) fails as deadlocked.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fiber.h"
#include "thread_context.h"

namespace cb_emu {

// What every thread of a launch runs (the kernel with its arguments).
class KernelBody {
 public:
  virtual ~KernelBody() = default;
  virtual void run() const = 0;
};

struct BlockShape {
  dim3 grid, block;
  size_t dynamic_smem = 0;
};

class BlockScheduler {
 public:
  BlockScheduler();
  ~BlockScheduler();
  BlockScheduler(const BlockScheduler&) = delete;
  BlockScheduler& operator=(const BlockScheduler&) = delete;

  // Runs block `block_idx` to its end. False when it failed (a trap, a deadlock): `error` says
  // why, naming the block.
  bool run(const KernelBody& body, const BlockShape& shape, uint3 block_idx, uint64_t seed,
           std::string* error);

  // This OS thread's scheduler.
  static BlockScheduler& here();

  // For the device-side entry points of thread_context.h.
  int sync_block(BarrierVote vote, int predicate);
  void warp_collective(unsigned mask, WarpComplete complete, void* arg);
  unsigned active_lanes() const;
  [[noreturn]] void trap(const std::string& message);
  void* dynamic_shared_base() const { return dynamic_smem_; }

 private:
  enum class Wait { none, barrier, warp, exited };
  struct Thread : GpuThread {
    FiberContext fiber;
    Wait wait = Wait::none;
    BarrierVote vote = BarrierVote::none;
    int predicate = 0, vote_result = 0;
    void* warp_arg = nullptr;
  };
  // A warp rendezvous in progress: the lanes of `mask` that have arrived so far.
  struct PendingWarpOp {
    int warp;
    unsigned mask, arrived;
    WarpComplete complete;
  };

  static void thread_main(void* self);
  Thread& running() { return *static_cast<Thread*>(t_current); }
  void make_runnable(int thread);
  int next_runnable();
  void shuffle_warp_order();
  void yield_to_scheduler();
  bool release_barrier();
  std::string describe_deadlock() const;
  std::string where() const;
  unsigned existing_lanes(int warp) const;
  unsigned exited_lanes(int warp) const;

  FiberStacks stacks_;
  std::vector<Thread> threads_;
  std::vector<int> runnable_;  // any-thread and in-order policies
  size_t runnable_head_ = 0;
  bool greedy_warps_ = false;
  std::vector<std::vector<int>> warp_runnable_;  // greedy warps: runnable threads per warp
  std::vector<int> warp_order_;                  // greedy warps: the warps, first to run first
  std::vector<PendingWarpOp> pending_;
  FiberContext scheduler_;
  const KernelBody* body_ = nullptr;
  BlockShape shape_;
  uint3 block_idx_{0, 0, 0};
  uint64_t rng_ = 0;
  bool in_order_ = false;
  int live_ = 0, at_barrier_ = 0;
  bool failed_ = false;
  std::string error_;
  unsigned char* dynamic_smem_ = nullptr;
};

}  // namespace cb_emu
