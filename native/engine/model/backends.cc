#include "backends.h"

#include "../cpu/model_ops_cpu.h"
#include "../cpu/model_ops_ref.h"
#include "../error.h"

namespace cb {

template <>
std::unique_ptr<ModelOps<float>> make_model_ops<float>(const std::string& name) {
  if (name == "cpu-ref") return std::make_unique<RefModelOps<float>>();
  if (name == "cpu") return std::make_unique<CpuModelOps>();
  if (name == "cuda") CB_FAIL("the CUDA backend does not run the transformer yet; use --device cpu");
  CB_FAIL("unknown model backend '" + name + "' (cpu-ref, cpu)");
}

template <>
std::unique_ptr<ModelOps<double>> make_model_ops<double>(const std::string& name) {
  if (name == "cpu-ref") return std::make_unique<RefModelOps<double>>();
  CB_FAIL("model backend '" + name + "' has no double-precision version (only cpu-ref)");
}

}  // namespace cb
