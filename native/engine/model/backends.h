// Creating a model's op backend by name: "cpu-ref" (plain loops, float or double) and "cpu"
// (OpenBLAS, threads; float). "cuda" is reported as not available for the model yet.
#pragma once

#include <memory>
#include <string>

#include "model_ops.h"

namespace cb {

template <typename Real>
std::unique_ptr<ModelOps<Real>> make_model_ops(const std::string& name);

}  // namespace cb
