// The conv-op backends by name (vq/conv_ops.h): cpu-ref (float and double), cpu (float), cuda
// (float; refused with the reason where no GPU is usable or CUDA was not compiled).
#include "../error.h"
#include "conv_backends_cuda.h"
#include "conv_ops.h"
#include "conv_ops_cpu.h"
#include "conv_ops_ref.h"

namespace cb {

const std::vector<std::string>& conv_backend_names() {
  // Never destroyed: exit() may run while a worker thread reads it (as model_backend_names()).
  static const auto* names = new std::vector<std::string>{"cpu-ref", "cpu", "cuda"};
  return *names;
}

template <>
std::unique_ptr<ConvOps<float>> make_conv_ops<float>(const std::string& name) {
  if (name == "cpu-ref") return std::make_unique<RefConvOps<float>>();
  if (name == "cpu") return std::make_unique<CpuConvOps>();
  if (name == "cuda") return make_cuda_conv_ops();
  CB_FAIL("unknown conv backend '" + name + "' (cpu-ref, cpu, cuda)");
}

template <>
std::unique_ptr<ConvOps<double>> make_conv_ops<double>(const std::string& name) {
  if (name == "cpu-ref") return std::make_unique<RefConvOps<double>>();
  CB_FAIL("conv backend '" + name + "' has no double-precision version (only cpu-ref)");
}

}  // namespace cb
