// The emulated GPU thread that device code sees (cuda_emu's device_language.h): its built-in
// variables, and the entry points of the block scheduler (block_scheduler.cc) that the
// synchronising intrinsics call. t_current points at the running fiber's thread; the scheduler
// sets it at every switch, so `threadIdx` reads the right thread's index.
#pragma once

#include <cstdint>
#include <string>

#include "vector_types.h"

namespace cb_emu {

struct GpuThread {
  uint3 thread_idx{0, 0, 0};
  uint3 block_idx{0, 0, 0};
  dim3 block_dim, grid_dim;
  int linear = 0;  // x + y blockDim.x + z blockDim.x blockDim.y
  int lane = 0, warp = 0;
};

inline thread_local GpuThread* t_current = nullptr;
inline const GpuThread& current() { return *t_current; }

// How the threads' predicates meet at a block barrier (__syncthreads and its _or/_and/_count).
enum class BarrierVote { none, any, all, count };

// A block-wide barrier over the block's threads that have not exited; returns the vote.
int sync_block(BarrierVote vote, int predicate);

// A warp-level rendezvous of the lanes in `mask` (which must include the caller). Each lane
// passes its own `arg`; the last lane to arrive calls complete(args, mask) with every lane's
// arg (args[lane], for the lanes of the mask), then all of them continue. All lanes of one
// rendezvous must call it with the same mask and the same complete function (the same
// intrinsic); otherwise the kernel fails, as divergent warp intrinsics are undefined.
using WarpComplete = void (*)(void* const* args, unsigned mask);
void warp_collective(unsigned mask, WarpComplete complete, void* arg);

// Lanes of the caller's warp that exist (the last warp of a block may be partial) and have not
// exited.
unsigned active_lanes();

// Fails the kernel with `message` (the launch reports cudaErrorLaunchFailure naming it); the
// calling thread never resumes.
[[noreturn]] void trap(const std::string& message);

// The block's dynamic shared memory (the launch's third configuration value), aligned for any
// type; filled with 0xff bytes (NaN floats, -1 integers) when the block starts.
void* dynamic_shared_base();

}  // namespace cb_emu
