#include "backends.h"

#include "../cpu/model_ops_cpu.h"
#include "../cpu/model_ops_ref.h"
#include "../cuda/cuda.h"
#include "../error.h"
#ifdef CB_HAVE_CUDA
#include "../cuda/model_ops_cuda.h"
#endif

namespace cb {

const std::vector<std::string>& model_backend_names() {
  // Never destroyed: exit() may run while a worker thread reads it (see host_memory()).
  static const auto* names = new std::vector<std::string>{"cpu-ref", "cpu", "cuda", "cuda-fp32"};
  return *names;
}

template <>
std::unique_ptr<ModelOps<float>> make_model_ops<float>(const std::string& name) {
  if (name == "cpu-ref") return std::make_unique<RefModelOps<float>>();
  if (name == "cpu") return std::make_unique<CpuModelOps>();
  if (name == "cuda" || name == "cuda-fp32") {
#ifdef CB_HAVE_CUDA
    const CudaStatus status = cuda_status();
    CB_CHECK(status.available, "the cuda backend is not available: " + status.reason);
    return std::make_unique<CudaModelOps>(name == "cuda" ? MatmulPrecision::bf16
                                                         : MatmulPrecision::fp32);
#else
    CB_FAIL("this build has no CUDA backend (nvcc was not found when it was built)");
#endif
  }
  CB_FAIL("unknown model backend '" + name + "' (cpu-ref, cpu, cuda, cuda-fp32)");
}

template <>
std::unique_ptr<ModelOps<float>> make_model_ops<float>(const std::string& name,
                                                       Precision precision) {
  if (precision == Precision::fp32) {
    return make_model_ops<float>(name == "cuda" ? std::string("cuda-fp32") : name);
  }
  if (name == "cpu") return std::make_unique<CpuModelOps>(Precision::bf16);
  if (name == "cuda") return make_model_ops<float>(name);
  CB_CHECK(name != "cpu-ref" && name != "cuda-fp32",
           "model backend '" + name + "' has no bf16 precision (bf16: cpu or cuda)");
  return make_model_ops<float>(name);  // an unknown name: its error
}

template <>
std::unique_ptr<ModelOps<double>> make_model_ops<double>(const std::string& name) {
  if (name == "cpu-ref") return std::make_unique<RefModelOps<double>>();
  CB_FAIL("model backend '" + name + "' has no double-precision version (only cpu-ref)");
}

template <>
std::unique_ptr<ModelOps<double>> make_model_ops<double>(const std::string& name,
                                                         Precision precision) {
  CB_CHECK(precision == Precision::fp32, "model backends in double precision have no bf16");
  return make_model_ops<double>(name);
}

}  // namespace cb
