// conv2d_backward of the cpu conv ops: the gradients of a convolution as matrix products through
// cpu_sgemm, in the forward's layouts (conv_ops_cpu_conv.cc). Per image b and per tile of output
// rows, with col (Cin k k, n) the im2col columns of x_b for the tile's n = rows Wo pixels:
//   dw (Cout, Cin k k) += dy_b[:, tile] (Cout, n) col^T (n, Cin k k)   one sgemm, beta 1
// and dx (overwritten):
//   1x1, stride 1, no padding: no im2col: dw += dy_b (Cout, HW) x_b^T and dx_b (Cin, HW) =
//     w^T (Cin, Cout) dy_b, one sgemm each per image.
//   stride 1 (padding at most k - 1 a side): dx is itself a forward convolution, of dy with the
//     flipped, transposed kernel w'[ci, co, ky, kx] = w[co, ci, k-1-ky, k-1-kx] and padding
//     (k-1-pad_begin, k-1-pad_end) (a tap that moved x by +d moves the gradient back by -d),
//     so conv2d's own paths run it: the per-tap shifted sgemms for the wide convs with enough
//     channels, im2col of dy otherwise; every dx value is written once.
//   otherwise (the downsampler's stride 2): dcol (Cin k k, n) = w^T (Cin k k, Cout) dy_b[:, tile]
//     and col2im adds each column back onto the input pixel it came from; dx_b is zeroed first
//     and the tiles' and taps' contributions added in a fixed order.
// dbias[co] += the sum of dy over (b, pixels), in double, per channel.
// Tiles are as tall as the scratch bound allows (col, plus dcol for col2im). Every output has one
// writer and every sum a fixed order, so the results repeat bit for bit at a given thread count
// (sgemm's own split depends on the thread count, see conv_ops_cpu.h).
// Measured (one thread, process CPU time, Intel Xeon, OpenBLAS), 3x3 64 -> 64 pad 1 at 32x32,
// B = 32 (2.42 GFLOP a product): forward 22 ms (108 GFLOP/s); backward dx + dw + dbias 49 ms
// (2 products, 98 GFLOP/s), of which dw (im2col + one sgemm of K = 1024 per image) 26 ms
// (92 GFLOP/s) and dx (the forward's shifted path) 23 ms.
#include <algorithm>

#include "../cpu/parallel.h"
#include "../cpu/sgemm.h"
#include "conv_im2col.h"
#include "conv_ops_cpu.h"
#include "conv_row_sums.h"

