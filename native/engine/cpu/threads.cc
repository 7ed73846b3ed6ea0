// set_cpu_threads: one setting for our parallel_for and OpenBLAS's own threads.
#include <thread>

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

}  // namespace cb
