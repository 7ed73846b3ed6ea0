#include "machine_limits.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <random>

#include "../error.h"
#include "bf16_convert.h"
#include "cpu_features.h"
#include "onednn_gemm.h"
#include "parallel.h"
#include "sgemm.h"

namespace cb {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One warm-up run of fn, then timed runs until `budget` seconds are spent (at least one); the
// fastest run and how many were timed.
std::pair<double, int> fastest_run(double budget, const std::function<void()>& fn) {
  fn();
  const auto start = Clock::now();
  double best = 1e300;
  int runs = 0;
  do {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, seconds_since(t0));
    runs++;
  } while (seconds_since(start) < budget);
  return {best, runs};
}

GemmRate gemm_rate(const std::string& path, int size, double budget,
                   const std::function<void()>& fn) {
  const auto [seconds, runs] = fastest_run(budget, fn);
  GemmRate r;
  r.path = path;
  r.seconds = seconds;
  r.runs = runs;
  r.gflops = 2.0 * double(size) * size * size / seconds / 1e9;
  return r;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CB_READ_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CB_READ_CLONES
#endif

// The sum of x[0 .. n), read once, in 64 independent lanes (so the loop is vector loads and adds,
// never waiting on one accumulator).
CB_READ_CLONES float read_sum(const float* x, int64_t n) {
  constexpr int kLanes = 64;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; j++) acc[j] += x[i + j];
  }
  float s = 0;
  for (; i < n; i++) s += x[i];
  for (int j = 0; j < kLanes; j++) s += acc[j];
  return s;
}

}  // namespace

MachineLimits measure_machine_limits(const LimitOptions& options) {
  CB_CHECK(options.gemm_size >= 1 && options.gemm_size <= 16384,
           "machine limits: the GEMM size must be in [1, 16384]");
  CB_CHECK(options.seconds_each > 0, "machine limits: the time box must be positive");
  CB_CHECK(options.read_bytes >= (int64_t(1) << 20), "machine limits: read at least 1 MiB");
  MachineLimits lim;
  lim.threads = cpu_threads();
  lim.gemm_size = options.gemm_size;
  lim.cpu_features = cpu_feature_names();
  if (onednn_compiled()) lim.onednn = onednn_version() + ", " + onednn_isa();
  lim.fp32_rule = sgemm_rule();

  // ---- GEMMs: y (s, s) = x (s, s) . w^T --------------------------------------------------------
  const int s = options.gemm_size;
  const size_t count = size_t(s) * s;
  std::vector<float> x(count), w(count), y(count);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  for (float& v : x) v = uni(rng);
  for (float& v : w) v = uni(rng);
  const bool has_library = sgemm_paths().size() > 1;
  for (SgemmPath path : sgemm_paths()) {
    if (path == SgemmPath::blocked && has_library) continue;
    lim.fp32.push_back(gemm_rate(sgemm_path_name(path), s, options.seconds_each, [&] {
      sgemm_on(path, false, true, s, s, s, 1.0f, x.data(), s, w.data(), s, 0.0f, y.data(), s);
    }));
  }
  lim.fp32_best = *std::max_element(
      lim.fp32.begin(), lim.fp32.end(),
      [](const GemmRate& a, const GemmRate& b) { return a.gflops < b.gflops; });

  lim.bf16_unavailable = bf16_matmul_unavailable();
  lim.bf16_available = lim.bf16_unavailable.empty();
  if (lim.bf16_available) {
    std::vector<bf16_t> x16(count), w16(count);
    float_to_bf16_span(x.data(), x16.data(), int64_t(count));
    float_to_bf16_span(w.data(), w16.data(), int64_t(count));
    lim.bf16 = gemm_rate("onednn-matmul-bf16", s, options.seconds_each, [&] {
      onednn_matmul(GemmType::bf16, false, true, s, s, s, 1.0f, x16.data(), s, w16.data(), s,
                    0.0f, y.data(), s, nullptr);
    });
  }
  x = std::vector<float>();
  w = std::vector<float>();
  y = std::vector<float>();

  // ---- memory read bandwidth -------------------------------------------------------------------
  const int64_t n = options.read_bytes / int64_t(sizeof(float));
  std::vector<float> buffer(size_t(n), 0.0f);
  parallel_for(n, int64_t(1) << 20, [&](int64_t i0, int64_t i1) {  // touch the pages
    for (int64_t i = i0; i < i1; i++) buffer[size_t(i)] = float(i & 7);
  });
  const int parts = cpu_threads();
  std::vector<float> sums(parts);
  const auto [seconds, passes] = fastest_run(options.seconds_each, [&] {
    // One range per thread (parallel_for's grain n / parts gives exactly `parts` ranges).
    parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; p++) {
        const int64_t b = n * p / parts, e = n * (p + 1) / parts;
        sums[size_t(p)] = read_sum(buffer.data() + b, e - b);
      }
    });
  });
  float total = 0;
  for (float v : sums) total += v;
  CB_CHECK(total > 0, "machine limits: the read buffer summed to " + std::to_string(total));
  lim.read_bytes = n * int64_t(sizeof(float));
  lim.read_passes = passes;
  lim.read_gb_per_s = double(lim.read_bytes) / seconds / 1e9;
  return lim;
}

}  // namespace cb
