// Creating a model's op backend by name: "cpu-ref" (plain loops, float or double), "cpu"
// (oneDNN / OpenBLAS GEMMs, threads; float), "cuda" (GPU kernels, bf16 tensor-core matmuls) and
// "cuda-fp32" (the same with fp32 matmuls, for parity tests). A cuda name without a GPU, or in a
// build without nvcc, is an error saying why.
//
// With a Precision (precision.h), the matmul precision is the caller's choice:
//   make_model_ops<float>("cpu", Precision::bf16)   the cpu backend with bf16 matmuls and the
//                                                   mixed-precision ops ("cpu-bf16"); a cb::Error
//                                                   naming avx512_bf16 on a CPU without it
//   make_model_ops<float>("cpu", Precision::fp32)   the same as make_model_ops<float>("cpu")
//   "cuda" with bf16 / fp32                         "cuda" / "cuda-fp32" (the flag means the same)
//   "cpu-ref" and "cuda-fp32" take fp32 only (bf16 is an error).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model_ops.h"
#include "precision.h"

namespace cb {

// The names make_model_ops accepts, in order: cpu-ref, cpu, cuda, cuda-fp32 (the cuda ones also
// in a build without CUDA, where they are refused with the reason).
const std::vector<std::string>& model_backend_names();

template <typename Real>
std::unique_ptr<ModelOps<Real>> make_model_ops(const std::string& name);
template <typename Real>
std::unique_ptr<ModelOps<Real>> make_model_ops(const std::string& name, Precision precision);

}  // namespace cb
