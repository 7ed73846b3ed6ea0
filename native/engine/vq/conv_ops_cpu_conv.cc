// conv2d of the cpu conv ops: a convolution as matrix products through cpu_sgemm.
//   1x1, stride 1, no padding: y_b (Cout, HW) = w (Cout, Cin) x_b (Cin, HW), one sgemm per image.
//   otherwise (im2col): per image and per tile of output rows, the input patches are copied into
//     columns col (Cin k k, rows Wo) and y_b[:, tile] (Cout, rows Wo) = w (Cout, Cin k k) col,
//     one sgemm per tile; tiles are as tall as the scratch bound allows.
//   stride 1, Cin >= 32, Wo >= 32 (shifted): no im2col; one sgemm per tap over a padded copy
//     of the input (conv2d_shifted below).
// Measured (one thread, process CPU time, so that the shared machine's load counts little; AMD
// EPYC, OpenBLAS), 3x3 pad 1, GFLOP/s im2col / shifted / one sgemm of the same M, N, K:
//   128 -> 128 at 256x256  69 / 79 / 73      256 -> 256 at 32x32   84 / 81 / 90
//   128 -> 128 at 128x128  77 / 75 / 83      512 -> 512 at 16x16   85 / 67 / 92
//   256 -> 256 at 64x64    78 / 82 / 91      3 -> 128 at 256x256   48 / 18 / 52
//   32 -> 32 at 64x64      70 / 76 / 85      128 -> 3 at 256x256    7 / 11 / 10
// At 16x16 each row of the shifted grid wastes 2 of 18 columns and the tap weights are re-laid
// per call; with 3 input channels each tap's sgemm has K = 3. So shifted for the wide stride-1
// convs with enough channels, im2col for the rest (the two are even in between).
#include <algorithm>
#include <cstring>

#include "../cpu/parallel.h"
#include "../cpu/sgemm.h"
#include "conv_im2col.h"
#include "conv_ops_cpu.h"

namespace cb {
namespace {

// One im2col row of one image for stride 1 and as many output columns as input columns: the
// tap's view is the plane shifted by (ky - pad_begin) rows and (kx - pad_begin) columns, so
// the output rows that read inside the input are one contiguous copy (one memcpy per column
// row, not one per output row of a few floats, which was a third of the encoder's time at
// 16 px); the columns that came around from the neighbouring row ([0, lo) and [hi, Wo)) and
// the rows outside the input are zeroed after. The values are those of the row-wise copy.
void copy_shifted_plane(const Conv2dShape& s, const float* plane,  // plane: (H, W)
                        int y0, int rows, int ky, int kx, int lo, int hi,
                        float* dst) {  // dst: (rows, W)
  const int W = s.W, shift_rows = y0 + ky - s.pad_begin;  // iy = row + shift_rows
  const int first = std::min(rows, std::max(0, -shift_rows));
  const int last = std::max(first, std::min(rows, s.H - shift_rows));  // [first, last) inside
  std::fill(dst, dst + (int64_t)first * W, 0.0f);
  std::fill(dst + (int64_t)last * W, dst + (int64_t)rows * W, 0.0f);
  if (first == last || lo == hi) {
    std::fill(dst + (int64_t)first * W, dst + (int64_t)last * W, 0.0f);
    return;
  }
  const int64_t begin = (int64_t)first * W + lo, end = (int64_t)(last - 1) * W + hi;
  const int64_t offset = (int64_t)shift_rows * W + kx - s.pad_begin;  // dst[i] = plane[i + offset]
  std::memcpy(dst + begin, plane + begin + offset, sizeof(float) * (end - begin));
  for (int row = first; row < last; row++) {
    float* d = dst + (int64_t)row * W;
    for (int ox = 0; ox < lo; ox++) d[ox] = 0.0f;
    for (int ox = hi; ox < W; ox++) d[ox] = 0.0f;
  }
}

}  // namespace

// Stride 1 with Wo == W: a shifted copy of the whole plane per column row (copy_shifted_plane);
// otherwise row by row.
void im2col_tile(const Conv2dShape& s, const float* x,  // x: (Cin, H, W) of one image
                 int y0, int rows, float* col) {        // col: (Cin k k, rows Wo)
  const int Wo = s.out_w(), kk = s.k * s.k;
  const int64_t K = (int64_t)s.Cin * kk, ncols = (int64_t)rows * Wo;
  // Each column row is a few kilobytes at least; parallel over them.
  parallel_for(K, std::max<int64_t>(1, kConvCopyGrainFloats / std::max<int64_t>(1, ncols)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int ci = (int)(r / kk), ky = (int)(r % kk) / s.k, kx = (int)(r % s.k);
      int lo, hi;
      im2col_valid_columns(s.W, Wo, s.stride, s.pad_begin, kx, &lo, &hi);
      const float* plane = x + (int64_t)ci * s.H * s.W;  // (H, W)
      float* dst_row = col + r * ncols;                   // (rows, Wo)
      if (s.stride == 1 && Wo == s.W) {
        copy_shifted_plane(s, plane, y0, rows, ky, kx, lo, hi, dst_row);
        continue;
      }
      for (int t = 0; t < rows; t++) {
        float* dst = dst_row + (int64_t)t * Wo;  // (Wo)
        const int iy = (y0 + t) * s.stride + ky - s.pad_begin;
        if (iy < 0 || iy >= s.H) {
          std::fill(dst, dst + Wo, 0.0f);
          continue;
        }
        const float* src = plane + (int64_t)iy * s.W + kx - s.pad_begin;  // src[ox stride]
        std::fill(dst, dst + lo, 0.0f);
        if (s.stride == 1) {
          std::memcpy(dst + lo, src + lo, sizeof(float) * (hi - lo));
        } else {
          for (int ox = lo; ox < hi; ox++) dst[ox] = src[(int64_t)ox * s.stride];
        }
        std::fill(dst + hi, dst + Wo, 0.0f);
      }
    }
  });
}

