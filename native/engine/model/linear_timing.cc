#include "linear_timing.h"

#include <chrono>
#include <random>
#include <string>

#include "../error.h"

namespace cb {
namespace {

// `count` values uniform in [-1, 1) from a fixed seed, in the backend's memory.
DeviceArray<float> random_array(DeviceMemory& memory, int64_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> host(static_cast<size_t>(count));
  for (float& v : host) v = uni(rng);
  DeviceArray<float> array(memory, count);
  array.upload(host.data(), count);
  return array;
}

}  // namespace

const char* model_linear_precision(ModelOps<float>& ops) {
  return ops.mixed() != nullptr ? "bf16" : "fp32";
}

std::vector<double> time_model_linear(ModelOps<float>& ops, int64_t n, int in, int out,
                                      int repeats) {
  CB_CHECK(n >= 1 && n <= (int64_t(1) << 40), "linear timing: rows must be in [1, 2^40], got " +
                                                  std::to_string(n));
  CB_CHECK(in >= 1 && out >= 1, "linear timing: in and out must be at least 1, got " +
                                    std::to_string(in) + " and " + std::to_string(out));
  CB_CHECK(repeats >= 1, "linear timing: repeats must be at least 1, got " +
                             std::to_string(repeats));
  DeviceMemory& memory = ops.memory();
  DeviceArray<float> x = random_array(memory, n * in, 1);              // (n, in)
  DeviceArray<float> w = random_array(memory, int64_t(out) * in, 2);  // (out, in)
  DeviceArray<float> b = random_array(memory, out, 3);                 // (out)
  DeviceArray<float> y(memory, n * out);                               // (n, out)
  MixedPrecisionOps* mixed = ops.mixed();
  DeviceArray<bf16_t> x16, w16;
  if (mixed != nullptr) {
    x16 = DeviceArray<bf16_t>(memory, n * in);
    w16 = DeviceArray<bf16_t>(memory, int64_t(out) * in);
    mixed->to_bf16(n, in, x.data(), in, x16.data(), in);
    mixed->to_bf16(out, in, w.data(), in, w16.data(), in);
  }
  auto run = [&] {
    if (mixed != nullptr) {
      mixed->linear_mixed(n, in, out, x16.data(), w16.data(), b.data(), y.data());
    } else {
      ops.linear(n, in, out, x.data(), w.data(), b.data(), y.data());
    }
    memory.synchronize();
  };
  run();  // warm-up: first-call costs (scratch, code loading) stay out of the timing
  std::vector<double> seconds;
  for (int r = 0; r < repeats; r++) {
    const auto start = std::chrono::steady_clock::now();
    run();
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return seconds;
}

}  // namespace cb
