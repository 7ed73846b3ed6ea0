// CudaModelOps embeddings: row gathers and scatters (class and position embeddings, learned
// start vectors) and the rotary position embedding with learned angles.
//
// Every reduction into a table (scatter_add_rows, fill_masked_rows_backward, rope's dangles and
// dmix_logit) is deterministic, without float atomics:
// - Scatters chain the rows that share an index: next[i] is the next row with index[i], and
//   the first row of each chain sums the chain in row order into the table entry (one thread
//   per first row and column), so each entry gets exactly the reference's sequence of adds.
// - Column sums over many rows go in two passes: fixed row chunks reduce to partials with a
//   fixed tree, then one thread per column adds the partials in chunk order.
// Index and position arrays live in GPU memory, so a negative entry cannot throw as on the
// CPU: gathers give zero rows for it and scatters and rope gradients skip it.
#include <algorithm>
#include <cstdint>
#include <string>

#include "check.h"
#include "column_sums.h"
#include "model_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 16;  // grid-stride loops cover the rest

int blocks_for(int64_t count) {
  return (int)std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks);
}

__device__ inline int64_t thread_index() {
  return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ inline int64_t thread_stride() { return (int64_t)gridDim.x * blockDim.x; }

__device__ inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// ---- rows -------------------------------------------------------------------------------------

__global__ void gather_rows_kernel(int64_t n, int c,
                                   const float* table,     // (rows, c)
                                   const int32_t* index,   // (n)
                                   float* out) {           // (n, c)
  const int64_t count = n * c;
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int32_t idx = index[e / c];
    out[e] = idx >= 0 ? table[(int64_t)idx * c + e % c] : 0.0f;
  }
}

__global__ void fill_masked_rows_kernel(int64_t n, int c,
                                        const uint8_t* mask,  // (n)
                                        const float* vec,     // (c)
                                        float* x) {           // (n, c)
  const int64_t count = n * c;
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    if (mask[e / c] != 0) x[e] = vec[e % c];
  }
}

// next[i] = the first row k > i with index[k] == index[i], or -1 (also for negative indices);
// has_prev[k] = 1 for every such k (each row has at most one predecessor, so the stores never
// collide). has_prev is zeroed before. Each thread scans forward from its row, so the cost is
// the distance to the next repeat (about T rows for position indices of (B, T) batches).
__global__ void chain_kernel(int64_t n,
                             const int32_t* index,  // (n)
                             int32_t* next,         // (n)
                             int32_t* has_prev) {   // (n)
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const int32_t key = index[i];
    int64_t nx = -1;
    if (key >= 0) {
      for (int64_t k = i + 1; k < n; k++) {
        if (index[k] == key) {
          nx = k;
          break;
        }
      }
    }
    next[i] = (int32_t)nx;
    if (nx >= 0) has_prev[nx] = 1;
  }
}

// dst[index[i], j] += src[i, j]: the thread of (first row of a chain, column j) walks the chain
// in row order, starting from the table value, exactly as the reference's loop.
__global__ void scatter_chain_kernel(int64_t n, int c,
                                     const float* src,          // (n, c)
                                     const int32_t* index,      // (n)
                                     const int32_t* next,       // (n)
                                     const int32_t* has_prev,   // (n)
                                     float* dst) {              // (rows, c) +=
  const int64_t count = n * c;
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int64_t i = e / c, j = e % c;
    const int32_t idx = index[i];
    if (idx < 0 || has_prev[i] != 0) continue;
    float* d = dst + (int64_t)idx * c + j;
    float acc = *d;
    for (int64_t k = i; k >= 0; k = next[k]) acc += src[k * c + j];
    *d = acc;
  }
}

