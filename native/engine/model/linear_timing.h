// Timing of the model's own linear, the reference of the benchmarks' "fraction of the matmul
// rate" (the TypeScript benches through the addon's linearSeconds, and cb_engine_bench). It
// runs the kernel the model's forward runs for y (n, out) = x (n, in) . w^T + b on a backend:
// under mixed precision (cuda) the bf16 tensor-core linear_mixed on a bf16 input and a bf16
// weight copy, as for the LayerNorm and GELU outputs; otherwise ModelOps::linear (OpenBLAS
// sgemm on cpu, the fp32 kernel on cuda-fp32). The operands live in the backend's memory and
// are allocated and filled once, before any timed run: no allocation or copy is timed.
#pragma once

#include <cstdint>
#include <vector>

#include "model_ops.h"

namespace cb {

// The precision of the kernel time_model_linear runs on `ops`: "bf16" (mixed) or "fp32".
const char* model_linear_precision(ModelOps<float>& ops);

// Seconds of each of `repeats` runs (each followed by a device synchronize), after one
// warm-up run. Throws cb::Error for sizes outside [1, 2^31) (n: [1, 2^40]) or repeats < 1.
std::vector<double> time_model_linear(ModelOps<float>& ops, int64_t n, int in, int out,
                                      int repeats);

}  // namespace cb
