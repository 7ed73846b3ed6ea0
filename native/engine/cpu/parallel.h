// parallel_for: split [0, count) into contiguous ranges, one thread each (run_parts, a pool).
// An exception thrown in any range is rethrown in the caller (never std::terminate).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

namespace cb {

// The thread limit set by set_cpu_threads (0: one per hardware thread).
inline std::atomic<int>& cpu_thread_limit() {
  static std::atomic<int> limit{0};
  return limit;
}

inline int cpu_threads() {
  const int limit = cpu_thread_limit().load();
  if (limit > 0) return limit;
  // Read once: hardware_concurrency reads sysfs on every call (a few us, in every GEMM call).
  static const int hw = [] {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : (int)n;
  }();
  return hw;
}

// The thread count that GEMMs cut their products for (onednn_gemm.cc, split_for), set with
// set_cpu_threads; 0: cpu_threads(). The cut, not the thread that runs a piece, fixes a
// product's rounding, so processes that run fewer threads than this (the ranks of one machine,
// src/dist/world.ts) compute the same bits as one process with this many threads.
inline std::atomic<int>& cpu_split_limit() {
  static std::atomic<int> limit{0};
  return limit;
}
inline int cpu_split_threads() {
  const int limit = cpu_split_limit().load();
  return limit > 0 ? limit : cpu_threads();
}

// Sets the threads of the cpu backend, OpenBLAS and oneDNN included (0: one per hardware
// thread; oneDNN's OpenMP count is applied on each calling thread, see onednn_gemm.h), and the
// thread count that products are cut for (cpu_split_threads; -1: the same as `threads`).
// The engine's own loops give every output to one thread, so their results never depend on it
// (see model_ops_cpu.h, Determinism). OpenBLAS's sgemm does not promise that: at another thread
// count it may use other edge kernels and change the last bits of some products (measured: about
// 1 value in 5 of a 64x2000x576 product between 1 and 2 threads). Runs repeat bit for bit at a
// fixed thread count. Defined in threads.cc.
void set_cpu_threads(int threads, int split_threads = -1);

// Whether the calling thread is running a range of a parallel_for (the caller's own share
// included). A GEMM called from there runs on that thread alone (sgemm.h), so GEMM threads
// never pile up under ours.
inline int& parallel_for_depth() {
  thread_local int depth = 0;
  return depth;
}
inline bool in_parallel_for() { return parallel_for_depth() > 0; }

// Calls part(0) .. part(parts - 1), each once, part 0 on the calling thread and each other on a
// worker of the process's thread pool (or, while another caller has the pool, on a std::thread
// of its own), and returns when all are done; part must not throw (threads.cc).
void run_parts(int parts, const std::function<void(int)>& part);

// fn(begin, end) is called for disjoint ranges covering [0, count); ranges hold at least
// `grain` items, so small problems run on the calling thread alone.
template <typename Fn>
void parallel_for(int64_t count, int64_t grain, Fn fn) {
  if (count <= 0) return;
  const int64_t max_parts = std::max<int64_t>(1, count / std::max<int64_t>(1, grain));
  const int parts = (int)std::min<int64_t>(cpu_threads(), max_parts);
  struct InRange {  // marks this thread as inside a range while it runs one
    InRange() { parallel_for_depth()++; }
    ~InRange() { parallel_for_depth()--; }
  };
  if (parts == 1) {
    // A loop that splits at a larger thread count counts as one here too, so that a GEMM in
    // it is cut the same way at every thread count (the shape decides, not the threads).
    if (max_parts > 1) {
      InRange marked;
      fn(int64_t(0), count);
    } else {
      fn(int64_t(0), count);
    }
    return;
  }
  std::vector<std::exception_ptr> errors(parts);
  run_parts(parts, [&](int part) {
    const int64_t begin = count * part / parts, end = count * (part + 1) / parts;
    try {
      InRange marked;
      fn(begin, end);
    } catch (...) {
      errors[part] = std::current_exception();
    }
  });
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace cb
