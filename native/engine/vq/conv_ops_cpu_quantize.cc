// The quantiser of the cpu conv ops. Per image: the latent columns are l2-normalised into
// scratch zn (D, HW); per tile of m positions one sgemm gives every z.e, dots (m, K) =
// zn[:, tile]^T codebook^T; then each row's argmin of |z|^2 + |e|^2 - 2 z.e (first index wins a
// tie), threaded over rows. Tiles hold as many positions as the scratch bound allows.
// embed_codes is a gather, threaded over channels.
// quantize_l2_backward works per position in double (D is small: 8 in LlamaGen), threaded over
// positions; the codebook gradient is scattered from a per-position buffer in position order.
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

// Per position p = (b, i), in double: zn = z[b, :, i] / |z|, zq = codebook[index], g = dzq +
// 2 commit_scale (zn - zq); dz = (g - zn (zn . g)) / |z| (the Jacobian of the normalisation,
// symmetric), or g / 1e-12 where |z| <= 1e-12 (the clamp; zn is then z / 1e-12). Each position
// writes its own dz column and its codebook row's term 2 codebook_scale (zq - zn) into
// partials (B HW, D); then one pass in position order adds those into per-row double sums
// (K, D), and each row of dcodebook gets its sum once: a fixed order at any thread count.
void CpuConvOps::quantize_l2_backward(int B, int D, int64_t HW,
                                      const float* z,         // (B, D, HW)
                                      const float* codebook,  // (K, D), rows l2-normalised
                                      int K,
                                      const int32_t* index,  // (B, HW)
                                      const float* dzq,      // (B, D, HW)
                                      float codebook_scale, float commit_scale,
                                      float* dz,           // (B, D, HW)
                                      float* dcodebook) {  // (K, D), +=
  const int64_t positions = (int64_t)B * HW;
  double* term = partials((size_t)(positions + K) * D);  // (B HW, D) per position
  double* rows = term + positions * D;                    // (K, D) per code row
  const double cb2 = 2.0 * codebook_scale, commit2 = 2.0 * commit_scale;
  parallel_for(positions, std::max<int64_t>(1, 16384 / std::max(1, D)),
               [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      const int64_t b = p / HW, i = p % HW;
      const float* zc = z + b * D * HW + i;    // column, stride HW
      const float* gc = dzq + b * D * HW + i;  // column, stride HW
      float* out = dz + b * D * HW + i;        // column, stride HW
      const int32_t e = std::min(std::max(index[p], 0), K - 1);  // in bounds even if unchecked
      const float* row = codebook + (int64_t)e * D;               // (D)
      double sq = 0;
      for (int d = 0; d < D; d++) sq += (double)zc[d * HW] * zc[d * HW];
      const double norm = std::sqrt(sq);
      const double div = std::max(norm, 1e-12);
      // Two passes over the column (zn and g recomputed, the same values): zn . g, then dz.
      double dot = 0;
      for (int d = 0; d < D; d++) {
        const double zn = zc[d * HW] / div, g = gc[d * HW] + commit2 * (zn - row[d]);
        dot += zn * g;
      }
      const bool clamped = !(norm > 1e-12);
      for (int d = 0; d < D; d++) {
        const double zn = zc[d * HW] / div, g = gc[d * HW] + commit2 * (zn - row[d]);
        out[d * HW] = (float)(clamped ? g / 1e-12 : (g - zn * dot) / norm);
        term[p * D + d] = cb2 * (row[d] - zn);
      }
    }
  });
  std::fill(rows, rows + (int64_t)K * D, 0.0);
  for (int64_t p = 0; p < positions; p++) {
    const int32_t e = std::min(std::max(index[p], 0), K - 1);
    for (int d = 0; d < D; d++) rows[(int64_t)e * D + d] += term[p * D + d];
  }
  parallel_for((int64_t)K * D, kConvCopyGrainFloats, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j++) dcodebook[j] += (float)rows[j];
  });
}

}  // namespace cb