// Deterministic dst (rows, c) += scatter of src (n, c) by index; `ints` is scratch of 2n.
void scatter_add_chained(int64_t n, int c, const float* src, const int32_t* index, float* dst,
                         int32_t* ints) {
  if (n <= 0 || c <= 0) return;
  CB_CHECK(n < (int64_t(1) << 31), "scatter_add_rows: too many rows (" + std::to_string(n) + ")");
  int32_t* next = ints;          // (n)
  int32_t* has_prev = ints + n;  // (n)
  CB_CUDA_CHECK(cudaMemsetAsync(has_prev, 0, size_t(n) * sizeof(int32_t), launch_stream()));
  chain_kernel<<<blocks_for(n), kThreads, 0, launch_stream()>>>(n, index, next, has_prev);
  CB_CUDA_CHECK_LAUNCH();
  scatter_chain_kernel<<<blocks_for(n * c), kThreads, 0, launch_stream()>>>(
      n, c, src, index, next, has_prev, dst);
  CB_CUDA_CHECK_LAUNCH();
}

// ---- rope -------------------------------------------------------------------------------------
// Pair i of a head rotates (x0, x1) = (x[2i], x[2i+1]) by angle a:
// R(a) x = (x0 cos - x1 sin, x0 sin + x1 cos); d/da R(a) x = (-x0 sin - x1 cos,
// x0 cos - x1 sin); R(a)^T d = (d0 cos + d1 sin, -d0 sin + d1 cos).

// One thread per (row r, pair i), looping over the heads (one sincos per angle and row).
// A row with a negative position gets zeros.
__global__ void rope_kernel(int64_t n, int H, int hd,
                            const float* x,          // n rows at stride ld
                            int ld,
                            const float* angles,     // (positions, hd/2)
                            const int32_t* pos_p,    // (n)
                            const int32_t* pos_q,    // (n), read when mix_logit
                            const float* mix_logit,  // (H) or null
                            float* y) {              // (n, H*hd)
  const int half = hd / 2;
  const bool mixed = mix_logit != nullptr;
  const int64_t count = n * half;
  for (int64_t e = thread_index(); e < count; e += thread_stride()) {
    const int64_t r = e / half;
    const int i = (int)(e % half);
    const int32_t pp = pos_p[r], pq = mixed ? pos_q[r] : pp;
    const bool valid = pp >= 0 && pq >= 0;
    float sp = 0.0f, cp = 0.0f, sq = 0.0f, cq = 0.0f;
    if (valid) {
      sincosf(angles[(int64_t)pp * half + i], &sp, &cp);
      if (mixed) sincosf(angles[(int64_t)pq * half + i], &sq, &cq);
    }
    for (int h = 0; h < H; h++) {
      const float* xh = x + r * ld + (int64_t)h * hd;   // (hd)
      float* yh = y + (r * H + h) * (int64_t)hd;        // (hd)
      const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
      const float alpha = mixed ? sigmoid(mix_logit[h]) : 1.0f;
      float y0 = alpha * (x0 * cp - x1 * sp);
      float y1 = alpha * (x0 * sp + x1 * cp);
      if (mixed) {
        const float beta = 1.0f - alpha;
        y0 += beta * (x0 * cq - x1 * sq);
        y1 += beta * (x0 * sq + x1 * cq);
      }
      yh[2 * i] = valid ? y0 : 0.0f;
      yh[2 * i + 1] = valid ? y1 : 0.0f;
    }
  }
}

