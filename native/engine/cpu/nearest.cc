#include "nearest.h"

#include <algorithm>
#include <vector>

#include "parallel.h"
#include "sgemm.h"

namespace cb {

int64_t default_chunk_rows(int k) {
  const int64_t budget = (int64_t(16) << 20) / sizeof(float);  // floats of scores
  return std::clamp<int64_t>(budget / std::max(k, 1), 64, int64_t(1) << 20);
}

void cpu_nearest_codes(const float* points, int64_t n, int d, const float* codebook, int k,
                       int32_t* index, float* dist2, int64_t chunk_rows) {
  if (n == 0) return;
  const int64_t chunk = std::min(n, chunk_rows > 0 ? chunk_rows : default_chunk_rows(k));

  std::vector<float> e2(k);  // (k) squared norms of the codes
  for (int j = 0; j < k; j++) {
    const float* e = codebook + (int64_t)j * d;
    float s = 0.0f;
    for (int l = 0; l < d; l++) s += e[l] * e[l];
    e2[j] = s;
  }

  std::vector<float> scores((size_t)chunk * k);  // (chunk, k)
  for (int64_t start = 0; start < n; start += chunk) {
    const int rows = (int)std::min(chunk, n - start);
    const float* x = points + start * d;  // (rows, d)
    // scores = -2 * x . codebook^T
    cpu_sgemm(false, true, rows, k, d, -2.0f, x, d, codebook, d, 0.0f, scores.data(), k);
    // dist2 = |x|^2 + min_j (scores + |e_j|^2); the first index wins ties.
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max(k, 1));
    parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r++) {
        const float* s = scores.data() + r * k;  // (k)
        int32_t best = 0;
        float best_s = s[0] + e2[0];
        for (int j = 1; j < k; j++) {
          const float v = s[j] + e2[j];
          if (v < best_s) {
            best = j;
            best_s = v;
          }
        }
        const float* xr = x + r * d;  // (d)
        float x2 = 0.0f;
        for (int l = 0; l < d; l++) x2 += xr[l] * xr[l];
        index[start + r] = best;
        dist2[start + r] = std::max(0.0f, x2 + best_s);
      }
    });
  }
}

}  // namespace cb
