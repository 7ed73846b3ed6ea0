// Test images for the VQ tests (test_vq_model.cc, test_vq_train.cc): n values in [-1, 1) from
// a fixed linear congruential sequence, the same on every platform and standard library.
#pragma once

#include <cstddef>
#include <vector>

namespace cbt {

inline std::vector<float> random_images(size_t n, unsigned seed) {
  std::vector<float> x(n);
  unsigned s = seed;
  for (float& v : x) {
    s = s * 1664525u + 1013904223u;
    v = float(s >> 8) / float(1 << 24) * 2 - 1;
  }
  return x;
}

}  // namespace cbt
