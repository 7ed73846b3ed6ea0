// spatial_attention of the cpu conv ops: per image and per tile of m query positions,
//   S (m, HW) = q[:, tile]^T k / sqrt(C)   one sgemm (q read transposed in place)
//   P = softmax over each row of S         threaded over rows, in place
//   out[:, tile] (C, m) = v P^T            one sgemm
// Tiles hold as many query rows as the scratch bound allows (all HW of them up to HW = 2048 with
// the default 16 MiB).
#include <algorithm>
#include <cmath>

#include "../cpu/parallel.h"
#include "../cpu/sgemm.h"
#include "../cpu/vector_math.h"
#include "conv_ops_cpu.h"

namespace cb {

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
      // q + base + i0 is (C, m) at stride HW, read as its transpose (m, C).
      cpu_sgemm(true, false, m, n, C, scale, q + base + i0, n, k + base, n, 0.0f, S, n);
      parallel_for(m, std::max<int64_t>(1, 8192 / HW), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
          float* s = S + r * HW;  // (HW)
          const float mx = *std::max_element(s, s + HW);
          const float inv = 1.0f / exp_shifted(s, HW, mx);
          for (int64_t j = 0; j < HW; j++) s[j] *= inv;
        }
      });
      cpu_sgemm(false, true, C, m, n, 1.0f, v + base, n, S, n, 0.0f, out + base + i0, n);
    }
  }
}

}  // namespace cb
