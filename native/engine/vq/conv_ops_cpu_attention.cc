// spatial_attention of the cpu conv ops: per image and per tile of m query positions,
//   S (m, HW) = q[:, tile]^T k / sqrt(C)   one sgemm (q read transposed in place)
//   P = softmax over each row of S         threaded over rows, in place
//   out[:, tile] (C, m) = v P^T            one sgemm
// Tiles hold as many query rows as the scratch bound allows (all HW of them up to HW = 2048 with
// the default 16 MiB).
//
// The backward recomputes P per tile the same way and, with dS = P * (dP - rowsum(dP * P)) the
// softmax's gradient at the scores:
//   dv (C, HW)      += dout[:, tile] (C, m) P (m, HW)            (overwritten by the first tile)
//   dP (m, HW)       = dout[:, tile]^T (m, C) v (C, HW)
//   dq[:, tile] (C, m) = scale k (C, HW) dS^T (HW, m)
//   dk (C, HW)      += scale q[:, tile] (C, m) dS (m, HW)        (overwritten by the first tile)
// Five sgemms a tile; the tiles of an image run in order, so dv and dk sum them in a fixed order.
// Tiles hold half as many rows as the forward's (P and dP).
#include <algorithm>
#include <cmath>

#include "../cpu/parallel.h"
#include "../cpu/sgemm.h"
#include "../cpu/vector_math.h"
#include "conv_ops_cpu.h"

namespace cb {
namespace {

// S (m, HW) = scale q[:, i0 : i0 + m]^T k, then softmax along each row, in place: the forward's
// P for one tile of query rows.
void attention_probabilities(int C, int n, const float* q, const float* k, int i0, int m,
                             float scale, float* S) {
  // q + i0 is (C, m) at stride n, read as its transpose (m, C).
  cpu_sgemm(true, false, m, n, C, scale, q + i0, n, k, n, 0.0f, S, n);
  parallel_for(m, std::max<int64_t>(1, 8192 / n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      float* s = S + r * n;  // (HW)
      const float mx = *std::max_element(s, s + n);
      const float inv = 1.0f / exp_shifted(s, n, mx);
      for (int64_t j = 0; j < n; j++) s[j] *= inv;
    }
  });
}

}  // namespace

void CpuConvOps::spatial_attention(int B, int C, int64_t HW,
                                   const float* q,  // (B, C, HW)
                                   const float* k,  // (B, C, HW)
                                   const float* v,  // (B, C, HW)
                                   float* out) {    // (B, C, HW)
  const int n = (int)HW;
  const int tile = (int)std::min<int64_t>(HW, (int64_t)tile_floats(HW) / HW);
  float* S = scratch((size_t)tile * HW);  // (tile, HW)
  const float scale = 1.0f / std::sqrt((float)C);
  for (int b = 0; b < B; b++) {
    const int64_t base = (int64_t)b * C * HW;
    for (int i0 = 0; i0 < n; i0 += tile) {
      const int m = std::min(tile, n - i0);
      attention_probabilities(C, n, q + base, k + base, i0, m, scale, S);
      cpu_sgemm(false, true, C, m, n, 1.0f, v + base, n, S, n, 0.0f, out + base + i0, n);
    }
  }
}

void CpuConvOps::spatial_attention_backward(int B, int C, int64_t HW,
                                            const float* q,     // (B, C, HW)
                                            const float* k,     // (B, C, HW)
                                            const float* v,     // (B, C, HW)
                                            const float* dout,  // (B, C, HW)
                                            float* dq,          // (B, C, HW)
                                            float* dk,          // (B, C, HW)
                                            float* dv) {        // (B, C, HW)
  const int n = (int)HW;
  const int tile = (int)std::min<int64_t>(HW, (int64_t)tile_floats(2 * HW) / (2 * HW));
  float* P = scratch((size_t)2 * tile * HW);  // (tile, HW)
  float* dP = P + (int64_t)tile * HW;         // (tile, HW), becomes dS
  const float scale = 1.0f / std::sqrt((float)C);
  for (int b = 0; b < B; b++) {
    const int64_t base = (int64_t)b * C * HW;
    for (int i0 = 0; i0 < n; i0 += tile) {
      const int m = std::min(tile, n - i0);
      const float beta = i0 == 0 ? 0.0f : 1.0f;  // dv, dk: the first tile overwrites
      attention_probabilities(C, n, q + base, k + base, i0, m, scale, P);
      // dv (C, HW) += dout_t (C, m) P (m, HW)
      cpu_sgemm(false, false, C, n, m, 1.0f, dout + base + i0, n, P, n, beta, dv + base, n);
      // dP (m, HW) = dout_t^T (m, C) v (C, HW)
      cpu_sgemm(true, false, m, n, C, 1.0f, dout + base + i0, n, v + base, n, 0.0f, dP, n);
      // dS = P (dP - sum_j dP P), row by row; the row sum in double in index order.
      parallel_for(m, std::max<int64_t>(1, 8192 / n), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
          const float* p = P + r * n;  // (HW)
          float* d = dP + r * n;       // (HW)
          double dot = 0;
          for (int j = 0; j < n; j++) dot += (double)d[j] * p[j];
          const float c = (float)dot;
          for (int j = 0; j < n; j++) d[j] = p[j] * (d[j] - c);
        }
      });
      // dq_t (C, m) = scale k (C, HW) dS^T (HW, m)
      cpu_sgemm(false, true, C, m, n, scale, k + base, n, dP, n, 0.0f, dq + base + i0, n);
      // dk (C, HW) += scale q_t (C, m) dS (m, HW)
      cpu_sgemm(false, false, C, n, m, scale, q + base + i0, n, dP, n, beta, dk + base, n);
    }
  }
}

}  // namespace cb
