// CpuModelOps: blockwise causal attention, the forward in attention_kernel.h's vector loops,
// the backward with sgemm tiles.
//
// visible_end is constant within a block of slots, so the query slots fall into runs with the
// same visible keys [0, vis). Per (batch, head) and per run of at most kRowTile query rows:
//   forward   S = scale Q_run K_vis^T, P = softmax(S) (saving lse), O_run = P V_vis
//   backward  P = exp(scale Q_run K_vis^T - lse), dV_vis += P^T dO_run, dP = dO_run V_vis^T,
//             dS = P * (dP - rowsum(dO * O)), dQ_run = scale dS K_vis, dK_vis += scale dS^T Q_run
// Only visible keys are ever touched (no mask). Heads are interleaved in (B, T, H*hd): every
// sgemm reads and writes them in place with leading dimension H*hd.
//
// Threads: (batch, head) pairs are split across threads, each with its own score tiles, and
// OpenBLAS is set to one thread meanwhile so the two levels of threading do not fight over the
// cores. Each pair is computed by one thread in a fixed order, so the result does not depend on
// thread timing. Measured on 2 cores (OpenBLAS 0.3.21, pthreads), forward / backward, with a
// 2-thread OpenBLAS linear layer run before each call as in training:
//   B=8 T=342 H=16 hd=64: pairs over threads, BLAS 1 thread   28 / 39 ms
//                         pairs serial, BLAS 2 threads        65 / 101 ms
//                         pairs over threads, BLAS 2 threads  184 / 450 ms (oversubscribed)
//   B=8 T=86 H=4 hd=64:   0.78 / 1.20 ms, 1.17 / 1.88 ms, 0.79 / 1.21 ms
// Row tiles of 32 or 128 were within 5% of 64. The OpenBLAS thread count is process-wide: an
// sgemm another thread runs during an attention call runs single-threaded too (slower, same
// result).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../error.h"
#include "attention_kernel.h"
#include "model_ops_cpu.h"
#include "parallel.h"
#include "sgemm.h"
#include "vector_math.h"

#ifdef CB_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace cb {
namespace {

// Query rows per tile: a (kRowTile, T) score tile stays in L2 for the T of the presets, and
// tiles of at most 64 rows keep the blocked sgemm (no OpenBLAS) from threading inside a thread.
constexpr int kRowTile = 64;
// Multiply-adds below which the whole call runs on the calling thread.
constexpr double kThreadWork = double(1 << 20);

struct Run {
  int t0, t1, vis;  // query slots [t0, t1) see keys [0, vis)
};

// Runs of equal visible_end, cut into tiles of at most kRowTile rows. Any visible_end is
// handled correctly; a blockwise causal one gives few runs.
// `keys` is the number of keys there are (visible_end may not exceed it).
std::vector<Run> query_runs(int T, const int32_t* visible_end, int64_t keys) {
  std::vector<Run> runs;
  for (int t = 0; t < T;) {
    const int vis = visible_end[t];
    CB_CHECK(vis >= 0 && vis <= keys, "attention: visible_end[" + std::to_string(t) + "] = " +
                                          std::to_string(vis) + " outside [0, " +
                                          std::to_string(keys) + "]");
    int t1 = t + 1;
    while (t1 < T && t1 - t < kRowTile && visible_end[t1] == vis) t1++;
    runs.push_back({t, t1, vis});
    t = t1;
  }
  return runs;
}

// While alive, OpenBLAS computes on the calling thread only (when it is the BLAS in use).
class SingleThreadedBlas {
 public:
  explicit SingleThreadedBlas(bool active) {
#ifdef CB_HAVE_OPENBLAS
    if (active) {
      saved_ = openblas_get_num_threads();
      if (saved_ != 1) openblas_set_num_threads(1);
    }
#else
    (void)active;
#endif
  }
  ~SingleThreadedBlas() {
#ifdef CB_HAVE_OPENBLAS
    if (saved_ > 1) openblas_set_num_threads(saved_);
#endif
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  [[maybe_unused]] int saved_ = 0;
};

// Calls fn(part, pair) for every (batch, head) pair, pairs split into contiguous ranges over
// `parts` threads (part indexes that thread's scratch).
template <typename Fn>
void for_pairs(int pairs, int parts, Fn fn) {
  SingleThreadedBlas single(parts > 1);
  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t part = p0; part < p1; part++) {
      const int begin = (int)(int64_t(pairs) * part / parts);
      const int end = (int)(int64_t(pairs) * (part + 1) / parts);
      for (int pair = begin; pair < end; pair++) fn((int)part, pair);
    }
  });
}

