// CudaConvOps::conv2d_backward: the gradients of conv2d (conv_conv2d.cu) as implicit GEMMs on
// the shared 64x64 fp32 tile (conv_tile.cuh), with taps = k^2 and plane = Ho Wo:
//   dx (Cin, B H W)      = w^T (Cin, Cout taps) . col' (Cout taps, B H W)        (overwritten)
//   dw (Cout, Cin taps) += dy (Cout, B plane) . col^T (B plane, Cin taps)
//   dbias (Cout)        += the sums of dy (Cout, B plane) along its rows.
// col is the forward's im2col matrix (never written out, gathered from x as in the forward);
// col' is its transposed-convolution counterpart, gathered from dy: its entry at tap (co, ky,
// kx) and input pixel (iy, ix) is dy[co, oy, ox] where iy = oy stride - pad_begin + ky (the same
// for x), i.e. where (iy + pad_begin - ky) is a multiple of stride whose quotient is a valid
// output row, and 0 elsewhere. Every value of dx is one thread's plain sum over its depth in
// order, so dx needs no reduction across threads.
//
// dw reduces over all B Ho Wo positions, which is long (up to millions) against a small product
// (Cout x Cin taps), so the positions are split into chunks whose count and length depend on
// the shape alone: block z of the grid multiplies chunk z into its own slot of scratch (no
// atomics), then a second kernel adds the slots to dw in chunk order. One chunk adds straight
// into dw. dbias is one block per channel: each thread sums a fixed stride of the channel's
// values (double), the block combines them in a fixed tree. Every result is the same on every
// run.
//
// Thread mapping of the dx kernel: as the forward (conv_conv2d.cu) with dy for x: blockIdx.x
// walks the 64-column tiles of B H W, blockIdx.y the 64-row tiles of Cin; each thread owns one
// column (input pixel, tid % 64) for the whole kernel. The dw kernel: blockIdx.x walks the
// 64-column tiles of Cin taps, blockIdx.y the 64-row tiles of Cout, blockIdx.z the position
// chunks; a thread stages depth tid % 16 (one position, decoded once per slice) of rows and
// columns tid / 16 + 16 t, so consecutive threads read consecutive positions of dy and of x.
#include <algorithm>
#include <cstdint>
#include <string>

#include "check.h"
#include "conv_ops_cuda.h"
#include "conv_tile.cuh"
#include "grid_stride.cuh"
#include "stream.h"

namespace cb {
namespace {

struct BackwardGeometry {
  const float* x;   // (B, Cin, H, W)
  const float* w;   // (Cout, Cin, k, k)
  const float* dy;  // (B, Cout, Ho, Wo)
  float* dx;        // (B, Cin, H, W)
  int Cin, H, W, Cout;
  int k, stride, pad_begin;
  int Ho, Wo;
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
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = (int64_t)blockIdx.y * kM, n0 = (int64_t)blockIdx.x * kN;
  const int k = KS > 0 ? KS : g.k;
  const int taps = k * k;

  // This thread's column of col' (its input pixel) and that pixel shifted by the padding.
  const int jb = tid % kN, lb = tid / kN;
  const int64_t col = n0 + jb;
  const bool col_ok = col < g.pixels;
  const float* dyimg = g.dy;  // (Cout, Ho, Wo) of the column's image
  int py = 0, px = 0;         // iy + pad_begin, ix + pad_begin
  if (col_ok) {
    const int64_t img = col / g.in_plane, pix = col - img * g.in_plane;
    py = (int)(pix / g.W) + g.pad_begin;
    px = (int)(pix % g.W) + g.pad_begin;
    dyimg += img * g.Cout * g.out_plane;
  }

