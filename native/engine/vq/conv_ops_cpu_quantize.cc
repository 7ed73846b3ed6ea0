// The quantiser of the cpu conv ops. Per image: the latent columns are l2-normalised into
// scratch zn (D, HW); per tile of m positions one sgemm gives every z.e, dots (m, K) =
// zn[:, tile]^T codebook^T; then each row's argmin of |z|^2 + |e|^2 - 2 z.e (first index wins a
// tie), threaded over rows. Tiles hold as many positions as the scratch bound allows.
// embed_codes is a gather, threaded over channels.
#include <algorithm>
#include <cmath>

#include "../cpu/parallel.h"
#include "../cpu/sgemm.h"
#include "conv_ops_cpu.h"

namespace cb {

void CpuConvOps::quantize_l2(int B, int D, int64_t HW,
                             const float* z,         // (B, D, HW)
                             const float* codebook,  // (K, D), rows l2-normalised
                             int K,
                             int32_t* index,  // (B, HW)
                             float* zq,       // (B, D, HW) or null
                             float* dist2) {  // (B, HW) or null
  const int n = (int)HW;
  const int tile = (int)std::min<int64_t>(HW, (int64_t)(tile_floats(K) / K));
  float* zn = scratch((size_t)D * HW + 2 * (size_t)HW + K + (size_t)tile * K);  // (D, HW)
  float* z2 = zn + (int64_t)D * HW;    // (HW) |zn|^2
  float* norm = z2 + HW;               // (HW)
  float* e2 = norm + HW;               // (K) |e|^2
  float* dots = e2 + K;                // (tile, K)
  for (int e = 0; e < K; e++) {
    float sq = 0;
    const float* row = codebook + (int64_t)e * D;  // (D)
    for (int d = 0; d < D; d++) sq += row[d] * row[d];
    e2[e] = sq;
  }
  for (int b = 0; b < B; b++) {
    const float* zb = z + (int64_t)b * D * HW;  // (D, HW)
    // Column norms, summed over d in order, row by row so the loops run along HW.
    std::fill(norm, norm + HW, 0.0f);
    for (int d = 0; d < D; d++) {
      for (int64_t i = 0; i < HW; i++) norm[i] += zb[d * HW + i] * zb[d * HW + i];
    }
    for (int64_t i = 0; i < HW; i++) norm[i] = std::max(std::sqrt(norm[i]), 1e-12f);
    std::fill(z2, z2 + HW, 0.0f);
    for (int d = 0; d < D; d++) {
      for (int64_t i = 0; i < HW; i++) {
        const float u = zb[d * HW + i] / norm[i];
        zn[d * HW + i] = u;
        z2[i] += u * u;
      }
    }
    for (int i0 = 0; i0 < n; i0 += tile) {
      const int m = std::min(tile, n - i0);
      // zn + i0 is (D, m) at stride HW, read as its transpose (m, D); codebook (K, D) as (D, K).
      cpu_sgemm(true, true, m, K, D, 1.0f, zn + i0, n, codebook, D, 0.0f, dots, K);
      parallel_for(m, std::max<int64_t>(1, 16384 / K), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
          const float* dot = dots + r * K;  // (K)
          const int64_t i = i0 + r;
          int best = 0;
          float best_dist = INFINITY;
          for (int e = 0; e < K; e++) {
            const float dist = z2[i] + e2[e] - 2.0f * dot[e];
            if (dist < best_dist) {  // strict: the first index wins a tie
              best_dist = dist;
              best = e;
            }
          }
          index[(int64_t)b * HW + i] = best;
          if (dist2 != nullptr) dist2[(int64_t)b * HW + i] = best_dist;
        }
      });
    }
    if (zq != nullptr) {
      embed_codes(1, D, HW, index + (int64_t)b * HW, codebook, K, zq + (int64_t)b * D * HW);
    }
  }
}

void CpuConvOps::embed_codes(int B, int D, int64_t HW,
                             const int32_t* index,  // (B, HW)
                             const float* codebook,  // (K, D)
                             int K,
                             float* zq) {  // (B, D, HW)
  parallel_for((int64_t)B * D, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, HW)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t b = r / D;
      const int d = (int)(r % D);
      const int32_t* idx = index + b * HW;  // (HW)
      float* dst = zq + r * HW;             // (HW): zq[b, d, :]
      for (int64_t i = 0; i < HW; i++) {
        const int32_t e = std::min(std::max(idx[i], 0), K - 1);  // in bounds even if unchecked
        dst[i] = codebook[(int64_t)e * D + d];
      }
    }
  });
}

}  // namespace cb
