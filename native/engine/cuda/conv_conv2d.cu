// CudaConvOps::conv2d as an implicit GEMM, fp32 throughout:
//   y (Cout, B * Ho * Wo) = w (Cout, Cin * k * k) . col (Cin * k * k, B * Ho * Wo) + bias,
// where col, the im2col matrix, is never written out: its values are gathered from x while the
// shared slices are staged (conv_tile.cuh; the im2col arithmetic is conv_conv2d.cuh's, shared
// with the backward). Column n is output pixel n of the batch in raster order, so the batch is
// folded into N and the small low-resolution levels still fill whole tiles; a tap that falls
// into the padding reads 0.
//
// Thread mapping: blockIdx.x walks the 64-column tiles of N, blockIdx.y the 64-row tiles of
// Cout. The B slice is staged across: each thread owns one column (tid % 64, fixed for the
// whole kernel, so its pixel is decoded once) and stages depths tid / 64 + 4 t; consecutive
// threads read consecutive output pixels, i.e. input addresses `stride` apart. The A slice is
// staged along the depth: consecutive threads read consecutive depths of a weight row. The
// kernel is specialised for k = 1 and k = 3 (constant tap arithmetic) with a runtime-k version
// for any other side.
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_conv2d.cuh"
#include "conv_ops_cuda.h"
#include "conv_tile.cuh"
#include "stream.h"

namespace cb {
namespace {

struct ConvGeometry : im2col::Dims {
  const float* x;     // (B, Cin, H, W)
  const float* w;     // (Cout, Cin * k * k)
  const float* bias;  // (Cout) or null
  float* y;           // (B, Cout, Ho, Wo)
  int64_t depth;      // Cin * k * k: the GEMM's K
  int64_t columns;    // B * Ho * Wo: the GEMM's N
};

// KS: the kernel side when known at compile time, 0 to read it from g.k.
template <int KS>
__global__ void __launch_bounds__(conv_tile::kThreads) conv2d_kernel(ConvGeometry g) {
  using namespace conv_tile;
  __shared__ Slices s;
  const int tid = threadIdx.x;
  const int64_t m0 = tile_row0(), n0 = tile_col0();
  const int64_t plane = (int64_t)g.Ho * g.Wo;  // output pixels per image
  const int k = KS > 0 ? KS : g.k;
  const int taps = k * k;

  // This thread's column of col (its output pixel: B is staged across, the same column for
  // every value) and the input corner of its window.
  const int64_t col = n0 + staged<false>(tid, 0).line;
  const bool col_ok = col < g.columns;
  const float* ximg = g.x;  // (Cin, H, W) of the column's image
  int iy0 = 0, ix0 = 0;
  if (col_ok) {
    const im2col::Window win = im2col::window_of(g, col, plane);
    iy0 = win.iy0;
    ix0 = win.ix0;
    ximg += win.img * g.Cin * g.H * g.W;
  }

  // A along the depth (consecutive depths of a weight row), B across (consecutive pixels).
  auto fetch = [&](int64_t k0, float (&wa)[kLoads], float (&xb)[kLoads]) {
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const Staged at = staged<true>(tid, t);
      const int64_t gm = m0 + at.line, gk = k0 + at.depth;
      wa[t] = (gm < g.Cout && gk < g.depth) ? g.w[gm * g.depth + gk] : 0.0f;
    }
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int64_t gk = k0 + staged<false>(tid, t).depth;
      float v = 0.0f;
      if (col_ok && gk < g.depth) {
        const im2col::Tap tap = im2col::decode_tap(gk, k, taps);
        const int iy = iy0 + tap.ky, ix = ix0 + tap.kx;
        if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) {
          v = ximg[((int64_t)tap.c * g.H + iy) * g.W + ix];
        }
      }
      xb[t] = v;
    }
  };

  float acc[4][4] = {};
  accumulate<true, false>(s, 0, g.depth, fetch, acc);
  for_each_result(m0, n0, g.Cout, g.columns, acc, [&](int64_t m) {
    const float bias = g.bias != nullptr ? g.bias[m] : 0.0f;
    return [&, m, bias](int64_t c, float v) {
      g.y[im2col::nchw_offset(m, c, g.Cout, plane)] = v + bias;
    };
  });
}

}  // namespace

void CudaConvOps::conv2d(const Conv2dShape& s,
                         const float* x,     // (B, Cin, H, W)
                         const float* w,     // (Cout, Cin, k, k)
                         const float* bias,  // (Cout) or null
                         float* y) {         // (B, Cout, Ho, Wo)
  const im2col::Dims dims = im2col::checked_dims(s, "cuda conv2d");
  if (s.B == 0 || s.Cout == 0) return;
  ConvGeometry g;
  static_cast<im2col::Dims&>(g) = dims;
  g.x = x;
  g.w = w;
  g.bias = bias;
  g.y = y;
  g.depth = (int64_t)s.Cin * s.k * s.k;
  g.columns = (int64_t)s.B * g.Ho * g.Wo;

  CB_CHECK(conv_tile::grid_fits(s.Cout, g.columns),
           "cuda conv2d: too large for one launch (" + im2col::describe(s) + ")");
  const dim3 grid = conv_tile::tile_grid(s.Cout, g.columns);
  im2col::with_side(s.k, [&](auto side) {
    conv2d_kernel<decltype(side)::value><<<grid, conv_tile::kThreads, 0, launch_stream()>>>(g);
  });
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace cb