// Threads for a call of `pairs` pairs doing about `work` multiply-adds each.
int thread_parts(int pairs, double work_per_pair) {
  if (double(pairs) * work_per_pair < kThreadWork) return 1;
  return std::max(1, std::min(cpu_threads(), pairs));
}

// Multiply-adds of one pair's forward: S and O, hd each per visible key.
double pair_work(const std::vector<Run>& runs, int hd) {
  double w = 0;
  for (const Run& r : runs) w += double(r.t1 - r.t0) * r.vis * 2.0 * hd;
  return w;
}

}  // namespace

void CpuModelOps::attention(int B, int T, int H, int hd, const float* q, const float* k,
                            const float* v, const int32_t* visible_end, float* out, float* lse) {
  const std::vector<Run> runs = query_runs(T, visible_end, T);
  const int64_t C = int64_t(H) * hd;  // row stride of q, k, v, out
  const float scale = 1.0f / std::sqrt((float)hd);
  const int pairs = B * H, parts = thread_parts(pairs, pair_work(runs, hd));
  const int64_t tile = attention_scratch_floats(T, hd);  // floats per thread
  if (int64_t(attention_scratch_.size()) < tile * parts) attention_scratch_.resize(tile * parts);

  for_pairs(pairs, parts, [&](int part, int pair) {
    const int b = pair / H, h = pair % H;
    const int64_t base = int64_t(b) * T * C + int64_t(h) * hd;
    const float* qb = q + base;  // (T, hd) at stride C
    const float* kb = k + base;  // (T, hd) at stride C
    const float* vb = v + base;  // (T, hd) at stride C
    float* ob = out + base;      // (T, hd) at stride C
    float* lb = lse + int64_t(pair) * T;       // (T)
    float* scratch = attention_scratch_.data() + tile * part;
    for (const Run& r : runs) {
      const int m = r.t1 - r.t0, vis = r.vis;
      if (vis == 0) {  // nothing visible: zero output, empty log-sum-exp
        for (int t = r.t0; t < r.t1; t++) {
          std::memset(ob + t * C, 0, sizeof(float) * hd);
          lb[t] = -std::numeric_limits<float>::infinity();
        }
        continue;
      }
      attend_queries(m, vis, hd, scale, qb + r.t0 * C, C, kb, vb, C, scratch, ob + r.t0 * C,
                     lb + r.t0);
    }
  });
}

