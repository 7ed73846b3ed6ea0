// CudaModelOps sampling ops: bilinear upsampling of latent grids and the token draw.
//
// upsample_bilinear: one thread per output value, the rule of sample/upsample.h in double with
// every product and sum rounded separately (__dmul_rn / __dadd_rn: nvcc would otherwise fuse
// them into FMAs, which the host build does not), so the result is bit-identical to the CPU's.
//
// sample_tokens: one block of 512 threads per row, sample_row of sample/token_sampling.h:
//   z = l_c + w (l_c - l_u) in double (unfused, as on the host), greedy = first argmax;
//   z *= 1/T; a bitonic sort of the codes in rank order (z descending, ties by code ascending)
//   when top-k or top-p cut by rank; top-k keeps ranks < k; top-p keeps ranks whose exclusive
//   mass prefix (a block scan in rank order) is below p * total, at least one; entropy from the
//   kept e = exp(z - max); the draw is the first kept code, in code order, whose inclusive mass
//   prefix (a block scan in code order) exceeds u * total, u = sample_uniform(seed, image, slot).
// Per row the kernel keeps w (K doubles: z, then e, -1 marking dropped codes) and the rank order
// (p2 ints, p2 the power of two >= K, only when sorting) in shared memory when they fit the
// device's opt-in limit (K = 8192 takes 96 KB), else in global scratch, rows launched in chunks.
// Sums run in a fixed association (a warp shuffle tree), so draws are deterministic; they match
// the CPU's sequential sums except where a mass prefix lands within rounding of the target.
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "../error.h"
#include "../sample/philox.h"
#include "check.h"
#include "model_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

// ---- upsample -------------------------------------------------------------------------------

// Source taps of output coordinate d: (d + 0.5) * ratio - 0.5 clamped to [0, s_in - 1].
__device__ inline void bilinear_tap(int d, int s_in, double ratio, int* i0, int* i1, double* w) {
  const double at = fmin(fmax(__dadd_rn(__dmul_rn(double(d) + 0.5, ratio), -0.5), 0.0),
                         double(s_in - 1));
  *i0 = int(floor(at));
  *i1 = min(*i0 + 1, s_in - 1);
  *w = at - *i0;
}

// src (B, s_in^2, D) -> dst (B, s_out^2, D); one thread per output value (grid-stride).
__global__ void upsample_kernel(int64_t count, int s_in, int s_out, int D, double ratio,
                                const float* src, float* dst) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < count; e += step) {
    const int d = (int)(e % D);
    const int64_t p = e / D;  // output pixel over the whole batch
    const int x = (int)(p % s_out), y = (int)((p / s_out) % s_out);
    const int64_t b = p / ((int64_t)s_out * s_out);
    int y0, y1, x0, x1;
    double wy, wx;
    bilinear_tap(y, s_in, ratio, &y0, &y1, &wy);
    bilinear_tap(x, s_in, ratio, &x0, &x1, &wx);
    const float* g = src + b * s_in * s_in * D + d;  // grid b, channel d
    const double a00 = g[((int64_t)y0 * s_in + x0) * D], a01 = g[((int64_t)y0 * s_in + x1) * D];
    const double a10 = g[((int64_t)y1 * s_in + x0) * D], a11 = g[((int64_t)y1 * s_in + x1) * D];
    const double w00 = (1 - wy) * (1 - wx), w01 = (1 - wy) * wx, w10 = wy * (1 - wx),
                 w11 = wy * wx;
    const double sum = __dadd_rn(__dadd_rn(__dadd_rn(__dmul_rn(w00, a00), __dmul_rn(w01, a01)),
                                           __dmul_rn(w10, a10)),
                                 __dmul_rn(w11, a11));
    dst[e] = float(sum);
  }
}

// ---- token draw -----------------------------------------------------------------------------

