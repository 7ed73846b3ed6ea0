// The cuda conv ops as the factory (vq/conv_backends.cc) sees them: no CUDA headers here.
// Defined by the CUDA backend (cuda/conv_*.cu) when CUDA was compiled, by vq/conv_cuda_absent.cc
// otherwise; throws cb::Error with the reason when no GPU is usable.
#pragma once

#include <memory>

#include "conv_ops.h"

namespace cb {

std::unique_ptr<ConvOps<float>> make_cuda_conv_ops();

}  // namespace cb
