// Launch checks and grid execution (launch.h). A launch is checked as the GPU checks it: a
// block of more than 1024 threads (or past 1024 x 1024 x 64), a grid dimension of 0 or past
// 2^31-1 x 65535 x 65535 is cudaErrorInvalidConfiguration; more dynamic shared memory than the
// kernel's limit (48 KiB unless cudaFuncSetAttribute raised it, at most 227 KiB) is
// cudaErrorInvalidValue. A grid's blocks are shared out among the calling thread and a pool of
// helper OS threads (CB_EMU_THREADS, default: the cores, at most 8), each running one block
// at a time on its own block scheduler; a failing block stops the launch and sets
// cudaErrorLaunchFailure with the block's reason.
#include "launch.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "device_limits.h"
#include "emulator.h"

namespace cb_emu {
namespace {

long env_long(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return end != v ? x : fallback;
}

// CB_EMU_SEED: the scheduler's seed (0: threads in order); fixed by default, so runs repeat.
std::atomic<uint64_t>& seed_setting() {
  static std::atomic<uint64_t> seed{(uint64_t)env_long("CB_EMU_SEED", 1)};
  return seed;
}

uint64_t schedule_seed() { return seed_setting().load(); }

std::string site_text(const LaunchSite& site) {
  return std::string(site.kernel) + " launched at " + site.file + ":" + std::to_string(site.line);
}

std::string dims(dim3 d) {
  return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) +
         ")";
}

// Empty when the launch is valid; else the error and why.
cudaError_t check_launch(const void* kernel, const BlockShape& s, std::string* why) {
  const unsigned block[3] = {s.block.x, s.block.y, s.block.z};
  const unsigned grid[3] = {s.grid.x, s.grid.y, s.grid.z};
  const uint64_t threads = uint64_t(s.block.x) * s.block.y * s.block.z;
  for (int i = 0; i < 3; i++) {
    if (block[i] == 0 || block[i] > kMaxBlockDim[i] || grid[i] == 0 || grid[i] > kMaxGridDim[i]) {
      *why = "grid " + dims(s.grid) + " or block " + dims(s.block) + " outside the device's "
             "limits (block up to (1024, 1024, 64), grid up to (2^31-1, 65535, 65535), no 0)";
      return cudaErrorInvalidConfiguration;
    }
  }
  if (threads > (uint64_t)kMaxThreadsPerBlock) {
    *why = "block " + dims(s.block) + " has " + std::to_string(threads) +
           " threads, more than 1024";
    return cudaErrorInvalidConfiguration;
  }
  const size_t limit = max_dynamic_shared(kernel);
  if (s.dynamic_smem > limit) {
    *why = std::to_string(s.dynamic_smem) + " bytes of dynamic shared memory, more than the " +
           "kernel's limit of " + std::to_string(limit) +
           " (raise it with cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize))";
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

// One launch's blocks, taken one at a time by every participating OS thread.
struct GridJob {
  const KernelBody* body;
  BlockShape shape;
  uint64_t seed;
  int64_t blocks;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string error;

  void work() {
    BlockScheduler& scheduler = BlockScheduler::here();
    const int64_t gx = shape.grid.x, gy = shape.grid.y;
    std::string why;
    for (int64_t b; !failed.load(std::memory_order_relaxed) && (b = next++) < blocks;) {
      const uint3 idx{unsigned(b % gx), unsigned((b / gx) % gy), unsigned(b / (gx * gy))};
      if (!scheduler.run(*body, shape, idx, seed, &why)) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!failed.exchange(true)) error = why;
      }
    }
  }
};

// The helper threads: each waits for a new job, works on it, reports that it is done.
class GridPool {
 public:
  static GridPool& instance() {
    static GridPool* pool = new GridPool();  // never destroyed: helpers may outlive main
    return *pool;
  }

  // Runs every block of the job; one launch at a time.
  void run(GridJob& job) {
    std::lock_guard<std::mutex> serial(launch_mutex_);
    if (helpers_.empty() || job.blocks == 1) {
      job.work();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      generation_++;
      busy_ = (int)helpers_.size();
    }
    wake_.notify_all();
    job.work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  GridPool() {
    const long cores = (long)std::max(1u, std::thread::hardware_concurrency());
    const long threads = std::max(1L, env_long("CB_EMU_THREADS", std::min(cores, 8L)));
    for (long i = 1; i < threads; i++) helpers_.emplace_back([this] { serve(); });
    for (std::thread& t : helpers_) t.detach();
  }

  void serve() {
    uint64_t seen = 0;
    for (;;) {
      GridJob* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      job->work();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_.notify_one();
    }
  }

  std::mutex launch_mutex_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> helpers_;
  GridJob* job_ = nullptr;
  uint64_t generation_ = 0;
  int busy_ = 0;
};

cudaError_t execute(const void* kernel, const LaunchSite& site, const BlockShape& shape,
                    const KernelBody& body) {
  std::string why;
  const cudaError_t invalid = check_launch(kernel, shape, &why);
  if (invalid != cudaSuccess) return fail(invalid, site_text(site) + ": " + why);
  GridJob job;
  job.body = &body;
  job.shape = shape;
  job.seed = schedule_seed();
  job.blocks = int64_t(shape.grid.x) * shape.grid.y * shape.grid.z;
  GridPool::instance().run(job);
  if (job.failed) {
    return fail(cudaErrorLaunchFailure, site_text(site) + ", grid " + dims(shape.grid) +
                                            ", block " + dims(shape.block) + ": " + job.error);
  }
  return cudaSuccess;
}

}  // namespace

void submit(const void* kernel, const LaunchSite& site, const BlockShape& shape,
            std::shared_ptr<const KernelBody> body, cudaStream_t stream) {
  // A bad configuration fails at the launch, also while capturing.
  std::string why;
  const cudaError_t invalid = check_launch(kernel, shape, &why);
  if (invalid != cudaSuccess) {
    fail(invalid, site_text(site) + ": " + why);
    return;
  }
  enqueue(stream, [kernel, site, shape, body] { return execute(kernel, site, shape, *body); });
}

uint64_t set_schedule_seed(uint64_t seed) { return seed_setting().exchange(seed); }

}  // namespace cb_emu
