// CudaConvOps::conv2d_backward: the gradients of conv2d (conv_conv2d.cu) as implicit GEMMs on
// the shared 64x64 fp32 tile (conv_tile.cuh), with taps = k^2 and plane = Ho Wo:
//   dx (Cin, B H W)      = w^T (Cin, Cout taps) . col' (Cout taps, B H W)        (overwritten)
//   dw (Cout, Cin taps) += dy (Cout, B plane) . col^T (B plane, Cin taps)
//   dbias (Cout)        += the sums of dy (Cout, B plane) along its rows.
// col is the forward's im2col matrix (never written out, gathered from x as in the forward, with
// the im2col arithmetic of conv_conv2d.cuh); col' is its transposed-convolution counterpart,
// gathered from dy: its entry at tap (co, ky, kx) and input pixel (iy, ix) is dy[co, oy, ox]
// where iy = oy stride - pad_begin + ky (the same for x), i.e. where (iy + pad_begin - ky) is a
// multiple of stride whose quotient is a valid output row, and 0 elsewhere. Every value of dx is one thread's plain sum over its depth in
// order, so dx needs no reduction across threads.
//
// dw reduces over all B Ho Wo positions, which is long (up to millions) against a small product
// (Cout x Cin taps), so the positions are split into chunks whose count and length depend on
// the shape alone: block z of the grid multiplies chunk z into its own slot of scratch (no
// atomics), then a second kernel adds the slots to dw in chunk order. One chunk adds straight
// into dw. dbias is one block per channel: each thread sums a fixed stride of the channel's
// values (double), the block combines them in a fixed tree (conv_reduce.cuh). Every result is
// the same on every run.
//
// Thread mapping of the dx kernel: as the forward (conv_conv2d.cu) with dy for x: blockIdx.x
// walks the 64-column tiles of B H W, blockIdx.y the 64-row tiles of Cin; each thread owns one
// column (input pixel, tid % 64) for the whole kernel. The dw kernel: blockIdx.x walks the
// 64-column tiles of Cin taps, blockIdx.y the 64-row tiles of Cout, blockIdx.z the position
// chunks; both operands are staged along the depth, so a thread stages depth tid % 16 (one
// position, decoded once per slice) of rows and columns tid / 16 + 16 t, and consecutive
// threads read consecutive positions of dy and of x.
#include <algorithm>
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_conv2d.cuh"
#include "conv_ops_cuda.h"
#include "conv_reduce.cuh"
#include "conv_tile.cuh"
#include "grid_stride.cuh"
#include "stream.h"

