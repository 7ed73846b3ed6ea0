// nearest_codes on the GPU with one fused tiled kernel (no cuBLAS): a block of 16x16 threads
// takes NP = 64 points and walks the codebook in tiles of NK = 64 codes. For each tile the dot
// products are accumulated over d in steps of ND = 16 staged in shared memory, each thread
// holding a 4x4 sub-tile (points ty + 16a, codes tx + 16b). The scores |e|^2 - 2 x.e update a
// running (value, index) per point and thread; a final pass over the 16 threads of each point
// keeps the smallest value, and for equal values the smallest index (first index wins ties).
#include <cfloat>

#include "check.h"
#include "kernels.h"

namespace cb {
namespace {

constexpr int NP = 64, NK = 64, ND = 16;  // points, codes and depth per tile
constexpr int TX = 16, TY = 16;           // threads per block along codes and points
constexpr int RP = NP / TY, RK = NK / TX; // points and codes per thread (4 x 4)

__global__ void sq_norms_kernel(const float* x, int rows, int d, float* out) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const float* xr = x + (int64_t)r * d;  // (d)
  float s = 0.0f;
  for (int l = 0; l < d; l++) s += xr[l] * xr[l];
  out[r] = s;
}

__global__ void nearest_tiled(const float* x, const float* x2, int n, int d, const float* e,
                              const float* e2, int k, int32_t* index, float* dist2) {
  __shared__ float xs[ND][NP];     // xs[l][i] = x[p0 + i][l0 + l]
  __shared__ float es[ND][NK];     // es[l][j] = e[k0 + j][l0 + l]
  __shared__ float red_v[NP][TX];  // per point, the best value of each thread column
  __shared__ int red_i[NP][TX];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * TX + tx;
  const int p0 = blockIdx.x * NP;

  float best_v[RP];
  int best_i[RP];
  for (int a = 0; a < RP; a++) {
    best_v[a] = FLT_MAX;
    best_i[a] = 0;
  }

  for (int k0 = 0; k0 < k; k0 += NK) {
    float acc[RP][RK] = {};  // x . e for points ty + 16a, codes k0 + tx + 16b
    for (int l0 = 0; l0 < d; l0 += ND) {
      for (int t = tid; t < NP * ND; t += TX * TY) {
        const int i = t / ND, l = t % ND;
        const bool ok = p0 + i < n && l0 + l < d;
        xs[l][i] = ok ? x[(int64_t)(p0 + i) * d + l0 + l] : 0.0f;
      }
      for (int t = tid; t < NK * ND; t += TX * TY) {
        const int j = t / ND, l = t % ND;
        const bool ok = k0 + j < k && l0 + l < d;
        es[l][j] = ok ? e[(int64_t)(k0 + j) * d + l0 + l] : 0.0f;
      }
      __syncthreads();
      for (int l = 0; l < ND; l++) {
        float xv[RP], ev[RK];
        for (int a = 0; a < RP; a++) xv[a] = xs[l][ty + TY * a];
        for (int b = 0; b < RK; b++) ev[b] = es[l][tx + TX * b];
        for (int a = 0; a < RP; a++) {
          for (int b = 0; b < RK; b++) acc[a][b] += xv[a] * ev[b];
        }
      }
      __syncthreads();
    }
    // Codes k0 + tx + 16b increase with b, so strict < keeps this thread's first minimum.
    for (int b = 0; b < RK; b++) {
      const int j = k0 + tx + TX * b;
      if (j >= k) break;
      for (int a = 0; a < RP; a++) {
        const float v = e2[j] - 2.0f * acc[a][b];
        if (v < best_v[a]) {
          best_v[a] = v;
          best_i[a] = j;
        }
      }
    }
  }

  for (int a = 0; a < RP; a++) {
    red_v[ty + TY * a][tx] = best_v[a];
    red_i[ty + TY * a][tx] = best_i[a];
  }
  __syncthreads();
  if (tid < NP && p0 + tid < n) {
    float v = red_v[tid][0];
    int j = red_i[tid][0];
    for (int c = 1; c < TX; c++) {
      const float vc = red_v[tid][c];
      const int jc = red_i[tid][c];
      if (vc < v || (vc == v && jc < j)) {
        v = vc;
        j = jc;
      }
    }
    index[p0 + tid] = j;
    dist2[p0 + tid] = fmaxf(0.0f, x2[p0 + tid] + v);
  }
}

}  // namespace

void cuda_sq_norms(const float* x, int rows, int d, float* out) {
  if (rows == 0) return;
  const int threads = 256;
  sq_norms_kernel<<<(rows + threads - 1) / threads, threads>>>(x, rows, d, out);
  CB_CUDA_CHECK_LAUNCH();
}

void cuda_nearest_chunk(const float* x, const float* x2, int n, int d, const float* e,
                        const float* e2, int k, int32_t* index, float* dist2) {
  if (n == 0) return;
  const dim3 block(TX, TY);
  nearest_tiled<<<(n + NP - 1) / NP, block>>>(x, x2, n, d, e, e2, k, index, dist2);
  CB_CUDA_CHECK_LAUNCH();
}

}  // namespace cb
