// set_cpu_threads: one setting for our parallel_for and OpenBLAS's threads (oneDNN runs on the
// calling thread alone, split by onednn_gemm.cc over parallel_for ranges); run_parts: the
// threads of parallel_for, a persistent pool.
//
// Why a pool: a sampling step makes a few hundred parallel_for calls, and starting and joining
// a std::thread per call cost 50-75 us each here (measured), besides losing every thread_local
// buffer (oneDNN's per-thread scratch and stream) with the thread. The pool's workers live for
// the process; between calls they spin briefly, then sleep on a condition variable, so an idle
// engine takes no CPU from other work on a shared machine.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "../error.h"
#include "parallel.h"

#ifdef CB_HAVE_OPENBLAS
#include <cblas.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_SPIN_PAUSE() _mm_pause()
#else
#define CB_SPIN_PAUSE() ((void)0)
#endif

namespace cb {

void set_cpu_threads(int threads, int split_threads) {
  CB_CHECK(threads >= 0 && threads <= 1024, "threads must be in [0, 1024]");
  CB_CHECK(split_threads >= -1 && split_threads <= 1024, "split threads must be in [-1, 1024]");
  cpu_thread_limit().store(threads);
  cpu_split_limit().store(split_threads < 0 ? threads : split_threads);
#ifdef CB_HAVE_OPENBLAS
  openblas_set_num_threads(cpu_threads());
#endif
}

namespace {

// How long an idle worker polls for the next job before it sleeps: a sampling step's calls come
// microseconds apart, and a wake-up from the condition variable costs tens of microseconds on
// this VM, so polling this long catches nearly every call without one; past it an idle engine
// takes no CPU. Past kBusySpin the poll yields between looks, so that a thread with work (the
// JavaScript side preparing the next batch, another process) gets the core first.
constexpr auto kSpinTime = std::chrono::microseconds(1000);
constexpr auto kBusySpin = std::chrono::microseconds(50);
// Pauses the caller polls for its workers before it yields between looks.
constexpr int kCallerSpins = 2048;

class ThreadPool {
 public:
  // Runs part(0..parts-1) with part 0 on the caller; false when the pool is in use by another
  // caller (a second thread of the process, or a range of a running job calling back in).
  bool try_run(int parts, const std::function<void(int)>& part) {
    bool idle = false;
    if (!busy_.compare_exchange_strong(idle, true, std::memory_order_acquire)) return false;
    grow(parts - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &part;
      parts_ = parts;
      remaining_.store(parts - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    part(0);
    // Wait for the workers' parts: they finish about when ours does, so poll; then yield
    // between looks (a worker the OS has not scheduled yet needs this core).
    for (int spins = 0; remaining_.load(std::memory_order_acquire) != 0; spins++) {
      if (spins < kCallerSpins) {
        CB_SPIN_PAUSE();
      } else {
        std::this_thread::yield();
      }
    }
    busy_.store(false, std::memory_order_release);
    return true;
  }

 private:
  // Starts workers until there are `count`; never stops any (the pool lives for the process).
  void grow(int count) {
    while (int(workers_.size()) < count) {
      const int index = int(workers_.size()) + 1;  // part index it serves
      // The worker starts from the generation before the job about to be posted, which it may
      // only see posted once it runs.
      const uint64_t before = generation_.load(std::memory_order_acquire);
      workers_.emplace_back([this, index, before] { serve(index, before); });
      workers_.back().detach();
    }
  }

  void serve(int index, uint64_t seen) {
    for (;;) {
      uint64_t now = generation_.load(std::memory_order_acquire);
      const auto start = std::chrono::steady_clock::now();
      const auto busy_until = start + kBusySpin, spin_until = start + kSpinTime;
      for (auto t = start; now == seen && t < spin_until; t = std::chrono::steady_clock::now()) {
        if (t < busy_until) {
          for (int i = 0; i < 64; i++) CB_SPIN_PAUSE();
        } else {
          std::this_thread::yield();
        }
        now = generation_.load(std::memory_order_acquire);
      }
      const std::function<void(int)>* job;
      int parts;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
        parts = parts_;
      }
      if (index < parts) {
        (*job)(index);
        remaining_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  // Set while a caller's job runs (an atomic, not a mutex: a range calling back in from the same
  // thread must see it taken, not deadlock or fail undefined).
  std::atomic<bool> busy_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};  // one more per job
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0;
  std::atomic<int> remaining_{0};  // worker parts of the current job not yet done
  std::vector<std::thread> workers_;
};

ThreadPool& pool() {
  static auto* p = new ThreadPool;  // never destroyed: workers may outlive static destructors
  return *p;
}

}  // namespace

void run_parts(int parts, const std::function<void(int)>& part) {
  if (parts <= 1) {
    if (parts == 1) part(0);
    return;
  }
  if (pool().try_run(parts, part)) return;
  // The pool is busy: this caller's parts get threads of their own.
  std::vector<std::thread> threads;
  threads.reserve(parts - 1);
  for (int p = 1; p < parts; p++) threads.emplace_back(part, p);
  part(0);
  for (auto& t : threads) t.join();
}

}  // namespace cb
