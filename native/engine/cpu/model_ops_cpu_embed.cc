// CpuModelOps: row gathers and scatters (embeddings, learned start vectors) and the rotary
// position embedding with learned angles.
//
// Reductions into tables (scatter_add_rows, fill_masked_rows_backward, rope's dangles) are
// split by column, never by row: each table entry is summed in row order by one thread, so
// repeated indices are safe and the sums do not depend on the number of threads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "../error.h"
#include "model_ops_cpu.h"
#include "parallel.h"
#include "rope_rows.h"

namespace cb {
namespace {

constexpr int64_t kGrain = int64_t(1) << 16;  // elements per thread, at least
constexpr int kColBlock = 64;                 // columns per reduction task
constexpr int kPairBlock = 8;                 // rotary pairs per rope_backward task

inline int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, cols));
}

// Calls fn(c0, c1) for column blocks of c columns, threaded when n * c is large.
template <typename Fn>
void for_column_blocks(int64_t n, int c, Fn fn) {
  const int64_t blocks = (c + kColBlock - 1) / kColBlock;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, n * kColBlock));
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; blk++) {
      const int c0 = (int)blk * kColBlock;
      fn(c0, std::min(c, c0 + kColBlock));
    }
  });
}

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

// ---- rows -------------------------------------------------------------------------------------

void CpuModelOps::gather_rows(int64_t n, int c, const float* table, const int32_t* index,
                              float* out) {
  parallel_for(n, row_grain(c), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      CB_CHECK(index[i] >= 0, "gather_rows: negative index at row " + std::to_string(i));
      std::memcpy(out + i * c, table + (int64_t)index[i] * c, sizeof(float) * c);
    }
  });
}

void CpuModelOps::scatter_add_rows(int64_t n, int c, const float* dout, const int32_t* index,
                                   float* dtable) {
  for (int64_t i = 0; i < n; i++) {
    CB_CHECK(index[i] >= 0, "scatter_add_rows: negative index at row " + std::to_string(i));
  }
  for_column_blocks(n, c, [&](int c0, int c1) {
    for (int64_t i = 0; i < n; i++) {
      const float* src = dout + i * c + c0;                 // (c1 - c0)
      float* dst = dtable + (int64_t)index[i] * c + c0;     // (c1 - c0)
      for (int j = 0; j < c1 - c0; j++) dst[j] += src[j];
    }
  });
}

void CpuModelOps::fill_masked_rows(int64_t n, int c, const uint8_t* mask, const float* vec,
                                   float* x) {
  parallel_for(n, row_grain(c), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      if (mask[i] != 0) std::memcpy(x + i * c, vec, sizeof(float) * c);
    }
  });
}

void CpuModelOps::fill_masked_rows_backward(int64_t n, int c, const uint8_t* mask, float* dx,
                                            float* dvec) {
  for_column_blocks(n, c, [&](int c0, int c1) {
    float acc[kColBlock] = {};
    for (int64_t i = 0; i < n; i++) {
      if (mask[i] == 0) continue;
      float* row = dx + i * c + c0;  // (c1 - c0)
      for (int j = 0; j < c1 - c0; j++) {
        acc[j] += row[j];
        row[j] = 0.0f;
      }
    }
    for (int j = 0; j < c1 - c0; j++) dvec[c0 + j] += acc[j];
  });
}

// ---- rope -------------------------------------------------------------------------------------
// Pair j of a head rotates (a, b) = (x[2j], x[2j+1]) by theta:
//   (a cos - b sin, a sin + b cos); d/dtheta of that is (-y1, y0), and R^T dy is
//   (dy0 cos + dy1 sin, -dy0 sin + dy1 cos).

