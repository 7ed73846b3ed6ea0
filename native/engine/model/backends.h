// Creating a model's op backend by name: "cpu-ref" (plain loops, float or double), "cpu"
// (OpenBLAS, threads; float), "cuda" (GPU kernels, bf16 tensor-core matmuls) and "cuda-fp32"
// (the same with fp32 matmuls, for parity tests). A cuda name without a GPU, or in a build
// without nvcc, is an error saying why.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model_ops.h"

namespace cb {

// The names make_model_ops accepts, in order: cpu-ref, cpu, cuda, cuda-fp32 (the cuda ones also
// in a build without CUDA, where they are refused with the reason).
const std::vector<std::string>& model_backend_names();

template <typename Real>
std::unique_ptr<ModelOps<Real>> make_model_ops(const std::string& name);

}  // namespace cb
