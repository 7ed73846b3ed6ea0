// CudaConvOps::conv2d as an implicit GEMM, fp32 throughout:
//   y (Cout, B * Ho * Wo) = w (Cout, Cin * k * k) . col (Cin * k * k, B * Ho * Wo) + bias,
// where col, the im2col matrix, is never written out: its values are gathered from x while the
// shared slices are staged (conv_tile.cuh). Column n is output pixel n of the batch in raster
// order (image n / (Ho Wo), then row, then column), so the batch is folded into N and the small
// low-resolution levels still fill whole tiles. Row r of col is the tap (ci, ky, kx) =
// (r / k^2, r % k^2 / k, r % k); a tap that falls into the padding reads 0.
//
// Thread mapping: blockIdx.x walks the 64-column tiles of N, blockIdx.y the 64-row tiles of
// Cout. For the B slice each thread owns one column (tid % 64, fixed for the whole kernel, so
// its pixel is decoded once) and stages depths tid / 64 + 4 s; consecutive threads read
// consecutive output pixels, i.e. input addresses `stride` apart. For the A slice consecutive
// threads read consecutive depths of a weight row. Each thread fetches its 4 + 4 values of the
// next slice into registers while the block multiplies the current one. The kernel is specialised for k = 1 and
// k = 3 (constant tap arithmetic) with a runtime-k version for any other side.
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_ops_cuda.h"
#include "conv_tile.cuh"
#include "stream.h"

namespace cb {
namespace {

struct ConvGeometry {
  const float* x;     // (B, Cin, H, W)
  const float* w;     // (Cout, Cin * k * k)
  const float* bias;  // (Cout) or null
  float* y;           // (B, Cout, Ho, Wo)
  int Cin, H, W, Cout;
  int k, stride, pad_begin;
  int Ho, Wo;
  int64_t depth;    // Cin * k * k: the GEMM's K
  int64_t columns;  // B * Ho * Wo: the GEMM's N
};

// KS: the kernel side when known at compile time, 0 to read it from g.k.
template <int KS>
__global__ void __launch_bounds__(conv_tile::kThreads) conv2d_kernel(ConvGeometry g) {
  using namespace conv_tile;
  __shared__ Slices s;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = (int64_t)blockIdx.y * kM, n0 = (int64_t)blockIdx.x * kN;
  const int64_t plane = (int64_t)g.Ho * g.Wo;  // output pixels per image
  const int k = KS > 0 ? KS : g.k;
  const int taps = k * k;

  // This thread's column of col (its output pixel) and the input corner of its window.
  const int jb = tid % kN, lb = tid / kN;
  const int64_t col = n0 + jb;
  const bool col_ok = col < g.columns;
  const float* ximg = g.x;  // (Cin, H, W) of the column's image
  int iy0 = 0, ix0 = 0;
  if (col_ok) {
    const int64_t img = col / plane, pix = col - img * plane;
    iy0 = (int)(pix / g.Wo) * g.stride - g.pad_begin;
    ix0 = (int)(pix % g.Wo) * g.stride - g.pad_begin;
    ximg += img * g.Cin * g.H * g.W;
  }

  // The next slice's values are fetched into registers while the current one is multiplied.
  float wa[kLoads], xb[kLoads];
  auto fetch = [&](int64_t k0) {
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int idx = tid + kThreads * t;
      const int i = idx / kK, l = idx % kK;
      const int64_t gm = m0 + i, gk = k0 + l;
      wa[t] = (gm < g.Cout && gk < g.depth) ? g.w[gm * g.depth + gk] : 0.0f;
    }
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int64_t gk = k0 + lb + (kThreads / kN) * t;
      float v = 0.0f;
      if (col_ok && gk < g.depth) {
        const int ci = (int)(gk / taps), tap = (int)(gk - (int64_t)ci * taps);
        const int ky = tap / k, kx = tap - ky * k;
        const int iy = iy0 + ky, ix = ix0 + kx;
        if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) {
          v = ximg[((int64_t)ci * g.H + iy) * g.W + ix];
        }
      }
      xb[t] = v;
    }
  };

  float acc[4][4] = {};
  fetch(0);
  for (int64_t k0 = 0; k0 < g.depth; k0 += kK) {
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int idx = tid + kThreads * t;
      s.a[idx % kK][idx / kK] = wa[t];
      s.b[lb + (kThreads / kN) * t][jb] = xb[t];
    }
    __syncthreads();
    if (k0 + kK < g.depth) fetch(k0 + kK);
    multiply_slices(s, tx, ty, acc);
    __syncthreads();  // everyone is done reading the slices before they are overwritten
  }