constexpr int kSampleThreads = 512;
constexpr int kSampleWarps = kSampleThreads / 32;
constexpr double kLn2 = 0.69314718055994530942;
// Global scratch per launch when a row's arrays do not fit in shared memory.
constexpr int64_t kScratchBytes = int64_t(128) << 20;

struct SampleArgs {
  const float* cond;     // (n, K)
  const float* uncond;   // (n, K), or null: no guidance
  const int32_t* image;  // (n)
  const int32_t* slot;   // (n)
  int32_t* codes;        // (n)
  float* entropy_bits;   // (n), or null
  double* g_w;           // (rows of the launch, K) global scratch, or null: shared memory
  int32_t* g_order;      // (rows of the launch, p2) global scratch (with g_w, when p2 > 0)
  int64_t row0;          // the launch's first row
  TokenSampling s;
  float guidance;
  int K;
  int p2;  // sort length (power of two >= K); 0 when nothing is cut by rank
};

// The guided logit of code i: c + w (c - u), each operation rounded as on the host.
__device__ inline double guided(const float* cond, const float* uncond, float w, int i) {
  const double c = double(cond[i]);
  if (uncond == nullptr) return c;
  return __dadd_rn(c, __dmul_rn(double(w), __dadd_rn(c, -double(uncond[i]))));
}

struct SumOp {
  __device__ double operator()(double a, double b) const { return a + b; }
};
struct MaxOp {
  template <typename V>
  __device__ V operator()(V a, V b) const { return a > b ? a : b; }
};
struct MinOp {
  template <typename V>
  __device__ V operator()(V a, V b) const { return a < b ? a : b; }
};

// op over the block; every thread gets the result (the same bits: the xor tree is symmetric).
// `red` holds kSampleWarps values in shared memory.
template <typename V, typename Op>
__device__ V block_reduce(V x, Op op, V* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(kFullMask, x, o));
  if (lane == 0) red[warp] = x;
  __syncthreads();
  V r = red[0];
  for (int w = 1; w < kSampleWarps; w++) r = op(r, red[w]);
  __syncthreads();  // red is reused by the next reduction
  return r;
}

// (v, i) ranks before (v2, i2): larger value, then lower index.
__device__ inline bool argmax_before(double v, int i, double v2, int i2) {
  return v > v2 || (v == v2 && i < i2);
}

// The block's best (value, index) by argmax_before, in every thread.
__device__ void block_argmax(double* v, int* i, double* dred, int* ired) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int o = 16; o > 0; o >>= 1) {
    const double ov = __shfl_xor_sync(kFullMask, *v, o);
    const int oi = __shfl_xor_sync(kFullMask, *i, o);
    if (argmax_before(ov, oi, *v, *i)) {
      *v = ov;
      *i = oi;
    }
  }
  if (lane == 0) {
    dred[warp] = *v;
    ired[warp] = *i;
  }
  __syncthreads();
  *v = dred[0];
  *i = ired[0];
  for (int w = 1; w < kSampleWarps; w++) {
    if (argmax_before(dred[w], ired[w], *v, *i)) {
      *v = dred[w];
      *i = ired[w];
    }
  }
  __syncthreads();
}

// Scan of one value per thread in thread order. Returns the inclusive sum; *excl gets the
// exclusive sum and *chunk the block's total, defined as the last thread's inclusive sum (so a
// running carry + inclusive sum ends exactly at the carried total). `red`: kSampleWarps + 1.
__device__ double block_scan(double x, double* excl, double* chunk, double* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  double v = x;
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(kFullMask, v, o);
    if (lane >= o) v = y + v;
  }
  double ve = __shfl_up_sync(kFullMask, v, 1);
  if (lane == 0) ve = 0.0;
  if (lane == 31) red[warp] = v;
  __syncthreads();
  if (warp == 0) {  // exclusive scan of the warp totals
    double t = lane < kSampleWarps ? red[lane] : 0.0;
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(kFullMask, t, o);
      if (lane >= o) t = y + t;
    }
    double te = __shfl_up_sync(kFullMask, t, 1);
    if (lane == 0) te = 0.0;
    if (lane < kSampleWarps) red[lane] = te;
  }
  __syncthreads();
  const double base = red[warp];
  const double incl = base + v;
  *excl = base + ve;
  if (threadIdx.x == kSampleThreads - 1) red[kSampleWarps] = incl;
  __syncthreads();
  *chunk = red[kSampleWarps];
  __syncthreads();  // red is reused by the next call
  return incl;
}

