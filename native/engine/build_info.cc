#include "build_info.h"

#include "cb_build_config.h"  // generated from build_config.h.in
#include "cpu/parallel.h"

#ifdef CB_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace cb {

BuildInfo build_info() {
  BuildInfo info;
  info.version = CB_VERSION;
  info.build_type = CB_BUILD_TYPE;
  info.compiler = CB_COMPILER;
  info.cxx_flags = CB_CXX_FLAGS;
#ifdef CB_HAVE_OPENBLAS
  info.blas = "openblas";
  const char* config = openblas_get_config();
  info.blas_config = config ? config : "";
  info.blas_threads = openblas_get_num_threads();
#else
  info.blas = "blocked";
  info.blas_threads = cpu_threads();
#endif
#ifdef CB_HAVE_CUDA
  info.cuda_compiled = true;
  info.cuda_compiler = CB_CUDA_COMPILER;
  info.cuda_flags = CB_CUDA_FLAGS;
  info.cuda_architectures = CB_CUDA_ARCHITECTURES;
#endif
  info.cuda = cuda_status();
  return info;
}

}  // namespace cb
