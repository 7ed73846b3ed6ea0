// set_cpu_threads: one setting for our parallel_for and OpenBLAS's threads (oneDNN runs on the
// calling thread alone, split by onednn_gemm.cc over parallel_for ranges); run_parts: the
// threads of parallel_for.
#include <thread>
#include <vector>

#include "../error.h"
#include "parallel.h"

#ifdef CB_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace cb {

void set_cpu_threads(int threads) {
  CB_CHECK(threads >= 0 && threads <= 1024, "threads must be in [0, 1024]");
  cpu_thread_limit().store(threads);
#ifdef CB_HAVE_OPENBLAS
  openblas_set_num_threads(cpu_threads());
#endif
}

void run_parts(int parts, const std::function<void(int)>& part) {
  std::vector<std::thread> threads;
  threads.reserve(parts - 1);
  for (int p = 1; p < parts; p++) threads.emplace_back(part, p);
  part(0);
  for (auto& t : threads) t.join();
}

}  // namespace cb