bool CpuModelOps::rope_tables(int64_t n, int hd, const float* angles, const int32_t* pos_p,
                              const int32_t* pos_q) {
  CB_CHECK(hd % 2 == 0, "rope: head size " + std::to_string(hd) + " is odd");
  int32_t max_pos = -1;
  for (int64_t i = 0; i < n; i++) {
    CB_CHECK(pos_p[i] >= 0 && (pos_q == nullptr || pos_q[i] >= 0),
             "rope: negative position index at row " + std::to_string(i));
    max_pos = std::max(max_pos, pos_p[i]);
    if (pos_q != nullptr) max_pos = std::max(max_pos, pos_q[i]);
  }
  // By position when the rows outnumber the positions (training), else by row (sampling a few
  // slots): whichever needs fewer cos and sin. Only the positions used are read from `angles`.
  const int half = hd / 2;
  const int64_t positions = int64_t(max_pos) + 1, rows = pos_q != nullptr ? 2 * n : n;
  const bool by_row = rows < positions;
  const int64_t count = (by_row ? rows : positions) * half;
  if ((int64_t)rope_cos_.size() < count) {
    rope_cos_.resize(count);
    rope_sin_.resize(count);
  }
  for (int64_t e = 0; e < count; e++) {
    int64_t a = e;  // the angle of table entry e
    if (by_row) {
      const int64_t r = e / half;
      a = int64_t(r < n ? pos_p[r] : pos_q[r - n]) * half + e % half;
    }
    rope_cos_[e] = std::cos(angles[a]);
    rope_sin_[e] = std::sin(angles[a]);
  }
  return by_row;
}

void CpuModelOps::rope(int64_t n, int H, int hd, const float* x, int ld, const float* angles,
                       const int32_t* pos_p, const int32_t* pos_q, const float* mix_logit,
                       float* y) {
  const bool mixed = mix_logit != nullptr;
  CB_CHECK(!mixed || pos_q != nullptr, "rope: mixing needs pos_q");
  const bool by_row = rope_tables(n, hd, angles, pos_p, mixed ? pos_q : nullptr);
  const int half = hd / 2;
  const float* cos_t = rope_cos_.data();  // (positions or rows, half)
  const float* sin_t = rope_sin_.data();  // (positions or rows, half)
  // The mixing weights alpha_h = sigmoid(mix_logit_h), once for all rows.
  if (mixed) {
    rope_alpha_.resize(H);
    for (int h = 0; h < H; h++) rope_alpha_[h] = sigmoid(mix_logit[h]);
  }
  const float* alpha = mixed ? rope_alpha_.data() : nullptr;  // (H)
  parallel_for(n, row_grain(int64_t(H) * hd), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
      const int64_t tp = by_row ? i : pos_p[i];                     // table row of p
      const int64_t tq = !mixed ? tp : by_row ? n + i : pos_q[i];  // table row of q
      rope_row(x + i * ld, H, hd, cos_t + tp * half, sin_t + tp * half, cos_t + tq * half,
               sin_t + tq * half, alpha, y + i * H * int64_t(hd));
    }
  });
}