  // A(ci, co taps + tap) = w[(co Cin + ci) taps + tap]; B as described at the top.
  float wa[kLoads], db[kLoads];
  auto fetch = [&](int64_t k0) {
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int idx = tid + kThreads * t;
      const int i = idx / kK, l = idx % kK;
      const int64_t gm = m0 + i, gk = k0 + l;
      float v = 0.0f;
      if (gm < g.Cin && gk < g.tdepth) {
        const int64_t co = gk / taps, tap = gk - co * taps;
        v = g.w[(co * g.Cin + gm) * taps + tap];
      }
      wa[t] = v;
    }
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int64_t gk = k0 + lb + (kThreads / kN) * t;
      float v = 0.0f;
      if (col_ok && gk < g.tdepth) {
        const int co = (int)(gk / taps), tap = (int)(gk - (int64_t)co * taps);
        const int ky = tap / k, kx = tap - ky * k;
        const int ny = py - ky, nx = px - kx;  // oy stride, ox stride when this tap is used
        if (ny >= 0 && nx >= 0 && ny % g.stride == 0 && nx % g.stride == 0) {
          const int oy = ny / g.stride, ox = nx / g.stride;
          if (oy < g.Ho && ox < g.Wo) v = dyimg[((int64_t)co * g.Ho + oy) * g.Wo + ox];
        }
      }
      db[t] = v;
    }
  };

  float acc[4][4] = {};
  fetch(0);
  for (int64_t k0 = 0; k0 < g.tdepth; k0 += kK) {
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int idx = tid + kThreads * t;
      s.a[idx % kK][idx / kK] = wa[t];
      s.b[lb + (kThreads / kN) * t][jb] = db[t];
    }
    __syncthreads();
    if (k0 + kK < g.tdepth) fetch(k0 + kK);
    multiply_slices(s, tx, ty, acc);
    __syncthreads();  // everyone is done reading the slices before they are overwritten
  }

  // Every (ci, pixel) of the grid is written, 0 where no tap reaches it (Cout 0, or pixels the
  // stride skips), so dx is overwritten whole.
#pragma unroll
  for (int a = 0; a < 4; a++) {
    const int64_t m = m0 + ty + 16 * a;
    if (m >= g.Cin) continue;
#pragma unroll
    for (int b = 0; b < 4; b++) {
      const int64_t c = n0 + tx + 16 * b;
      if (c >= g.pixels) continue;
      const int64_t img = c / g.in_plane, pix = c - img * g.in_plane;
      g.dx[(img * g.Cin + m) * g.in_plane + pix] = acc[a][b];
    }
  }
}

// ---- dw ---------------------------------------------------------------------------------------

// Block z multiplies positions [z chunk, (z + 1) chunk) and writes its product to
// out + z out_stride, or adds it to out when `accumulate` (one chunk: out is dw itself).
template <int KS>
__global__ void __launch_bounds__(conv_tile::kThreads)
    conv2d_dw_kernel(BackwardGeometry g, int64_t chunk,
                     float* out,  // (chunks, Cout, Cin k k) partials, or dw (Cout, Cin k k)
                     int64_t out_stride, bool accumulate) {
  using namespace conv_tile;
  __shared__ Slices s;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = (int64_t)blockIdx.y * kM, n0 = (int64_t)blockIdx.x * kN;
  const int64_t p_begin = (int64_t)blockIdx.z * chunk;
  const int64_t p_end = min(g.positions, p_begin + chunk);
  const int k = KS > 0 ? KS : g.k;
  const int taps = k * k;

  // Staging: depth l (a position) and rows / columns q + 16 t of the tile.
  const int l = tid % kK, q = tid / kK;
  static_assert(kThreads / kK == 16 && kLoads * 16 == kM && kM == kN, "staging layout");
  // This thread's 4 columns of col^T (taps (ci, ky, kx)), decoded once.
  int cci[kLoads], cky[kLoads], ckx[kLoads];
  bool cok[kLoads];
#pragma unroll
  for (int t = 0; t < kLoads; t++) {
    const int64_t r = n0 + q + 16 * t;
    cok[t] = r < g.wdepth;
    const int ci = cok[t] ? (int)(r / taps) : 0;
    const int tap = cok[t] ? (int)(r - (int64_t)ci * taps) : 0;
    cci[t] = ci;
    cky[t] = tap / k;
    ckx[t] = tap - cky[t] * k;
  }

  float da[kLoads], xb[kLoads];
  auto fetch = [&](int64_t k0) {
    const int64_t p = k0 + l;
    const bool ok = p < p_end;
    int64_t img = 0, pix = 0;
    int iy0 = 0, ix0 = 0;
    if (ok) {
      img = p / g.out_plane;
      pix = p - img * g.out_plane;
      iy0 = (int)(pix / g.Wo) * g.stride - g.pad_begin;
      ix0 = (int)(pix % g.Wo) * g.stride - g.pad_begin;
    }
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      const int64_t co = m0 + q + 16 * t;
      da[t] = (ok && co < g.Cout) ? g.dy[(img * g.Cout + co) * g.out_plane + pix] : 0.0f;
      float v = 0.0f;
      if (ok && cok[t]) {
        const int iy = iy0 + cky[t], ix = ix0 + ckx[t];
        if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) {
          v = g.x[((img * g.Cin + cci[t]) * g.H + iy) * g.W + ix];
        }
      }
      xb[t] = v;
    }
  };

  float acc[4][4] = {};
  if (p_begin < p_end) fetch(p_begin);
  for (int64_t k0 = p_begin; k0 < p_end; k0 += kK) {
#pragma unroll
    for (int t = 0; t < kLoads; t++) {
      s.a[l][q + 16 * t] = da[t];
      s.b[l][q + 16 * t] = xb[t];
    }
    __syncthreads();
    if (k0 + kK < p_end) fetch(k0 + kK);
    multiply_slices(s, tx, ty, acc);
    __syncthreads();  // everyone is done reading the slices before they are overwritten
  }

  float* dst = out + (accumulate ? 0 : (int64_t)blockIdx.z * out_stride);