namespace cb {
namespace {

struct BackwardGeometry : im2col::Dims {
  const float* x;     // (B, Cin, H, W)
  const float* w;     // (Cout, Cin, k, k)
  const float* dy;    // (B, Cout, Ho, Wo)
  float* dx;          // (B, Cin, H, W)
  int64_t in_plane;   // H W
  int64_t out_plane;  // Ho Wo
  int64_t pixels;     // B H W: dx's N
  int64_t tdepth;     // Cout k k: dx's K
  int64_t positions;  // B Ho Wo: dw's K
  int64_t wdepth;     // Cin k k: dw's N
};

// ---- dx ---------------------------------------------------------------------------------------

// KS: the kernel side when known at compile time, 0 to read it from g.k.
template <int KS>
__global__ void __launch_bounds__(conv_tile::kThreads) conv2d_dx_kernel(BackwardGeometry g) {
  using namespace conv_tile;
  __shared__ Slices s;
  const int tid = threadIdx.x;
  const int64_t m0 = tile_row0(), n0 = tile_col0();
  const int k = KS > 0 ? KS : g.k;
  const int taps = k * k;

  // This thread's column of col' (its input pixel: B is staged across, the same column for
  // every value) and that pixel shifted by the padding.
  const int64_t col = n0 + staged<false>(tid, 0).line;
  const bool col_ok = col < g.pixels;
  const float* dyimg = g.dy;  // (Cout, Ho, Wo) of the column's image
  int py = 0, px = 0;         // iy + pad_begin, ix + pad_begin
  if (col_ok) {
    const int64_t img = col / g.in_plane, pix = col - img * g.in_plane;
    py = (int)(pix / g.W) + g.pad_begin;
    px = (int)(pix % g.W) + g.pad_begin;
    dyimg += img * g.Cout * g.out_plane;
  }

  // A(ci, co taps + tap) = w[(co Cin + ci) taps + tap], along the depth; B as described at the
  // top, across.
  auto fetch = [&](int64_t k0, float (&wa)[kLoads], float (&db)[kLoads]) {
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const Staged at = staged<true>(tid, t);
      const int64_t gm = m0 + at.line, gk = k0 + at.depth;
      float v = 0.0f;
      if (gm < g.Cin && gk < g.tdepth) {
        const int64_t co = gk / taps, tap = gk - co * taps;
        v = g.w[(co * g.Cin + gm) * taps + tap];
      }
      wa[t] = v;
    }
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int64_t gk = k0 + staged<false>(tid, t).depth;
      float v = 0.0f;
      if (col_ok && gk < g.tdepth) {
        const im2col::Tap tap = im2col::decode_tap(gk, k, taps);  // tap.c: the output channel
        const int ny = py - tap.ky, nx = px - tap.kx;  // oy stride, ox stride when this tap is used
        if (ny >= 0 && nx >= 0 && ny % g.stride == 0 && nx % g.stride == 0) {
          const int oy = ny / g.stride, ox = nx / g.stride;
          if (oy < g.Ho && ox < g.Wo) v = dyimg[((int64_t)tap.c * g.Ho + oy) * g.Wo + ox];
        }
      }
      db[t] = v;
    }
  };

  float acc[4][4] = {};
  accumulate<true, false>(s, 0, g.tdepth, fetch, acc);
  // Every (ci, pixel) of the grid is written, 0 where no tap reaches it (Cout 0, or pixels the
  // stride skips), so dx is overwritten whole.
  for_each_result(m0, n0, g.Cin, g.pixels, acc, [&](int64_t m) {
    return [&, m](int64_t c, float v) { g.dx[im2col::nchw_offset(m, c, g.Cin, g.in_plane)] = v; };
  });
}

// ---- dw ---------------------------------------------------------------------------------------