void CpuModelOps::attention_backward(int B, int T, int H, int hd, const float* q, const float* k,
                                     const float* v, const int32_t* visible_end, const float* out,
                                     const float* lse, const float* dout, float* dq, float* dk,
                                     float* dv) {
  const std::vector<Run> runs = query_runs(T, visible_end, T);
  const int64_t C = int64_t(H) * hd;
  const float scale = 1.0f / std::sqrt((float)hd);
  const int pairs = B * H, parts = thread_parts(pairs, 2.5 * pair_work(runs, hd));
  const size_t tile = (size_t)kRowTile * T;  // per thread: P and dP tiles
  if (attention_scratch_.size() < 2 * tile * parts) attention_scratch_.resize(2 * tile * parts);

  for_pairs(pairs, parts, [&](int part, int pair) {
    const int b = pair / H, h = pair % H;
    const int64_t base = int64_t(b) * T * C + int64_t(h) * hd;
    const float* qb = q + base;     // (T, hd) at stride C
    const float* kb = k + base;     // (T, hd) at stride C
    const float* vb = v + base;     // (T, hd) at stride C
    const float* ob = out + base;   // (T, hd) at stride C
    const float* dob = dout + base; // (T, hd) at stride C
    float* dqb = dq + base;         // (T, hd) at stride C
    float* dkb = dk + base;         // (T, hd) at stride C
    float* dvb = dv + base;         // (T, hd) at stride C
    const float* lb = lse + int64_t(pair) * T;  // (T)
    float* P = attention_scratch_.data() + 2 * tile * part;  // (m, vis)
    float* dP = P + tile;                                    // (m, vis), becomes dS
    for (int t = 0; t < T; t++) {
      std::memset(dkb + t * C, 0, sizeof(float) * hd);
      std::memset(dvb + t * C, 0, sizeof(float) * hd);
    }
    for (const Run& r : runs) {
      const int m = r.t1 - r.t0, vis = r.vis;
      const float* qr = qb + r.t0 * C;    // (m, hd) at stride C
      const float* dor = dob + r.t0 * C;  // (m, hd) at stride C
      float* dqr = dqb + r.t0 * C;        // (m, hd) at stride C
      if (vis == 0) {
        for (int i = 0; i < m; i++) std::memset(dqr + i * C, 0, sizeof(float) * hd);
        continue;
      }
      cpu_sgemm(false, true, m, vis, hd, scale, qr, (int)C, kb, (int)C, 0.0f, P, vis);
      for (int i = 0; i < m; i++) {
        float* p = P + (int64_t)i * vis;  // (vis)
        const float l = lb[r.t0 + i];
        exp_shifted(p, vis, l);
      }
      cpu_sgemm(true, false, vis, hd, m, 1.0f, P, vis, dor, (int)C, 1.0f, dvb, (int)C);
      cpu_sgemm(false, true, m, vis, hd, 1.0f, dor, (int)C, vb, (int)C, 0.0f, dP, vis);
      for (int i = 0; i < m; i++) {
        const float* o = ob + (r.t0 + i) * C;  // (hd)
        const float* d = dor + i * C;          // (hd)
        float delta = 0.0f;                    // rowsum(dO * O) = sum_j P_ij dP_ij
        for (int c = 0; c < hd; c++) delta += d[c] * o[c];
        const float* p = P + (int64_t)i * vis;  // (vis)
        float* ds = dP + (int64_t)i * vis;      // (vis)
        for (int j = 0; j < vis; j++) ds[j] = p[j] * (ds[j] - delta);
      }
      cpu_sgemm(false, false, m, hd, vis, scale, dP, vis, kb, (int)C, 0.0f, dqr, (int)C);
      cpu_sgemm(true, false, vis, hd, m, scale, dP, vis, qr, (int)C, 1.0f, dkb, (int)C);
    }
  });
}

void CpuModelOps::attention_cached(int B, int Tq, int H, int hd, const float* q, const float* k,
                                   const float* v, int64_t kv_batch_stride,
                                   const int32_t* visible_end, float* out) {
  const int64_t C = int64_t(H) * hd;  // row stride of q, out and the cache
  const std::vector<Run> runs = query_runs(Tq, visible_end, kv_batch_stride / C);
  int max_vis = 0;
  for (const Run& r : runs) max_vis = std::max(max_vis, r.vis);
  const float scale = 1.0f / std::sqrt((float)hd);
  const int pairs = B * H, parts = thread_parts(pairs, pair_work(runs, hd));
  const int64_t tile = attention_scratch_floats(max_vis, hd);  // floats per thread
  if (int64_t(attention_scratch_.size()) < tile * parts) attention_scratch_.resize(tile * parts);

  for_pairs(pairs, parts, [&](int part, int pair) {
    const int b = pair / H, h = pair % H;
    const float* qb = q + int64_t(b) * Tq * C + int64_t(h) * hd;   // (Tq, hd) at stride C
    float* ob = out + int64_t(b) * Tq * C + int64_t(h) * hd;       // (Tq, hd) at stride C
    const float* kb = k + b * kv_batch_stride + int64_t(h) * hd;   // (vis, hd) at stride C
    const float* vb = v + b * kv_batch_stride + int64_t(h) * hd;   // (vis, hd) at stride C
    float* scratch = attention_scratch_.data() + tile * part;
    for (const Run& r : runs) {
      CB_CHECK(r.vis >= 1, "attention_cached: a query sees no key");
      attend_queries(r.t1 - r.t0, r.vis, hd, scale, qb + r.t0 * C, C, kb, vb, C, scratch,
                     ob + r.t0 * C, nullptr);
    }
  });
}

}  // namespace cb
