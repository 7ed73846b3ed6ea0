#include "init.h"

#include <algorithm>
#include <cmath>

namespace cb {
namespace {

// SplitMix64: a seeded stream of 64-bit values, the same on every platform.
struct SplitMix {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double)((next() >> 11) + 1) / 9007199254740993.0; }  // (0, 1)
  double normal() {  // Box-Muller
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

}  // namespace

template <typename Real>
void rope_axial_angles(const ModelConfig& c, Real* angles) {
  const int pairs = c.rope_pairs();
  const int scale_pairs = std::max(1, pairs / 8);
  const int spatial = pairs - scale_pairs;
  const int x_pairs = spatial / 2, y_pairs = spatial - x_pairs;
  const double N = c.scales.back();
  const int K = (int)c.scales.size();
  // Frequencies fall geometrically from pi (neighbours on the final grid differ by half a turn)
  // to pi / N (the whole grid spans half a turn).
  auto spatial_freq = [&](int i, int count) {
    return count <= 1 ? M_PI : M_PI * std::pow(N, -(double)i / (count - 1));
  };
  auto scale_freq = [&](int i) {
    return scale_pairs <= 1 ? M_PI / 2 : (M_PI / 2) * std::pow(std::max(K, 2), -(double)i / (scale_pairs - 1));
  };
  std::fill(angles, angles + c.positions() * pairs, Real(0));
  for (int k = 0; k < K; k++) {
    const int s = c.scales[k];
    for (int y = 0; y < s; y++) {
      for (int x = 0; x < s; x++) {
        Real* a = angles + (2 + c.scale_offset(k) + (int64_t)y * s + x) * pairs;  // (pairs)
        const double cx = (x + 0.5) * N / s, cy = (y + 0.5) * N / s;
        int p = 0;
        for (int i = 0; i < x_pairs; i++) a[p++] = Real(cx * spatial_freq(i, x_pairs));
        for (int i = 0; i < y_pairs; i++) a[p++] = Real(cy * spatial_freq(i, y_pairs));
        for (int i = 0; i < scale_pairs; i++) a[p++] = Real(k * scale_freq(i));
      }
    }
  }
}

template <typename Real>
void init_params(const ModelConfig& c, const ParamLayout& layout, uint64_t seed, Real* params) {
  for (size_t i = 0; i < layout.entries().size(); i++) {
    const ParamEntry& e = layout.entries()[i];
    Real* p = params + e.offset;
    // Each tensor has its own stream, so adding a tensor does not reshuffle the others.
    SplitMix rng{seed * 0x2545f4914f6cdd1dull + i};
    switch (e.init) {
      case Init::Zeros:
        std::fill(p, p + e.size, Real(0));
        break;
      case Init::Normal:
        for (int64_t j = 0; j < e.size; j++) p[j] = Real(e.init_std * rng.normal());
        break;
      case Init::RopeAxial:
        rope_axial_angles(c, p);
        break;
    }
  }
}

template void init_params<float>(const ModelConfig&, const ParamLayout&, uint64_t, float*);
template void init_params<double>(const ModelConfig&, const ParamLayout&, uint64_t, double*);
template void rope_axial_angles<float>(const ModelConfig&, float*);
template void rope_axial_angles<double>(const ModelConfig&, double*);

}  // namespace cb