#pragma unroll
  for (int a = 0; a < 4; a++) {
    const int64_t m = m0 + ty + 16 * a;
    if (m >= g.Cout) continue;
#pragma unroll
    for (int b = 0; b < 4; b++) {
      const int64_t r = n0 + tx + 16 * b;
      if (r >= g.wdepth) continue;
      if (accumulate) {
        dst[m * g.wdepth + r] += acc[a][b];
      } else {
        dst[m * g.wdepth + r] = acc[a][b];
      }
    }
  }
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
constexpr int kBiasWarps = kBiasThreads / 32;

// Block c: dbias[c] += the sum of dy[b, c, :] over every image b. Each thread sums, in double,
// the values at its offset and every kBiasThreads after it in each image, images in order; the
// threads' sums meet in a fixed tree (warp butterflies, then the warps in order).
__global__ void __launch_bounds__(kBiasThreads)
    conv2d_dbias_kernel(int B, int Cout, int64_t plane,
                        const float* dy,  // (B, Cout, plane)
                        float* dbias) {   // (Cout), +=
  __shared__ double partial[kBiasWarps];
  const int64_t c = blockIdx.x;
  double sum = 0.0;
  for (int b = 0; b < B; b++) {
    const float* row = dy + ((int64_t)b * Cout + c) * plane;  // (plane)
    for (int64_t t = threadIdx.x; t < plane; t += kBiasThreads) sum += (double)row[t];
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kBiasWarps; w++) total += partial[w];
    dbias[c] += (float)total;
  }
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

std::string describe(const Conv2dShape& s) {
  return "B " + std::to_string(s.B) + ", Cin " + std::to_string(s.Cin) + ", H " +
         std::to_string(s.H) + ", W " + std::to_string(s.W) + ", Cout " + std::to_string(s.Cout) +
         ", k " + std::to_string(s.k) + ", stride " + std::to_string(s.stride) + ", pad " +
         std::to_string(s.pad_begin) + "/" + std::to_string(s.pad_end);
}

template <int KS>
void launch_dx(const BackwardGeometry& g) {
  using conv_tile::kM;
  using conv_tile::kN;
  const dim3 grid((unsigned)ceil_div(g.pixels, kN), (unsigned)ceil_div(g.Cin, kM));
  conv2d_dx_kernel<KS><<<grid, conv_tile::kThreads, 0, launch_stream()>>>(g);
  CB_CUDA_CHECK_LAUNCH();
}

