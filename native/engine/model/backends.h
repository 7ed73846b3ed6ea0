// Creating a model's op backend by name: "cpu-ref" (plain loops, float or double), "cpu"
// (OpenBLAS, threads; float), "cuda" (GPU kernels, bf16 tensor-core matmuls) and "cuda-fp32"
// (the same with fp32 matmuls, for parity tests). A cuda name without a GPU, or in a build
// without nvcc, is an error saying why.
#pragma once

#include <memory>
#include <string>

#include "model_ops.h"

namespace cb {

template <typename Real>
std::unique_ptr<ModelOps<Real>> make_model_ops(const std::string& name);

}  // namespace cb