// Block z multiplies positions [z chunk, (z + 1) chunk) and writes its product to
// out + z out_stride, or adds it to out when `direct` (one chunk: out is dw itself).
template <int KS>
__global__ void __launch_bounds__(conv_tile::kThreads)
    conv2d_dw_kernel(BackwardGeometry g, int64_t chunk,
                     float* out,  // (chunks, Cout, Cin k k) partials, or dw (Cout, Cin k k)
                     int64_t out_stride, bool direct) {
  using namespace conv_tile;
  __shared__ Slices s;
  const int tid = threadIdx.x;
  const int64_t m0 = tile_row0(), n0 = tile_col0();
  const int64_t p_begin = (int64_t)blockIdx.z * chunk;
  const int64_t p_end = min(g.positions, p_begin + chunk);
  const int k = KS > 0 ? KS : g.k;
  const int taps = k * k;

  // Both operands are staged along the depth: this thread's depth (a position) is the same for
  // every value, its rows / columns are staged<true>(tid, t).line.
  const int l = staged<true>(tid, 0).depth;
  // This thread's 4 columns of col^T (taps (ci, ky, kx)), decoded once.
  im2col::Tap ctap[kLoads];
  bool cok[kLoads];
#pragma unroll
  for (int t = 0; t < kLoads; t++) {
    const int64_t r = n0 + staged<true>(tid, t).line;
    cok[t] = r < g.wdepth;
    ctap[t] = cok[t] ? im2col::decode_tap(r, k, taps) : im2col::Tap{0, 0, 0};
  }

  auto fetch = [&](int64_t k0, float (&da)[kLoads], float (&xb)[kLoads]) {
    const int64_t p = k0 + l;
    const bool ok = p < p_end;
    im2col::Window win{0, 0, 0, 0};
    if (ok) win = im2col::window_of(g, p, g.out_plane);
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int64_t co = m0 + staged<true>(tid, t).line;
      da[t] = (ok && co < g.Cout) ? g.dy[(win.img * g.Cout + co) * g.out_plane + win.pix] : 0.0f;
      float v = 0.0f;
      if (ok && cok[t]) {
        const int iy = win.iy0 + ctap[t].ky, ix = win.ix0 + ctap[t].kx;
        if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) {
          v = g.x[((win.img * g.Cin + ctap[t].c) * g.H + iy) * g.W + ix];
        }
      }
      xb[t] = v;
    }
  };

  float acc[4][4] = {};
  accumulate<true, true>(s, p_begin, p_end, fetch, acc);
  float* dst = out + (direct ? 0 : (int64_t)blockIdx.z * out_stride);
  for_each_result(m0, n0, g.Cout, g.wdepth, acc, [&](int64_t m) {
    return [&, m](int64_t r, float v) {
      if (direct) {
        dst[m * g.wdepth + r] += v;
      } else {
        dst[m * g.wdepth + r] = v;
      }
    };
  });
}

// dw[e] += the chunks' partials of e, in chunk order.
__global__ void add_chunks_kernel(int64_t count, int64_t chunks,
                                  const float* part,  // (chunks, count)
                                  float* dw) {        // (count), +=
  for (int64_t e = grid_stride::thread_index(); e < count; e += grid_stride::thread_stride()) {
    float sum = 0.0f;
    for (int64_t z = 0; z < chunks; z++) sum += part[z * count + e];
    dw[e] += sum;
  }
}

// ---- dbias ------------------------------------------------------------------------------------

constexpr int kBiasThreads = 256;

// Block c: dbias[c] += the sum of dy[b, c, :] over every image b. Each thread sums, in double,
// the values at its offset and every kBiasThreads after it in each image, images in order; the
// threads' sums meet in the fixed tree of conv_reduce.cuh.
__global__ void __launch_bounds__(kBiasThreads)
    conv2d_dbias_kernel(int B, int Cout, int64_t plane,
                        const float* dy,  // (B, Cout, plane)
                        float* dbias) {   // (Cout), +=
  __shared__ double partial[kBiasThreads / 32];
  const int64_t c = blockIdx.x;
  double sum = 0.0;
  for (int b = 0; b < B; b++) {
    const float* row = dy + ((int64_t)b * Cout + c) * plane;  // (plane)
    for (int64_t t = threadIdx.x; t < plane; t += kBiasThreads) sum += (double)row[t];
  }
  const double total = conv_reduce::block_sum<kBiasThreads>(sum, partial);
  if (threadIdx.x == 0) dbias[c] += (float)total;
}

// ---- plan -------------------------------------------------------------------------------------

// The position chunks of dw, from the shape alone: enough blocks to fill the GPU (about
// kTargetBlocks), chunks of at least kMinChunk positions (a multiple of the slice depth), and
// at most kMaxPartialFloats of partials in scratch.
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMinChunk = 256;
constexpr int64_t kMaxPartialFloats = int64_t(1) << 25;  // 128 MiB
static_assert(kMinChunk % conv_tile::kK == 0, "chunks are whole slices");

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct DwPlan {
  int64_t chunk;   // positions per chunk
  int64_t chunks;  // ceil(positions / chunk)
};

