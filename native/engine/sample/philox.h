// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the
// counter-based generator of the sampler: a draw is a pure function of (key, counter), so the
// uniform of an image's slot is the same whatever the batch, the thread or the backend.
// Usable from host and device code.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CB_HOST_DEVICE __host__ __device__
#else
#define CB_HOST_DEVICE
#endif

namespace cb {

struct Philox4x32 {
  uint32_t v[4];
};

CB_HOST_DEVICE inline void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t p = uint64_t(a) * uint64_t(b);
  *hi = uint32_t(p >> 32);
  *lo = uint32_t(p);
}

// Ten rounds of Philox4x32 over `counter` with the 64-bit `key`.
CB_HOST_DEVICE inline Philox4x32 philox4x32_10(Philox4x32 counter, uint64_t key) {
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  uint32_t c0 = counter.v[0], c1 = counter.v[1], c2 = counter.v[2], c3 = counter.v[3];
  for (int round = 0; round < 10; round++) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, &hi0, &lo0);
    philox_mulhilo(0xCD9E8D57u, c2, &hi1, &lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4x32{{c0, c1, c2, c3}};
}

// The sampler's uniform in [0, 1) with 53 random bits for (seed, image, slot).
CB_HOST_DEVICE inline double sample_uniform(uint64_t seed, int64_t image, int64_t slot) {
  const Philox4x32 counter{{uint32_t(image), uint32_t(uint64_t(image) >> 32), uint32_t(slot),
                            0x5eedu}};
  const Philox4x32 r = philox4x32_10(counter, seed);
  const uint64_t bits = (uint64_t(r.v[0] >> 5) << 26) | uint64_t(r.v[1] >> 6);  // 27 + 26 bits
  return double(bits) * (1.0 / 9007199254740992.0);                             // / 2^53
}

}  // namespace cb
