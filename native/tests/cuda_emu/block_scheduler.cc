// The block scheduler (block_scheduler.h) and the device-side entry points of
// thread_context.h, which act on the scheduler of the calling OS thread.
#include "block_scheduler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "device_limits.h"

namespace cb_emu {
namespace {

thread_local BlockScheduler* t_scheduler = nullptr;

// Fiber stacks: the kernels keep small arrays in registers on the GPU, on the stack here
// (a WMMA accumulator of 16x16 floats is 1 KiB); CB_EMU_STACK_KB overrides the size.
size_t stack_bytes() {
  static const size_t bytes = [] {
    const char* kb = std::getenv("CB_EMU_STACK_KB");
    const long v = kb != nullptr ? std::strtol(kb, nullptr, 10) : 0;
    return size_t(v > 0 ? v : 64) * 1024;
  }();
  return bytes;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

BlockScheduler::BlockScheduler() {
  dynamic_smem_ = static_cast<unsigned char*>(std::aligned_alloc(256, kMaxSharedPerBlockOptin));
}

BlockScheduler::~BlockScheduler() { std::free(dynamic_smem_); }

BlockScheduler& BlockScheduler::here() {
  static thread_local BlockScheduler scheduler;
  return scheduler;
}

bool BlockScheduler::run(const KernelBody& body, const BlockShape& shape, uint3 block_idx,
                         uint64_t seed, std::string* error) {
  const unsigned bx = shape.block.x, by = shape.block.y;
  const int n = int(shape.block.x * shape.block.y * shape.block.z);
  body_ = &body;
  shape_ = shape;
  block_idx_ = block_idx;
  stacks_.reserve(n, stack_bytes());
  threads_.assign(n, Thread());
  runnable_.clear();
  runnable_head_ = 0;
  const int warps = (n + 31) / 32;
  warp_runnable_.assign(warps, {});
  in_order_ = seed == 0;
  const uint64_t linear_block =
      block_idx.x + uint64_t(shape.grid.x) * (block_idx.y + uint64_t(shape.grid.y) * block_idx.z);
  rng_ = seed ^ (linear_block * 0xd1b54a32d192ed03ull);
  greedy_warps_ = !in_order_ && warps > 1 && (splitmix64(rng_) & 1u);
  warp_order_.resize(warps);
  shuffle_warp_order();
  for (int i = 0; i < n; i++) {
    Thread& t = threads_[i];
    t.thread_idx = uint3{i % bx, (i / bx) % by, i / (bx * by)};
    t.block_idx = block_idx;
    t.block_dim = shape.block;
    t.grid_dim = shape.grid;
    t.linear = i;
    t.lane = i % 32;
    t.warp = i / 32;
    prepare_fiber(t.fiber, stacks_.stack(i), stacks_.size(), &thread_main, &t);
    make_runnable(i);
  }
  pending_.clear();
  live_ = n;
  at_barrier_ = 0;
  failed_ = false;
  error_.clear();
  if (shape.dynamic_smem > 0) std::memset(dynamic_smem_, 0xff, shape.dynamic_smem);

  BlockScheduler* const outer = t_scheduler;
  t_scheduler = this;
  for (;;) {
    for (int id; !failed_ && (id = next_runnable()) >= 0;) {
      t_current = &threads_[id];
      switch_fiber(scheduler_, threads_[id].fiber);
    }
    if (failed_ || live_ == 0) break;
    if (at_barrier_ == live_) {
      if (release_barrier()) continue;
      break;
    }
    failed_ = true;
    error_ = describe_deadlock();
    break;
  }
  t_current = nullptr;
  t_scheduler = outer;
  if (failed_) *error = where() + ": " + error_;
  return !failed_;
}

void BlockScheduler::thread_main(void* self) {
  Thread& t = *static_cast<Thread*>(self);
  BlockScheduler& s = *t_scheduler;
  s.body_->run();
  t.wait = Wait::exited;
  s.live_--;
  for (const PendingWarpOp& op : s.pending_) {
    if (op.warp == t.warp && (op.mask >> t.lane & 1u) && !s.failed_) {
      s.failed_ = true;
      s.error_ = "thread " + std::to_string(t.linear) + " (lane " + std::to_string(t.lane) +
                 " of warp " + std::to_string(t.warp) + ") returned while lanes " +
                 hex(op.arrived) + " of its warp wait for it at a warp intrinsic (mask " +
                 hex(op.mask) + ")";
    }
  }
  switch_fiber(t.fiber, s.scheduler_);
  std::abort();  // an exited thread is never resumed
}

void BlockScheduler::make_runnable(int thread) {
  threads_[thread].wait = Wait::none;
  if (greedy_warps_) {
    warp_runnable_[threads_[thread].warp].push_back(thread);
  } else {
    runnable_.push_back(thread);
  }
}

void BlockScheduler::shuffle_warp_order() {
  for (size_t i = 0; i < warp_order_.size(); i++) warp_order_[i] = int(i);
  for (size_t i = warp_order_.size(); i > 1; i--) {
    std::swap(warp_order_[i - 1], warp_order_[splitmix64(rng_) % i]);
  }
}

int BlockScheduler::next_runnable() {
  if (greedy_warps_) {
    for (int w : warp_order_) {
      std::vector<int>& lanes = warp_runnable_[w];
      if (lanes.empty()) continue;
      std::swap(lanes[splitmix64(rng_) % lanes.size()], lanes.back());
      const int id = lanes.back();
      lanes.pop_back();
      return id;
    }
    return -1;
  }
  if (runnable_head_ >= runnable_.size()) {
    runnable_.clear();
    runnable_head_ = 0;
    return -1;
  }
  if (!in_order_) {
    const size_t j = runnable_head_ + splitmix64(rng_) % (runnable_.size() - runnable_head_);
    std::swap(runnable_[runnable_head_], runnable_[j]);
  }
  return runnable_[runnable_head_++];
}

void BlockScheduler::yield_to_scheduler() {
  Thread& t = running();
  switch_fiber(t.fiber, scheduler_);
}

int BlockScheduler::sync_block(BarrierVote vote, int predicate) {
  Thread& t = running();
  t.wait = Wait::barrier;
  t.vote = vote;
  t.predicate = predicate;
  at_barrier_++;
  yield_to_scheduler();
  return t.vote_result;
}

bool BlockScheduler::release_barrier() {
  BarrierVote vote = BarrierVote::none;
  bool first = true;
  int any = 0, all = 1, count = 0;
  for (const Thread& t : threads_) {
    if (t.wait != Wait::barrier) continue;
    if (!first && t.vote != vote) {
      failed_ = true;
      error_ = "threads meet at different kinds of block barrier (__syncthreads and "
               "__syncthreads_or/_and/_count): divergent code?";
      return false;
    }
    vote = t.vote;
    first = false;
    any |= t.predicate != 0;
    all &= t.predicate != 0;
    count += t.predicate != 0;
  }
  const int result = vote == BarrierVote::any     ? any
                     : vote == BarrierVote::all   ? all
                     : vote == BarrierVote::count ? count
                                                  : 0;
  for (int i = 0; i < (int)threads_.size(); i++) {
    if (threads_[i].wait != Wait::barrier) continue;
    threads_[i].vote_result = result;
    make_runnable(i);
  }
  at_barrier_ = 0;
  if (greedy_warps_) shuffle_warp_order();
  return true;
}

unsigned BlockScheduler::existing_lanes(int warp) const {
  const int lanes = std::min(32, (int)threads_.size() - warp * 32);
  return lanes >= 32 ? 0xffffffffu : (1u << lanes) - 1u;
}

unsigned BlockScheduler::exited_lanes(int warp) const {
  unsigned mask = 0;
  const int base = warp * 32, end = std::min(base + 32, (int)threads_.size());
  for (int i = base; i < end; i++) {
    if (threads_[i].wait == Wait::exited) mask |= 1u << (i - base);
  }
  return mask;
}

unsigned BlockScheduler::active_lanes() const {
  const int warp = static_cast<const Thread*>(t_current)->warp;
  return existing_lanes(warp) & ~exited_lanes(warp);
}

void BlockScheduler::warp_collective(unsigned mask, WarpComplete complete, void* arg) {
  Thread& t = running();
  const unsigned bit = 1u << t.lane;
  const std::string who = "lane " + std::to_string(t.lane) + " of warp " + std::to_string(t.warp);
  if (!(mask & bit)) trap(who + " calls a warp intrinsic whose mask " + hex(mask) + " omits it");
  if (mask & ~existing_lanes(t.warp)) {
    trap(who + ": the mask " + hex(mask) + " names lanes past the end of the block");
  }
  if (mask & exited_lanes(t.warp)) {
    trap(who + ": the mask " + hex(mask) + " names lanes that have returned (" +
         hex(mask & exited_lanes(t.warp)) + ")");
  }
  size_t at = pending_.size();
  for (size_t i = 0; i < pending_.size(); i++) {
    if (pending_[i].warp == t.warp && (pending_[i].mask & mask)) at = i;
  }
  if (at < pending_.size()) {
    if (pending_[at].mask != mask) {
      trap(who + " calls a warp intrinsic with mask " + hex(mask) + " while lanes " +
           hex(pending_[at].arrived) + " wait at one with mask " + hex(pending_[at].mask));
    }
    if (pending_[at].complete != complete) {
      trap(who + " calls a different warp intrinsic than lanes " + hex(pending_[at].arrived) +
           " wait at (divergent warp code)");
    }
  } else {
    pending_.push_back(PendingWarpOp{t.warp, mask, 0, complete});
  }
  t.warp_arg = arg;
  pending_[at].arrived |= bit;
  if (pending_[at].arrived != mask) {
    t.wait = Wait::warp;
    yield_to_scheduler();
    return;
  }
  // The last lane: complete the intrinsic for every lane, then release them.
  void* args[32] = {};
  const int base = t.warp * 32;
  for (int l = 0; l < 32; l++) {
    if (mask >> l & 1u) args[l] = threads_[base + l].warp_arg;
  }
  pending_.erase(pending_.begin() + (long)at);
  complete(args, mask);
  for (int l = 0; l < 32; l++) {
    if ((mask >> l & 1u) && l != t.lane) make_runnable(base + l);
  }
}

void BlockScheduler::trap(const std::string& message) {
  if (!failed_) {
    failed_ = true;
    error_ = "thread (" + std::to_string(t_current->thread_idx.x) + "," +
             std::to_string(t_current->thread_idx.y) + "," +
             std::to_string(t_current->thread_idx.z) + "): " + message;
  }
  Thread& t = running();
  switch_fiber(t.fiber, scheduler_);
  std::abort();  // a trapped thread is never resumed
}

std::string BlockScheduler::where() const {
  return "block (" + std::to_string(block_idx_.x) + "," + std::to_string(block_idx_.y) + "," +
         std::to_string(block_idx_.z) + ")";
}

std::string BlockScheduler::describe_deadlock() const {
  int exited = 0;
  for (const Thread& t : threads_) exited += t.wait == Wait::exited;
  std::string s = "deadlock: " + std::to_string(at_barrier_) + " of " +
                  std::to_string(live_) + " running threads wait at a block barrier";
  for (const PendingWarpOp& op : pending_) {
    s += "; lanes " + hex(op.arrived) + " of warp " + std::to_string(op.warp) +
         " wait at a warp intrinsic (mask " + hex(op.mask) + ")";
  }
  s += "; " + std::to_string(exited) + " threads have returned. A barrier or warp intrinsic "
       "that not every thread reaches?";
  return s;
}

// ---- the device-side entry points (thread_context.h) ------------------------------------------

int sync_block(BarrierVote vote, int predicate) { return t_scheduler->sync_block(vote, predicate); }

void warp_collective(unsigned mask, WarpComplete complete, void* arg) {
  t_scheduler->warp_collective(mask, complete, arg);
}

unsigned active_lanes() { return t_scheduler->active_lanes(); }

void trap(const std::string& message) { t_scheduler->trap(message); }

void* dynamic_shared_base() { return t_scheduler->dynamic_shared_base(); }

}  // namespace cb_emu