// One block per row r (blockDim.x = P threads, a power of two); thread tid owns the pairs
// tid, tid + P, ... and loops over the heads for each. It writes dx, and per row:
// - gp_rows[r, i] = sum over heads of alpha_h d/d(angle p) and gq_rows[r, i] the same for
//   (1 - alpha_h) and angle q (when not null), later scattered into dangles by position;
// - dal_rows[r, h] = alpha_h (1 - alpha_h) dy . (R(a_p) x - R(a_q) x) (when not null), later
//   summed over rows into dmix_logit; the per-thread terms of each head meet in s_dal
//   ((H, P) floats of dynamic shared memory) and a fixed tree.
// Rows with a negative position get dx = 0 and zero angle and mixing gradients.
__global__ void rope_backward_kernel(int64_t n, int H, int hd,
                                     const float* x,          // n rows at stride ld
                                     int ld,
                                     const float* angles,     // (positions, hd/2)
                                     const int32_t* pos_p,    // (n)
                                     const int32_t* pos_q,    // (n), read when mix_logit
                                     const float* mix_logit,  // (H) or null
                                     const float* dy,         // (n, H*hd)
                                     float* dx,               // n rows at stride ld
                                     float* gp_rows,          // (n, hd/2) or null
                                     float* gq_rows,          // (n, hd/2) or null
                                     float* dal_rows) {       // (n, H) or null
  extern __shared__ float s_dal[];  // (H, P) when dal_rows
  const int half = hd / 2, P = blockDim.x, tid = threadIdx.x;
  const bool mixed = mix_logit != nullptr;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {  // block-uniform
    const int32_t pp = pos_p[r], pq = mixed ? pos_q[r] : pp;
    const bool valid = pp >= 0 && pq >= 0;
    if (dal_rows != nullptr) {
      for (int h = 0; h < H; h++) s_dal[h * P + tid] = 0.0f;
    }
    for (int i = tid; i < half; i += P) {
      float sp = 0.0f, cp = 0.0f, sq = 0.0f, cq = 0.0f;
      if (valid) {
        sincosf(angles[(int64_t)pp * half + i], &sp, &cp);
        if (mixed) sincosf(angles[(int64_t)pq * half + i], &sq, &cq);
      }
      float gp = 0.0f, gq = 0.0f;
      for (int h = 0; h < H; h++) {
        const float* xh = x + r * ld + (int64_t)h * hd;     // (hd)
        const float* dyh = dy + (r * H + h) * (int64_t)hd;  // (hd)
        float* dxh = dx + r * ld + (int64_t)h * hd;         // (hd)
        if (!valid) {
          dxh[2 * i] = 0.0f;
          dxh[2 * i + 1] = 0.0f;
          continue;
        }
        const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
        const float d0 = dyh[2 * i], d1 = dyh[2 * i + 1];
        const float alpha = mixed ? sigmoid(mix_logit[h]) : 1.0f;
        float dx0 = alpha * (d0 * cp + d1 * sp);
        float dx1 = alpha * (-d0 * sp + d1 * cp);
        gp += alpha * (d0 * (-x0 * sp - x1 * cp) + d1 * (x0 * cp - x1 * sp));
        if (mixed) {
          const float beta = 1.0f - alpha;
          dx0 += beta * (d0 * cq + d1 * sq);
          dx1 += beta * (-d0 * sq + d1 * cq);
          gq += beta * (d0 * (-x0 * sq - x1 * cq) + d1 * (x0 * cq - x1 * sq));
          if (dal_rows != nullptr) {
            s_dal[h * P + tid] += d0 * ((x0 * cp - x1 * sp) - (x0 * cq - x1 * sq)) +
                                  d1 * ((x0 * sp + x1 * cp) - (x0 * sq + x1 * cq));
          }
        }
        dxh[2 * i] = dx0;
        dxh[2 * i + 1] = dx1;
      }
      if (gp_rows != nullptr) gp_rows[r * half + i] = gp;
      if (gq_rows != nullptr) gq_rows[r * half + i] = gq;
    }
    if (dal_rows != nullptr) {
      __syncthreads();
      for (int s = P / 2; s > 0; s /= 2) {
        if (tid < s) {
          for (int h = 0; h < H; h++) s_dal[h * P + tid] += s_dal[h * P + tid + s];
        }
        __syncthreads();
      }
      for (int h = tid; h < H; h += P) {
        const float alpha = sigmoid(mix_logit[h]);
        dal_rows[r * H + h] = alpha * (1.0f - alpha) * s_dal[h * P];
      }
      __syncthreads();  // s_dal is reset for the next row
    }
  }
}

}  // namespace

// ---- rows -------------------------------------------------------------------------------------