void CpuModelOps::rope_backward(int64_t n, int H, int hd, const float* x, int ld,
                                const float* angles, const int32_t* pos_p, const int32_t* pos_q,
                                const float* mix_logit, const float* dy, float* dx,
                                float* dangles, float* dmix_logit) {
  const bool mixed = mix_logit != nullptr;
  CB_CHECK(!mixed || pos_q != nullptr, "rope: mixing needs pos_q");
  const bool by_row = rope_tables(n, hd, angles, pos_p, mixed ? pos_q : nullptr);
  const int half = hd / 2;
  const float* cos_t = rope_cos_.data();  // (positions or rows, half)
  const float* sin_t = rope_sin_.data();  // (positions or rows, half)
  // Tasks own blocks of rotary pairs (columns of dangles) across all rows and heads; each keeps
  // its own (H) partial sum of dmix_logit, combined below in block order.
  const int blocks = (half + kPairBlock - 1) / kPairBlock;
  if (mixed) rope_dmix_.assign((size_t)blocks * H, 0.0);
  const int64_t per_block = std::max<int64_t>(1, n * H * std::min(half, kPairBlock) * 2);
  parallel_for(blocks, std::max<int64_t>(1, kGrain / per_block), [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; blk++) {
      const int j0 = (int)blk * kPairBlock, j1 = std::min(half, j0 + kPairBlock);
      double* dmix = mixed ? rope_dmix_.data() + blk * H : nullptr;  // (H)
      for (int64_t i = 0; i < n; i++) {
        const int64_t pp = pos_p[i], pq = mixed ? pos_q[i] : pp;  // rows of dangles
        const int64_t tp = by_row ? i : pp, tq = !mixed ? tp : by_row ? n + i : pq;
        const float* cp = cos_t + tp * half;  // (half)
        const float* sp = sin_t + tp * half;  // (half)
        const float* cq = cos_t + tq * half;  // (half)
        const float* sq = sin_t + tq * half;  // (half)
        // This row's angle gradients, summed over heads before touching the table.
        float gp[kPairBlock] = {}, gq[kPairBlock] = {};
        for (int h = 0; h < H; h++) {
          const float* xh = x + i * ld + (int64_t)h * hd;      // (hd)
          const float* dyh = dy + (i * H + h) * (int64_t)hd;    // (hd)
          float* dxh = dx + i * ld + (int64_t)h * hd;           // (hd)
          if (!mixed) {
            for (int j = j0; j < j1; j++) {
              const float a = xh[2 * j], b = xh[2 * j + 1];
              const float d0 = dyh[2 * j], d1 = dyh[2 * j + 1];
              dxh[2 * j] = d0 * cp[j] + d1 * sp[j];
              dxh[2 * j + 1] = -d0 * sp[j] + d1 * cp[j];
              gp[j - j0] += -d0 * (a * sp[j] + b * cp[j]) + d1 * (a * cp[j] - b * sp[j]);
            }
            continue;
          }
          const float alpha = sigmoid(mix_logit[h]), beta = 1.0f - alpha;
          float dalpha = 0.0f;
          for (int j = j0; j < j1; j++) {
            const float a = xh[2 * j], b = xh[2 * j + 1];
            const float d0 = dyh[2 * j], d1 = dyh[2 * j + 1];
            const float yp0 = a * cp[j] - b * sp[j], yp1 = a * sp[j] + b * cp[j];
            const float yq0 = a * cq[j] - b * sq[j], yq1 = a * sq[j] + b * cq[j];
            dxh[2 * j] = alpha * (d0 * cp[j] + d1 * sp[j]) + beta * (d0 * cq[j] + d1 * sq[j]);
            dxh[2 * j + 1] =
                alpha * (-d0 * sp[j] + d1 * cp[j]) + beta * (-d0 * sq[j] + d1 * cq[j]);
            gp[j - j0] += alpha * (-d0 * yp1 + d1 * yp0);
            gq[j - j0] += beta * (-d0 * yq1 + d1 * yq0);
            dalpha += d0 * (yp0 - yq0) + d1 * (yp1 - yq1);
          }
          dmix[h] += dalpha;
        }
        if (dangles == nullptr) continue;  // required by the header; tolerated as in cpu-ref
        for (int j = j0; j < j1; j++) dangles[pp * half + j] += gp[j - j0];
        if (mixed) {
          for (int j = j0; j < j1; j++) dangles[pq * half + j] += gq[j - j0];
        }
      }
    }
  });
  if (mixed && dmix_logit != nullptr) {
    for (int h = 0; h < H; h++) {
      double sum = 0;
      for (int blk = 0; blk < blocks; blk++) sum += rope_dmix_[(size_t)blk * H + h];
      const float alpha = sigmoid(mix_logit[h]);
      dmix_logit[h] += (float)sum * alpha * (1.0f - alpha);  // d alpha / d logit
    }
  }
}

}  // namespace cb
