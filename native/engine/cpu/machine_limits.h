// The limits of this machine that the benchmarks report their figures against, measured in one
// call: the best fp32 GEMM rate at 4096^3 over the engine's own sgemm paths (sgemm.h; the
// blocked loop is left out when a library path exists), the bf16 GEMM rate at 4096^3 (oneDNN's
// bf16 matmul, as the bf16 linear layers run it), and the memory read bandwidth (a buffer far
// larger than the caches, summed by cpu_threads() threads). Each GEMM is the model's linear
// layout, y (m, n) = x (m, k) . w^T; each measurement is one warm-up run, then timed runs until
// its time box is spent (at least one), and reports the fastest run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cb {

struct LimitOptions {
  int gemm_size = 4096;          // m = n = k
  double seconds_each = 2.0;     // the time box of each measurement
  int64_t read_bytes = int64_t(1) << 30;  // the bandwidth buffer
};

struct GemmRate {
  std::string path;  // sgemm_path_name(), or "onednn-matmul-bf16"
  double gflops = 0;
  double seconds = 0;  // of the fastest run
  int runs = 0;        // timed runs
};

struct MachineLimits {
  int threads = 1;  // cpu_threads() during the measurement
  int gemm_size = 0;
  std::vector<GemmRate> fp32;  // every fp32 path measured, in sgemm_paths() order
  GemmRate fp32_best;          // the fastest of them
  std::string fp32_rule;       // sgemm_rule(): what cpu_sgemm picks
  bool bf16_available = false;
  std::string bf16_unavailable;  // why not, when not
  GemmRate bf16;
  double read_gb_per_s = 0;  // 1e9 bytes per second, the fastest pass
  int64_t read_bytes = 0;
  int read_passes = 0;
  std::string cpu_features;  // cpu_feature_names()
  std::string onednn;        // onednn_version() and its ISA, or ""
};

MachineLimits measure_machine_limits(const LimitOptions& options = {});

}  // namespace cb