DwPlan plan_dw(int64_t positions, int64_t tiles, int64_t weights) {
  int64_t chunks = std::min({ceil_div(kTargetBlocks, tiles), ceil_div(positions, kMinChunk),
                             std::max<int64_t>(1, kMaxPartialFloats / weights), int64_t(65535)});
  chunks = std::max<int64_t>(1, chunks);
  DwPlan plan;
  plan.chunk = ceil_div(ceil_div(positions, chunks), conv_tile::kK) * conv_tile::kK;
  plan.chunks = ceil_div(positions, plan.chunk);
  return plan;
}

}  // namespace

void CudaConvOps::conv2d_backward(const Conv2dShape& s,
                                  const float* x,   // (B, Cin, H, W)
                                  const float* w,   // (Cout, Cin, k, k)
                                  const float* dy,  // (B, Cout, Ho, Wo)
                                  float* dx,        // (B, Cin, H, W) or null
                                  float* dw,        // (Cout, Cin, k, k), +=
                                  float* dbias) {   // (Cout) or null, +=
  const im2col::Dims dims = im2col::checked_dims(s, "cuda conv2d_backward");
  if (s.B == 0) return;
  BackwardGeometry g;
  static_cast<im2col::Dims&>(g) = dims;
  g.x = x;
  g.w = w;
  g.dy = dy;
  g.dx = dx;
  g.in_plane = (int64_t)s.H * s.W;
  g.out_plane = (int64_t)g.Ho * g.Wo;
  g.pixels = (int64_t)s.B * g.in_plane;
  g.tdepth = (int64_t)s.Cout * s.k * s.k;
  g.positions = (int64_t)s.B * g.out_plane;
  g.wdepth = (int64_t)s.Cin * s.k * s.k;

  using conv_tile::kThreads;
  if (dx != nullptr && s.Cin > 0 && g.pixels > 0) {
    CB_CHECK(conv_tile::grid_fits(s.Cin, g.pixels),
             "cuda conv2d_backward: dx too large for one launch (" + im2col::describe(s) + ")");
    const dim3 grid = conv_tile::tile_grid(s.Cin, g.pixels);
    im2col::with_side(s.k, [&](auto side) {
      conv2d_dx_kernel<decltype(side)::value><<<grid, kThreads, 0, launch_stream()>>>(g);
    });
    CB_CUDA_CHECK_LAUNCH();
  }

  if (s.Cout == 0 || g.positions == 0) return;  // no weights, or dy is empty: nothing to add
  if (g.wdepth > 0) {
    const int64_t weights = (int64_t)s.Cout * g.wdepth;
    CB_CHECK(conv_tile::grid_fits(s.Cout, g.wdepth),
             "cuda conv2d_backward: dw too large for one launch (" + im2col::describe(s) + ")");
    const dim3 tiles = conv_tile::tile_grid(s.Cout, g.wdepth);
    const DwPlan plan = plan_dw(g.positions, (int64_t)tiles.x * tiles.y, weights);
    const bool direct = plan.chunks == 1;
    float* out = direct ? dw : scratch_floats(plan.chunks * weights);  // (chunks, Cout, Cin k k)
    const dim3 grid = conv_tile::tile_grid(s.Cout, g.wdepth, plan.chunks);
    im2col::with_side(s.k, [&](auto side) {
      conv2d_dw_kernel<decltype(side)::value><<<grid, kThreads, 0, launch_stream()>>>(
          g, plan.chunk, out, weights, direct);
    });
    CB_CUDA_CHECK_LAUNCH();
    if (!direct) {
      add_chunks_kernel<<<grid_stride::blocks_for(weights), grid_stride::kThreads, 0,
                          launch_stream()>>>(weights, plan.chunks, out, dw);
      CB_CUDA_CHECK_LAUNCH();
    }
  }
  if (dbias != nullptr) {
    conv2d_dbias_kernel<<<(unsigned)s.Cout, kBiasThreads, 0, launch_stream()>>>(
        s.B, s.Cout, g.out_plane, dy, dbias);
    CB_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace cb