// Code a ranks before code b: larger z, then lower code; entries >= K (padding) rank last.
__device__ inline bool ranks_before(const double* z, int K, int a, int b) {
  if (a >= K || b >= K) return a < b;
  const double za = z[a], zb = z[b];
  return za > zb || (za == zb && a < b);
}

// Sorts order[0, p2) (p2 a power of two) into rank order with a bitonic network; each step
// compares p2/2 disjoint pairs, and a barrier separates the steps (shared or global memory).
__device__ void bitonic_sort(int32_t* order, int p2, const double* z, int K) {
  for (int size = 2; size <= p2; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < p2 / 2; i += kSampleThreads) {
        const int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;  // bit `stride` of lo is 0
        const int x = order[lo], y = order[hi];
        // Blocks of `size` alternate between best-first and worst-first (the last is best-first).
        const bool best_first = (lo & size) == 0;
        if (best_first ? ranks_before(z, K, y, x) : ranks_before(z, K, x, y)) {
          order[lo] = y;
          order[hi] = x;
        }
      }
      __syncthreads();
    }
  }
}

// One row per block: grid (rows of the launch), kSampleThreads threads; dynamic shared memory
// holds w (K doubles) and order (p2 ints) unless a.g_w is set.
__global__ void __launch_bounds__(kSampleThreads) sample_kernel(SampleArgs a) {
  extern __shared__ __align__(16) unsigned char sample_smem[];
  __shared__ double s_red[kSampleWarps + 1];
  __shared__ int s_ired[kSampleWarps];
  const int tid = threadIdx.x, K = a.K;
  const int64_t row = a.row0 + blockIdx.x;
  const float* cond = a.cond + row * K;                                   // (K)
  const float* uncond = a.uncond != nullptr ? a.uncond + row * K : nullptr;  // (K)

  // A row whose guided logits are not all finite draws kNonFiniteLogits (token_sampling.h), as
  // on the host; the sampler reports it. The flag is block-uniform, so every thread returns.
  bool non_finite = false;
  for (int i = tid; i < K; i += kSampleThreads) {
    non_finite |= !isfinite(guided(cond, uncond, a.guidance, i));
  }
  if (__syncthreads_or(non_finite)) {
    if (tid == 0) {
      a.codes[row] = kNonFiniteLogits;
      if (a.entropy_bits != nullptr) a.entropy_bits[row] = 0.0f;
    }
    return;
  }

  if (a.s.temperature <= 0.0f) {  // greedy: the first largest guided logit, entropy 0
    double best = -INFINITY;
    int at = INT_MAX;
    for (int i = tid; i < K; i += kSampleThreads) {
      const double z = guided(cond, uncond, a.guidance, i);
      if (argmax_before(z, i, best, at)) {
        best = z;
        at = i;
      }
    }
    block_argmax(&best, &at, s_red, s_ired);
    if (tid == 0) {
      a.codes[row] = at;
      if (a.entropy_bits != nullptr) a.entropy_bits[row] = 0.0f;
    }
    return;
  }

  double* w;       // (K): z, then e = exp(z - max) for kept codes and -1 for dropped ones
  int32_t* order;  // (p2): codes in rank order
  if (a.g_w != nullptr) {
    w = a.g_w + (int64_t)blockIdx.x * K;
    order = a.p2 > 0 ? a.g_order + (int64_t)blockIdx.x * a.p2 : nullptr;
  } else {
    w = reinterpret_cast<double*>(sample_smem);
    order = reinterpret_cast<int32_t*>(w + K);
  }

  // z = guided logits times 1/T (the host multiplies by the reciprocal too), and their max,
  // which is also the max of the kept codes (the top-ranked code is always kept).
  const double inv_t = 1.0 / double(a.s.temperature);
  double mx = -INFINITY;
  for (int i = tid; i < K; i += kSampleThreads) {
    const double z = __dmul_rn(guided(cond, uncond, a.guidance, i), inv_t);
    w[i] = z;
    mx = z > mx ? z : mx;
  }
  mx = block_reduce(mx, MaxOp(), s_red);  // its barriers also publish w

  const bool top_k = a.s.top_k > 0 && a.s.top_k < K;
  const bool top_p = a.s.top_p < 1.0f;
  if (a.p2 > 0) {  // the host sets p2 exactly when top_k or top_p
    for (int r = tid; r < a.p2; r += kSampleThreads) order[r] = r;
    __syncthreads();
    bitonic_sort(order, a.p2, w, K);
  }
  for (int i = tid; i < K; i += kSampleThreads) w[i] = exp(w[i] - mx);
  __syncthreads();

  int count = K;  // codes kept so far: ranks [0, count)
  if (top_k) {
    count = a.s.top_k;
    for (int r = count + tid; r < K; r += kSampleThreads) w[order[r]] = -1.0;
    __syncthreads();
  }
  if (top_p) {
    // Keep the ranks r whose exclusive prefix mass A_r is below p * total (the host's loop
    // stops at the first r with A_r >= target), and at least rank 0.
    double part = 0.0;
    for (int i = tid; i < K; i += kSampleThreads) part += w[i] > 0.0 ? w[i] : 0.0;
    const double target = double(a.s.top_p) * block_reduce(part, SumOp(), s_red);
    int keep = count;
    double carry = 0.0;
    for (int r0 = 0; r0 < count; r0 += kSampleThreads) {
      const int r = r0 + tid;
      double excl, chunk;
      block_scan(r < count ? w[order[r]] : 0.0, &excl, &chunk, s_red);
      const bool reached = r < count && carry + excl >= target;
      if (__syncthreads_or(reached)) {
        keep = block_reduce(reached ? r : INT_MAX, MinOp(), s_ired);
        break;
      }
      carry += chunk;
    }
    keep = max(keep, 1);
    for (int r = keep + tid; r < count; r += kSampleThreads) w[order[r]] = -1.0;
    __syncthreads();
  }

  // The final distribution p_i = e_i / total over the kept codes: total (a scan in code order,
  // the same one the draw repeats), sum of e_i (z_i - max) for the entropy, the last kept code.
  double carry = 0.0, weighted = 0.0;
  int last = -1;
  for (int i0 = 0; i0 < K; i0 += kSampleThreads) {
    const int i = i0 + tid;
    const double e = i < K ? w[i] : -1.0;
    double excl, chunk;
    block_scan(e > 0.0 ? e : 0.0, &excl, &chunk, s_red);
    carry += chunk;
    if (e >= 0.0) {
      const double z =
          __dadd_rn(__dmul_rn(guided(cond, uncond, a.guidance, i), inv_t), -mx);  // z_i - max
      weighted += e * z;
      last = i;
    }
  }
  const double total = carry;
  weighted = block_reduce(weighted, SumOp(), s_red);
  last = block_reduce(last, MaxOp(), s_ired);
  if (tid == 0 && a.entropy_bits != nullptr) {
    const double h = log(total) - weighted / total;  // nats
    a.entropy_bits[row] = float((h > 0.0 ? h : 0.0) / kLn2);
  }

  // The draw: the first kept code whose inclusive prefix mass exceeds u * total. Only codes
  // with e > 0 can be first (the prefix does not grow elsewhere).
  const double target = sample_uniform(a.s.seed, a.image[row], a.slot[row]) * total;
  int code = -1;
  carry = 0.0;
  for (int i0 = 0; i0 < K; i0 += kSampleThreads) {
    const int i = i0 + tid;
    const double e = i < K ? w[i] : -1.0;
    double excl, chunk;
    const double incl = block_scan(e > 0.0 ? e : 0.0, &excl, &chunk, s_red);
    const bool hit = e > 0.0 && carry + incl > target;
    if (__syncthreads_or(hit)) {
      code = block_reduce(hit ? i : INT_MAX, MinOp(), s_ired);
      break;
    }
    carry += chunk;
  }
  if (tid == 0) a.codes[row] = code >= 0 ? code : last;  // rounding left the target at the total
}

}  // namespace