#pragma unroll
  for (int a = 0; a < 4; a++) {
    const int64_t m = m0 + ty + 16 * a;
    if (m >= g.Cout) continue;
    const float bias = g.bias != nullptr ? g.bias[m] : 0.0f;
#pragma unroll
    for (int b = 0; b < 4; b++) {
      const int64_t c = n0 + tx + 16 * b;
      if (c >= g.columns) continue;
      const int64_t img = c / plane, pix = c - img * plane;
      g.y[(img * g.Cout + m) * plane + pix] = acc[a][b] + bias;
    }
  }
}

std::string describe(const Conv2dShape& s) {
  return "B " + std::to_string(s.B) + ", Cin " + std::to_string(s.Cin) + ", H " +
         std::to_string(s.H) + ", W " + std::to_string(s.W) + ", Cout " + std::to_string(s.Cout) +
         ", k " + std::to_string(s.k) + ", stride " + std::to_string(s.stride) + ", pad " +
         std::to_string(s.pad_begin) + "/" + std::to_string(s.pad_end);
}

}  // namespace

void CudaConvOps::conv2d(const Conv2dShape& s,
                         const float* x,     // (B, Cin, H, W)
                         const float* w,     // (Cout, Cin, k, k)
                         const float* bias,  // (Cout) or null
                         float* y) {         // (B, Cout, Ho, Wo)
  CB_CHECK(s.B >= 0 && s.Cin >= 0 && s.H >= 0 && s.W >= 0 && s.Cout >= 0 && s.k >= 1 &&
               s.stride >= 1 && s.pad_begin >= 0 && s.pad_end >= 0,
           "cuda conv2d: invalid shape (" + describe(s) + ")");
  CB_CHECK(s.H + s.pad_begin + s.pad_end >= s.k && s.W + s.pad_begin + s.pad_end >= s.k,
           "cuda conv2d: the kernel is larger than the padded input (" + describe(s) + ")");
  if (s.B == 0 || s.Cout == 0) return;
  ConvGeometry g;
  g.x = x;
  g.w = w;
  g.bias = bias;
  g.y = y;
  g.Cin = s.Cin;
  g.H = s.H;
  g.W = s.W;
  g.Cout = s.Cout;
  g.k = s.k;
  g.stride = s.stride;
  g.pad_begin = s.pad_begin;
  g.Ho = s.out_h();
  g.Wo = s.out_w();
  g.depth = (int64_t)s.Cin * s.k * s.k;
  g.columns = (int64_t)s.B * g.Ho * g.Wo;

  using conv_tile::kM;
  using conv_tile::kN;
  const int64_t tiles_n = (g.columns + kN - 1) / kN, tiles_m = ((int64_t)s.Cout + kM - 1) / kM;
  CB_CHECK(tiles_n < (int64_t(1) << 31) && tiles_m <= 65535,
           "cuda conv2d: too large for one launch (" + describe(s) + ")");
  const dim3 grid((unsigned)tiles_n, (unsigned)tiles_m);
  if (s.k == 1) {
    conv2d_kernel<1><<<grid, conv_tile::kThreads, 0, launch_stream()>>>(g);
  } else if (s.k == 3) {
    conv2d_kernel<3><<<grid, conv_tile::kThreads, 0, launch_stream()>>>(g);
  } else {
    conv2d_kernel<0><<<grid, conv_tile::kThreads, 0, launch_stream()>>>(g);
  }
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace cb