template <int KS>
void launch_dw(const BackwardGeometry& g, const DwPlan& plan, float* out, bool accumulate) {
  using conv_tile::kM;
  using conv_tile::kN;
  const dim3 grid((unsigned)ceil_div(g.wdepth, kN), (unsigned)ceil_div(g.Cout, kM),
                  (unsigned)plan.chunks);
  conv2d_dw_kernel<KS><<<grid, conv_tile::kThreads, 0, launch_stream()>>>(
      g, plan.chunk, out, (int64_t)g.Cout * g.wdepth, accumulate);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaConvOps::conv2d_backward(const Conv2dShape& s,
                                  const float* x,   // (B, Cin, H, W)
                                  const float* w,   // (Cout, Cin, k, k)
                                  const float* dy,  // (B, Cout, Ho, Wo)
                                  float* dx,        // (B, Cin, H, W) or null
                                  float* dw,        // (Cout, Cin, k, k), +=
                                  float* dbias) {   // (Cout) or null, +=
  CB_CHECK(s.B >= 0 && s.Cin >= 0 && s.H >= 0 && s.W >= 0 && s.Cout >= 0 && s.k >= 1 &&
               s.stride >= 1 && s.pad_begin >= 0 && s.pad_end >= 0,
           "cuda conv2d_backward: invalid shape (" + describe(s) + ")");
  CB_CHECK(s.H + s.pad_begin + s.pad_end >= s.k && s.W + s.pad_begin + s.pad_end >= s.k,
           "cuda conv2d_backward: the kernel is larger than the padded input (" + describe(s) +
               ")");
  if (s.B == 0) return;
  BackwardGeometry g;
  g.x = x;
  g.w = w;
  g.dy = dy;
  g.dx = dx;
  g.Cin = s.Cin;
  g.H = s.H;
  g.W = s.W;
  g.Cout = s.Cout;
  g.k = s.k;
  g.stride = s.stride;
  g.pad_begin = s.pad_begin;
  g.Ho = s.out_h();
  g.Wo = s.out_w();
  g.in_plane = (int64_t)s.H * s.W;
  g.out_plane = (int64_t)g.Ho * g.Wo;
  g.pixels = (int64_t)s.B * g.in_plane;
  g.tdepth = (int64_t)s.Cout * s.k * s.k;
  g.positions = (int64_t)s.B * g.out_plane;
  g.wdepth = (int64_t)s.Cin * s.k * s.k;

  using conv_tile::kM;
  using conv_tile::kN;
  if (dx != nullptr && s.Cin > 0 && g.pixels > 0) {
    CB_CHECK(ceil_div(g.pixels, kN) < (int64_t(1) << 31) && ceil_div(s.Cin, kM) <= 65535,
             "cuda conv2d_backward: dx too large for one launch (" + describe(s) + ")");
    if (s.k == 1) {
      launch_dx<1>(g);
    } else if (s.k == 3) {
      launch_dx<3>(g);
    } else {
      launch_dx<0>(g);
    }
  }

  if (s.Cout == 0 || g.positions == 0) return;  // no weights, or dy is empty: nothing to add
  if (g.wdepth > 0) {
    const int64_t weights = (int64_t)s.Cout * g.wdepth;
    const int64_t tiles = ceil_div(g.wdepth, kN) * ceil_div(s.Cout, kM);
    CB_CHECK(ceil_div(g.wdepth, kN) < (int64_t(1) << 31) && ceil_div(s.Cout, kM) <= 65535,
             "cuda conv2d_backward: dw too large for one launch (" + describe(s) + ")");
    const DwPlan plan = plan_dw(g.positions, tiles, weights);
    const bool direct = plan.chunks == 1;
    float* out = direct ? dw : scratch_floats(plan.chunks * weights);  // (chunks, Cout, Cin k k)
    if (s.k == 1) {
      launch_dw<1>(g, plan, out, direct);
    } else if (s.k == 3) {
      launch_dw<3>(g, plan, out, direct);
    } else {
      launch_dw<0>(g, plan, out, direct);
    }
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