namespace cb {
namespace {

// The transpose of im2col_tile (conv_im2col.h): every column value of dcol is added onto the
// input pixel its tap read (the padding's are dropped). Threaded over input channels, so each dx
// plane has one writer; within a plane the order is fixed (tap, then row, then column). `first`
// zeroes dx before adding (the first tile of an image).
void col2im_rows(const Conv2dShape& s, const float* dcol,  // dcol: (Cin k k, rows Wo)
                 int y0, int rows, bool first, float* dx) {  // dx: (Cin, H, W) of one image
  const int Wo = s.out_w(), kk = s.k * s.k;
  const int64_t plane_size = (int64_t)s.H * s.W, ncols = (int64_t)rows * Wo;
  parallel_for(s.Cin,
               std::max<int64_t>(1, kConvCopyGrainFloats / std::max<int64_t>(1, kk * ncols)),
               [&](int64_t c0, int64_t c1) {
    for (int64_t ci = c0; ci < c1; ci++) {
      float* plane = dx + ci * plane_size;  // (H, W)
      if (first) std::fill(plane, plane + plane_size, 0.0f);
      for (int tap = 0; tap < kk; tap++) {
        const int ky = tap / s.k, kx = tap % s.k;
        int lo, hi;
        im2col_valid_columns(s.W, Wo, s.stride, s.pad_begin, kx, &lo, &hi);
        const float* src_rows = dcol + (ci * kk + tap) * ncols;  // (rows, Wo)
        for (int t = 0; t < rows; t++) {
          const int iy = (y0 + t) * s.stride + ky - s.pad_begin;
          if (iy < 0 || iy >= s.H) continue;
          const float* src = src_rows + (int64_t)t * Wo;                     // (Wo)
          float* dst = plane + (int64_t)iy * s.W + kx - s.pad_begin;         // dst[ox stride]
          for (int ox = lo; ox < hi; ox++) dst[(int64_t)ox * s.stride] += src[ox];
        }
      }
    }
  });
}

}  // namespace

void CpuConvOps::conv2d_backward(const Conv2dShape& s,
                                 const float* x,   // (B, Cin, H, W)
                                 const float* w,   // (Cout, Cin, k, k)
                                 const float* dy,  // (B, Cout, Ho, Wo)
                                 float* dx,        // (B, Cin, H, W) or null
                                 float* dw,        // (Cout, Cin, k, k), +=
                                 float* dbias) {   // (Cout) or null, +=
  const int Ho = s.out_h(), Wo = s.out_w(), kk = s.k * s.k;
  const int64_t in_plane = (int64_t)s.H * s.W, out_plane = (int64_t)Ho * Wo;
  if (dbias != nullptr) {
    // One channel per task: its B planes of dy summed in image order.
    parallel_for(s.Cout, std::max<int64_t>(1, kConvComputeGrainElements / std::max<int64_t>(
                                                 1, (int64_t)s.B * out_plane)),
                 [&](int64_t c0, int64_t c1) {
      for (int64_t co = c0; co < c1; co++) {
        double sum = 0;
        for (int b = 0; b < s.B; b++) {
          sum += conv_sum_span(dy + ((int64_t)b * s.Cout + co) * out_plane, out_plane);
        }
        dbias[co] += (float)sum;
      }
    });
  }
  if (s.k == 1 && s.stride == 1 && s.pad_begin == 0 && s.pad_end == 0) {
    const int n = (int)in_plane;
    for (int b = 0; b < s.B; b++) {
      const float* xb = x + (int64_t)b * s.Cin * in_plane;    // (Cin, HW)
      const float* dyb = dy + (int64_t)b * s.Cout * in_plane;  // (Cout, HW)
      // dw (Cout, Cin) += dy_b (Cout, HW) x_b^T (HW, Cin)
      if (dw != nullptr) {
        cpu_sgemm(false, true, s.Cout, s.Cin, n, 1.0f, dyb, n, xb, n, 1.0f, dw, s.Cin);
      }
      // dx_b (Cin, HW) = w^T (Cin, Cout) dy_b (Cout, HW)
      if (dx != nullptr) {
        cpu_sgemm(true, false, s.Cin, n, s.Cout, 1.0f, w, s.Cin, dyb, n, 0.0f,
                  dx + (int64_t)b * s.Cin * in_plane, n);
      }
    }
    return;
  }
  const bool dx_as_conv = s.stride == 1 && s.pad_begin <= s.k - 1 && s.pad_end <= s.k - 1;
  const bool with_col2im = dx != nullptr && !dx_as_conv;
  const int K = s.Cin * kk;
  if (dw != nullptr || with_col2im) {
    // Scratch per output row: its im2col columns, and as much again for dcol with col2im.
    const int64_t row_floats = (int64_t)K * Wo * (with_col2im ? 2 : 1);
    const int tile_rows =
        (int)std::min<int64_t>(Ho, std::max<int64_t>(1, tile_floats(row_floats) / row_floats));
    float* col = scratch((size_t)row_floats * tile_rows);  // (K, tile_rows Wo)
    float* dcol = col + (int64_t)K * tile_rows * Wo;        // (K, tile_rows Wo) with col2im
    for (int b = 0; b < s.B; b++) {
      const float* xb = x + (int64_t)b * s.Cin * in_plane;       // (Cin, H, W)
      const float* dyb = dy + (int64_t)b * s.Cout * out_plane;   // (Cout, Ho, Wo)
      for (int y0 = 0; y0 < Ho; y0 += tile_rows) {
        const int rows = std::min(tile_rows, Ho - y0);
        const int n = rows * Wo;
        const float* dyt = dyb + (int64_t)y0 * Wo;  // (Cout, n) at stride out_plane
        if (dw != nullptr) {
          im2col_tile(s, xb, y0, rows, col);
          // dw (Cout, K) += dy_t (Cout, n) col^T (n, K)
          cpu_sgemm(false, true, s.Cout, K, n, 1.0f, dyt, (int)out_plane, col, n, 1.0f, dw, K);
        }
        if (with_col2im) {
          // dcol (K, n) = w^T (K, Cout) dy_t (Cout, n)
          cpu_sgemm(true, false, K, n, s.Cout, 1.0f, w, K, dyt, (int)out_plane, 0.0f, dcol, n);
          col2im_rows(s, dcol, y0, rows, y0 == 0, dx + (int64_t)b * s.Cin * in_plane);
        }
      }
    }
  }
  if (dx != nullptr && dx_as_conv) {
    // w' (Cin, Cout, k, k): w' [ci, co, ky, kx] = w[co, ci, k-1-ky, k-1-kx].
    flipped_.resize((size_t)s.Cin * s.Cout * kk);
    float* wf = flipped_.data();
    parallel_for((int64_t)s.Cin * s.Cout,
                 std::max<int64_t>(1, kConvCopyGrainFloats / std::max(1, kk)),
                 [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r++) {  // r = ci Cout + co
        const int64_t ci = r / s.Cout, co = r % s.Cout;
        const float* src = w + (co * s.Cin + ci) * kk;  // (k, k)
        for (int t = 0; t < kk; t++) wf[r * kk + t] = src[kk - 1 - t];
      }
    });
    Conv2dShape t;
    t.B = s.B;
    t.Cin = s.Cout;
    t.H = Ho;
    t.W = Wo;
    t.Cout = s.Cin;
    t.k = s.k;
    t.stride = 1;
    t.pad_begin = s.k - 1 - s.pad_begin;
    t.pad_end = s.k - 1 - s.pad_end;
    conv2d(t, dy, wf, nullptr, dx);  // (B, Cout, Ho, Wo) -> (B, Cin, H, W)
  }
}

}  // namespace cb