namespace {

// y rows (Cout, n) at stride ld set to the bias (the sgemm then accumulates with beta 1).
void fill_bias(int Cout, int64_t n, int64_t ld, const float* bias, float* y) {
  parallel_for(Cout, std::max<int64_t>(1, kConvCopyGrainFloats / std::max<int64_t>(1, n)),
               [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) std::fill(y + c * ld, y + c * ld + n, bias[c]);
  });
}

// Stride-1 conv without im2col: the input tile is copied once with its padding, xp (Cin, rows +
// k - 1, Wp), and on an output grid as wide as the padded row, every tap (ky, kx) is one sgemm
// of K = Cin over the shifted view xp + ky Wp + kx, accumulated: yp (Cout, rows Wp) += w_tap
// (Cout, Cin) xp_shifted; the k - 1 columns of each row past Wo are discarded.
// Scratch floats of conv2d_shifted: the re-laid weights, the padded input and the output
// grid, for tiles of `tile_rows` output rows.
int64_t shifted_scratch_floats(const Conv2dShape& s, int tile_rows) {
  const int64_t Wp = s.W + s.pad_begin + s.pad_end;
  return (int64_t)s.k * s.k * s.Cout * s.Cin + (int64_t)s.Cin * (tile_rows + s.k - 1) * Wp +
         (int64_t)s.Cout * tile_rows * Wp;
}

void conv2d_shifted(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    float* y, float* scratch, int tile_rows) {
  const int Ho = s.out_h(), Wo = s.out_w(), kk = s.k * s.k;
  const int Wp = s.W + s.pad_begin + s.pad_end;
  float* wt = scratch;                                    // (kk, Cout, Cin)
  float* xp = wt + (int64_t)kk * s.Cout * s.Cin;          // (Cin, tile_rows + k - 1, Wp)
  float* yp = xp + (int64_t)s.Cin * (tile_rows + s.k - 1) * Wp;  // (Cout, tile_rows Wp)
  parallel_for((int64_t)kk * s.Cout, std::max<int64_t>(1, kConvCopyGrainFloats / s.Cin),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {  // r = t Cout + co: one contiguous row of wt
      const int64_t t = r / s.Cout, co = r % s.Cout;
      for (int ci = 0; ci < s.Cin; ci++) wt[r * s.Cin + ci] = w[(co * s.Cin + ci) * kk + t];
    }
  });
  const int64_t out_plane = (int64_t)Ho * Wo;
  for (int b = 0; b < s.B; b++) {
    const float* xb = x + (int64_t)b * s.Cin * s.H * s.W;
    float* yb = y + (int64_t)b * s.Cout * out_plane;
    for (int y0 = 0; y0 < Ho; y0 += tile_rows) {
      const int rows = std::min(tile_rows, Ho - y0), hp = rows + s.k - 1;
      const int64_t xp_plane = (int64_t)hp * Wp;
      parallel_for(s.Cin, std::max<int64_t>(1, kConvCopyGrainFloats / xp_plane),
                   [&](int64_t c0, int64_t c1) {
        for (int64_t ci = c0; ci < c1; ci++) {
          for (int t = 0; t < hp; t++) {
            float* dst = xp + ci * xp_plane + (int64_t)t * Wp;
            const int iy = y0 + t - s.pad_begin;
            std::fill(dst, dst + Wp, 0.0f);
            if (iy >= 0 && iy < s.H) {
              std::memcpy(dst + s.pad_begin, xb + (ci * s.H + iy) * s.W, sizeof(float) * s.W);
            }
          }
        }
      });
      const int n = (rows - 1) * Wp + Wo;
      for (int t = 0; t < kk; t++) {
        const int ky = t / s.k, kx = t % s.k;
        cpu_sgemm(false, false, s.Cout, n, s.Cin, 1.0f, wt + (int64_t)t * s.Cout * s.Cin, s.Cin,
                  xp + (int64_t)ky * Wp + kx, (int)xp_plane, t == 0 ? 0.0f : 1.0f, yp, n);
      }
      const int64_t tile_plane = (int64_t)rows * Wo;
      parallel_for(s.Cout, std::max<int64_t>(1, kConvCopyGrainFloats / tile_plane),
                   [&](int64_t c0, int64_t c1) {
        for (int64_t co = c0; co < c1; co++) {
          const float add = bias != nullptr ? bias[co] : 0.0f;
          for (int r = 0; r < rows; r++) {
            const float* src = yp + co * n + (int64_t)r * Wp;
            float* dst = yb + co * out_plane + (int64_t)(y0 + r) * Wo;
            for (int ox = 0; ox < Wo; ox++) dst[ox] = src[ox] + add;
          }
        }
      });
    }
  }
}

}  // namespace