void CudaModelOps::gather_rows(int64_t n, int c, const float* table, const int32_t* index,
                               float* out) {
  if (n <= 0 || c <= 0) return;
  gather_rows_kernel<<<blocks_for(n * c), kThreads, 0, launch_stream()>>>(n, c, table, index, out);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::scatter_add_rows(int64_t n, int c, const float* dout, const int32_t* index,
                                    float* dtable) {
  if (n <= 0 || c <= 0) return;
  scatter_add_chained(n, c, dout, index, dtable, scratch_ints(2 * n));
}

void CudaModelOps::fill_masked_rows(int64_t n, int c, const uint8_t* mask, const float* vec,
                                    float* x) {
  if (n <= 0 || c <= 0) return;
  fill_masked_rows_kernel<<<blocks_for(n * c), kThreads, 0, launch_stream()>>>(n, c, mask, vec, x);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::fill_masked_rows_backward(int64_t n, int c, const uint8_t* mask, float* dx,
                                             float* dvec) {
  if (n <= 0 || c <= 0) return;
  float* part = scratch_floats(column_chunks(n) * c);
  masked_column_sums_add_and_zero(n, c, dx, c, mask, dvec, part);
}

// ---- rope -------------------------------------------------------------------------------------

void CudaModelOps::rope(int64_t n, int H, int hd, const float* x, int ld, const float* angles,
                        const int32_t* pos_p, const int32_t* pos_q, const float* mix_logit,
                        float* y) {
  CB_CHECK(hd % 2 == 0, "rope: head size " + std::to_string(hd) + " is odd");
  CB_CHECK(mix_logit == nullptr || pos_q != nullptr, "rope: mixing needs pos_q");
  if (n <= 0 || H <= 0 || hd <= 0) return;
  rope_kernel<<<blocks_for(n * (hd / 2)), kThreads, 0, launch_stream()>>>(
      n, H, hd, x, ld, angles, pos_p, pos_q, mix_logit, y);
  CB_CUDA_CHECK_LAUNCH();
}

void CudaModelOps::rope_backward(int64_t n, int H, int hd, const float* x, int ld,
                                 const float* angles, const int32_t* pos_p,
                                 const int32_t* pos_q, const float* mix_logit, const float* dy,
                                 float* dx, float* dangles, float* dmix_logit) {
  CB_CHECK(hd % 2 == 0, "rope: head size " + std::to_string(hd) + " is odd");
  const bool mixed = mix_logit != nullptr;
  CB_CHECK(!mixed || pos_q != nullptr, "rope: mixing needs pos_q");
  if (n <= 0 || H <= 0 || hd <= 0) return;
  const int half = hd / 2;
  const bool want_angles = dangles != nullptr, want_mix = mixed && dmix_logit != nullptr;

  // One scratch request, split: gp, gq (n, half), dal (n, H), column-sum partials (chunks, H).
  const int64_t gp_count = want_angles ? n * half : 0;
  const int64_t gq_count = want_angles && mixed ? n * half : 0;
  const int64_t dal_count = want_mix ? n * H : 0;
  const int64_t part_count = want_mix ? column_chunks(n) * H : 0;
  float* scratch = scratch_floats(gp_count + gq_count + dal_count + part_count);
  float* gp_rows = want_angles ? scratch : nullptr;
  float* gq_rows = gq_count > 0 ? scratch + gp_count : nullptr;
  float* dal_rows = want_mix ? scratch + gp_count + gq_count : nullptr;
  float* part = want_mix ? dal_rows + dal_count : nullptr;

  const int P = half <= 32 ? 32 : half <= 64 ? 64 : 128;  // threads per row, a power of two
  const size_t shared = want_mix ? size_t(H) * P * sizeof(float) : 0;
  CB_CHECK(shared <= 48 * 1024, "rope_backward: too many heads (" + std::to_string(H) + ")");
  const int blocks = (int)std::min<int64_t>(n, kMaxBlocks);
  rope_backward_kernel<<<blocks, P, shared, launch_stream()>>>(
      n, H, hd, x, ld, angles, pos_p, pos_q, mix_logit, dy, dx, gp_rows, gq_rows, dal_rows);
  CB_CUDA_CHECK_LAUNCH();

  if (want_angles) {
    int32_t* ints = scratch_ints(2 * n);
    scatter_add_chained(n, half, gp_rows, pos_p, dangles, ints);
    if (mixed) scatter_add_chained(n, half, gq_rows, pos_q, dangles, ints);
  }
  if (want_mix) column_sums_add(n, H, dal_rows, H, dmix_logit, part);
}

}  // namespace cb
