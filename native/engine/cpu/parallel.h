// parallel_for: split [0, count) into contiguous ranges, one std::thread each.
// An exception thrown in any range is rethrown in the caller (never std::terminate).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
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
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : (int)hw;
}

// Sets the threads of the cpu backend, OpenBLAS included (0: one per hardware thread).
// The engine's own loops give every output to one thread, so their results never depend on it
// (see model_ops_cpu.h, Determinism). OpenBLAS's sgemm does not promise that: at another thread
// count it may use other edge kernels and change the last bits of some products (measured: about
// 1 value in 5 of a 64x2000x576 product between 1 and 2 threads). Runs repeat bit for bit at a
// fixed thread count. Defined in threads.cc.
void set_cpu_threads(int threads);

// fn(begin, end) is called for disjoint ranges covering [0, count); ranges hold at least
// `grain` items, so small problems run on the calling thread alone.
template <typename Fn>
void parallel_for(int64_t count, int64_t grain, Fn fn) {
  if (count <= 0) return;
  const int64_t max_parts = std::max<int64_t>(1, count / std::max<int64_t>(1, grain));
  const int parts = (int)std::min<int64_t>(cpu_threads(), max_parts);
  if (parts == 1) {
    fn(int64_t(0), count);
    return;
  }
  std::vector<std::exception_ptr> errors(parts);
  std::vector<std::thread> threads;
  threads.reserve(parts - 1);
  auto run = [&](int part) {
    const int64_t begin = count * part / parts, end = count * (part + 1) / parts;
    try {
      fn(begin, end);
    } catch (...) {
      errors[part] = std::current_exception();
    }
  };
  for (int part = 1; part < parts; part++) threads.emplace_back(run, part);
  run(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace cb