void CpuConvOps::conv2d(const Conv2dShape& s,
                        const float* x,     // (B, Cin, H, W)
                        const float* w,     // (Cout, Cin, k, k)
                        const float* bias,  // (Cout) or null
                        float* y) {         // (B, Cout, Ho, Wo)
  const int Ho = s.out_h(), Wo = s.out_w();
  const int64_t in_plane = (int64_t)s.H * s.W, out_plane = (int64_t)Ho * Wo;
  const float beta = bias != nullptr ? 1.0f : 0.0f;
  if (s.k == 1 && s.stride == 1 && s.pad_begin == 0 && s.pad_end == 0) {
    for (int b = 0; b < s.B; b++) {
      const float* xb = x + (int64_t)b * s.Cin * in_plane;  // (Cin, HW)
      float* yb = y + (int64_t)b * s.Cout * out_plane;      // (Cout, HW)
      if (bias != nullptr) fill_bias(s.Cout, out_plane, out_plane, bias, yb);
      cpu_sgemm(false, false, s.Cout, (int)out_plane, s.Cin, 1.0f, w, s.Cin, xb,
                (int)out_plane, beta, yb, (int)out_plane);
    }
    return;
  }
  if (s.stride == 1 && s.Cin >= 32 && Wo >= 32) {
    // As many output rows per tile as the scratch bound allows, at least one.
    const int64_t per_row = shifted_scratch_floats(s, 1) - shifted_scratch_floats(s, 0);
    const int64_t spare = (int64_t)tile_floats(0) - shifted_scratch_floats(s, 0);
    const int tile_rows = (int)std::min<int64_t>(Ho, std::max<int64_t>(1, spare / per_row));
    conv2d_shifted(s, x, w, bias, y, scratch((size_t)shifted_scratch_floats(s, tile_rows)),
                   tile_rows);
    return;
  }
  const int K = s.Cin * s.k * s.k;
  const int64_t row_floats = (int64_t)K * Wo;  // im2col columns of one output row
  const int tile_rows =
      (int)std::min<int64_t>(Ho, std::max<int64_t>(1, tile_floats(row_floats) / row_floats));
  float* col = scratch((size_t)row_floats * tile_rows);  // (K, tile_rows Wo)
  for (int b = 0; b < s.B; b++) {
    const float* xb = x + (int64_t)b * s.Cin * in_plane;  // (Cin, H, W)
    float* yb = y + (int64_t)b * s.Cout * out_plane;      // (Cout, Ho, Wo)
    for (int y0 = 0; y0 < Ho; y0 += tile_rows) {
      const int rows = std::min(tile_rows, Ho - y0);
      const int n = rows * Wo;
      im2col_tile(s, xb, y0, rows, col);
      float* yt = yb + (int64_t)y0 * Wo;  // (Cout, n) at stride out_plane
      if (bias != nullptr) fill_bias(s.Cout, n, out_plane, bias, yt);
      cpu_sgemm(false, false, s.Cout, n, K, 1.0f, w, K, col, n, beta, yt, (int)out_plane);
    }
  }
}

}  // namespace cb
