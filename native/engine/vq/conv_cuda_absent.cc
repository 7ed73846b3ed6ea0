// The cuda conv ops of a build without nvcc: creating them fails with the reason the model
// backends give (model/backends.cc).
#include "../error.h"
#include "conv_backends_cuda.h"

namespace cb {

std::unique_ptr<ConvOps<float>> make_cuda_conv_ops() {
  CB_FAIL("this build has no CUDA backend (nvcc was not found when it was built)");
}

}  // namespace cb