void CudaModelOps::upsample_bilinear(int B, int s_in, int s_out, int D, const float* src,
                                     float* dst) {
  const int64_t count = (int64_t)B * s_out * s_out * D;
  if (count <= 0) return;
  CB_CHECK(s_in >= 1, "upsample_bilinear: source size " + std::to_string(s_in));
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((count + threads - 1) / threads, int64_t(1) << 20);
  upsample_kernel<<<(unsigned)blocks, threads, 0, launch_stream()>>>(count, s_in, s_out, D,
                                                  double(s_in) / double(s_out), src, dst);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::sample_tokens(int64_t n, int K, const float* cond, const float* uncond,
                                 float guidance, const TokenSampling& s, const int32_t* image,
                                 const int32_t* slot, int32_t* codes, float* entropy_bits) {
  if (n <= 0) return;
  CB_CHECK(K >= 1 && K <= (1 << 29), "sample_tokens: K = " + std::to_string(K));
  const bool greedy = s.temperature <= 0.0f;
  const bool by_rank = !greedy && ((s.top_k > 0 && s.top_k < K) || s.top_p < 1.0f);
  int p2 = 0;
  if (by_rank) {
    p2 = 1;
    while (p2 < K) p2 <<= 1;
  }
  const size_t row_bytes = greedy ? 0 : sizeof(double) * K + sizeof(int32_t) * p2;

  SampleArgs a{};
  a.cond = cond;
  a.uncond = uncond != nullptr && guidance != 0.0f ? uncond : nullptr;
  a.image = image;
  a.slot = slot;
  a.codes = codes;
  a.entropy_bits = entropy_bits;
  a.s = s;
  a.guidance = guidance;
  a.K = K;
  a.p2 = p2;

  // Shared memory when a row's arrays fit beside the kernel's static shared memory: under the
  // default 48 KB as they are, up to the device's opt-in limit once the kernel is allowed that
  // much dynamic memory; global scratch otherwise.
  int device = 0, optin = 0;
  CB_CUDA_CHECK(cudaGetDevice(&device));
  CB_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cudaFuncAttributes attr;
  CB_CUDA_CHECK(cudaFuncGetAttributes(&attr, sample_kernel));
  const size_t static_bytes = attr.sharedSizeBytes;
  const bool in_shared = row_bytes + static_bytes <= (size_t)optin;
  size_t smem = 0;
  int64_t rows_per_launch = int64_t(1) << 30;
  if (in_shared) {
    smem = row_bytes;
    if (smem + static_bytes > 48 * 1024) {
      CB_CUDA_CHECK(cudaFuncSetAttribute(sample_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    }
  } else {
    rows_per_launch = std::max<int64_t>(1, std::min<int64_t>(n, kScratchBytes / row_bytes));
    // K doubles per row as pairs of floats (the scratch is cudaMalloc'd: 8-byte aligned).
    a.g_w = reinterpret_cast<double*>(scratch_floats(rows_per_launch * 2 * (int64_t)K));
    a.g_order = p2 > 0 ? scratch_ints(rows_per_launch * p2) : nullptr;
  }
  for (int64_t r0 = 0; r0 < n; r0 += rows_per_launch) {
    a.row0 = r0;
    const int64_t rows = std::min(rows_per_launch, n - r0);
    sample_kernel<<<(unsigned)rows, kSampleThreads, smem, launch_stream()>>>(a);
    CB_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace cb
