// CpuModelOps: blockwise causal attention, forward and backward in attention_kernel.h's vector
// loops.
//
// visible_end is constant within a block of slots, so the query slots fall into runs with the
// same visible keys [0, vis). Per (batch, head) and per run of at most kRowTile query rows:
//   forward   S = scale Q_run K_vis^T, P = softmax(S) (saving lse), O_run = P V_vis
//   backward  P = exp(scale Q_run K_vis^T - lse), dV_vis += P^T dO_run, dP = dO_run V_vis^T,
//             dS = P * (dP - rowsum(dO * O)), dQ_run = scale dS K_vis, dK_vis += scale dS^T Q_run
// Only visible keys are ever touched (no mask). Heads are interleaved in (B, T, H*hd): the
// kernels read and write them in place with row stride H*hd. A pair's keys (and values, for
// the backward) are transposed once, for all of its runs.
//
// Threads: (batch, head) pairs are split across threads, each with its own scratch. Each pair
// is computed by one thread in a fixed order, so the result does not depend on thread timing.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../error.h"
#include "attention_bf16.h"
#include "attention_kernel.h"
#include "model_ops_cpu.h"
#include "parallel.h"

namespace cb {
namespace {

// Query rows per tile: the backward's (kRowTile, T) P and dS tiles stay in L2 for the T of the
// presets.
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

// Calls fn(part, begin, end) for the (batch, head) pairs split into `parts` contiguous ranges,
// one thread's each (part indexes that thread's scratch).
template <typename Fn>
void for_pair_ranges(int pairs, int parts, Fn fn) {
  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t part = p0; part < p1; part++) {
      fn(int(part), int(int64_t(pairs) * part / parts), int(int64_t(pairs) * (part + 1) / parts));
    }
  });
}

// Calls fn(part, pair) for every pair, ranges as above.
template <typename Fn>
void for_pairs(int pairs, int parts, Fn fn) {
  for_pair_ranges(pairs, parts, [&](int part, int begin, int end) {
    for (int pair = begin; pair < end; pair++) fn(part, pair);
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

// The most keys any run sees.
int max_visible(const std::vector<Run>& runs) {
  int vis = 0;
  for (const Run& r : runs) vis = std::max(vis, r.vis);
  return vis;
}

}  // namespace

void CpuModelOps::attention(int B, int T, int H, int hd, const float* q, const float* k,
                            const float* v, const int32_t* visible_end, float* out, float* lse) {
  const std::vector<Run> runs = query_runs(T, visible_end, T);
  const int64_t C = int64_t(H) * hd;  // row stride of q, k, v, out
  const float scale = 1.0f / std::sqrt((float)hd);
  const int pairs = B * H, parts = thread_parts(pairs, pair_work(runs, hd));
  const int vis_max = max_visible(runs);
  const int64_t kt_floats = transposed_floats(vis_max, hd);
  const int64_t tile = kt_floats + attend_scratch_floats(vis_max, hd);  // floats per thread
  if (int64_t(attention_scratch_.size()) < tile * parts) attention_scratch_.resize(tile * parts);

  for_pairs(pairs, parts, [&](int part, int pair) {
    const int b = pair / H, h = pair % H;
    const int64_t base = int64_t(b) * T * C + int64_t(h) * hd;
    const float* qb = q + base;  // (T, hd) at stride C
    const float* kb = k + base;  // (T, hd) at stride C
    const float* vb = v + base;  // (T, hd) at stride C
    float* ob = out + base;      // (T, hd) at stride C
    float* lb = lse + int64_t(pair) * T;       // (T)
    float* kt = attention_scratch_.data() + tile * part;  // the pair's keys, transposed
    float* scratch = kt + kt_floats;
    transpose_blocked(vis_max, hd, kb, C, kt);
    for (const Run& r : runs) {
      const int m = r.t1 - r.t0, vis = r.vis;
      if (vis == 0) {  // nothing visible: zero output, empty log-sum-exp
        for (int t = r.t0; t < r.t1; t++) {
          std::memset(ob + t * C, 0, sizeof(float) * hd);
          lb[t] = -std::numeric_limits<float>::infinity();
        }
        continue;
      }
      attend_transposed(m, vis, hd, scale, qb + r.t0 * C, C, kt, 16 * hd, vb, C, scratch,
                        ob + r.t0 * C,
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
  const int vis_max = max_visible(runs);
  const int64_t t_floats = transposed_floats(vis_max, hd);
  // Per thread: the pair's keys and values transposed, then a run's P and dS tiles.
  const int64_t tile = 2 * t_floats + attend_backward_scratch_floats(kRowTile, vis_max);
  if (int64_t(attention_scratch_.size()) < tile * parts) attention_scratch_.resize(tile * parts);

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
    float* kt = attention_scratch_.data() + tile * part;  // the pair's keys, transposed
    float* vt = kt + t_floats;                            // its values, transposed
    float* scratch = vt + t_floats;
    transpose_blocked(vis_max, hd, kb, C, kt);
    transpose_blocked(vis_max, hd, vb, C, vt);
    for (int t = 0; t < T; t++) {
      std::memset(dkb + t * C, 0, sizeof(float) * hd);
      std::memset(dvb + t * C, 0, sizeof(float) * hd);
    }
    for (const Run& r : runs) {
      const int m = r.t1 - r.t0, vis = r.vis;
      const int64_t at = r.t0 * C;
      if (vis == 0) {
        for (int i = 0; i < m; i++) std::memset(dqb + at + i * C, 0, sizeof(float) * hd);
        continue;
      }
      attend_backward(m, vis, hd, scale, qb + at, dob + at, ob + at, C, lb + r.t0, kb, kt, vb, vt,
                      C, scratch, dqb + at, dkb, dvb);
    }
  });
}

void CpuModelOps::attention_cached(int B, int Tq, int H, int hd, const float* q, const float* k,
                                   const float* v, int64_t kv_batch_stride,
                                   const int32_t* visible_end, float* out) {
  const int64_t C = int64_t(H) * hd;  // row stride of q, out and the cache
  const std::vector<Run> runs = query_runs(Tq, visible_end, kv_batch_stride / C);
  const int vis_max = max_visible(runs);
  const float scale = 1.0f / std::sqrt((float)hd);
  const int pairs = B * H, parts = thread_parts(pairs, pair_work(runs, hd));
  if (const Bf16Cache* cache = bf16_cache(k, B, H, kv_batch_stride, C)) {
    const int64_t tile = attend_bf16_scratch_floats(vis_max, hd);  // floats per thread
    if (int64_t(attention_scratch_.size()) < tile * parts) attention_scratch_.resize(tile * parts);
    for (const Run& r : runs) CB_CHECK(r.vis >= 1, "attention_cached: a query sees no key");
    for_pair_ranges(pairs, parts, [&](int part, int begin, int end) {
      Bf16Attention kernel;  // on AMX: the tiles configured once for the range
      float* scratch = attention_scratch_.data() + tile * part;
      for (int pair = begin; pair < end; pair++) {
        const int b = pair / H, h = pair % H;
        const float* qb = q + int64_t(b) * Tq * C + int64_t(h) * hd;  // (Tq, hd) at stride C
        float* ob = out + int64_t(b) * Tq * C + int64_t(h) * hd;      // (Tq, hd) at stride C
        for (const Run& r : runs) {
          kernel.attend(r.t1 - r.t0, r.vis, hd, scale, qb + r.t0 * C, C, cache->keys_of(b, h),
                        cache->values_of(b, h), scratch, ob + r.t0 * C);
        }
      }
    });
    return;
  }
  // The keys as write_kv_cache left them transposed (sampling), or transposed here per pair.
  const KeyMirror* mirror = key_mirror(k, B, H, kv_batch_stride, C);
  const int64_t kt_floats = mirror != nullptr ? 0 : transposed_floats(vis_max, hd);
  const int64_t tile = kt_floats + attend_scratch_floats(vis_max, hd);  // floats per thread
  if (int64_t(attention_scratch_.size()) < tile * parts) attention_scratch_.resize(tile * parts);

  for_pairs(pairs, parts, [&](int part, int pair) {
    const int b = pair / H, h = pair % H;
    const float* qb = q + int64_t(b) * Tq * C + int64_t(h) * hd;   // (Tq, hd) at stride C
    float* ob = out + int64_t(b) * Tq * C + int64_t(h) * hd;       // (Tq, hd) at stride C
    const float* kb = k + b * kv_batch_stride + int64_t(h) * hd;   // (vis, hd) at stride C
    const float* vb = v + b * kv_batch_stride + int64_t(h) * hd;   // (vis, hd) at stride C
    float* scratch = attention_scratch_.data() + tile * part;
    const float* kt = nullptr;  // the pair's keys, transposed
    if (mirror != nullptr) {
      kt = mirror->pair(b, h);
    } else {
      transpose_blocked(vis_max, hd, kb, C, scratch);
      kt = scratch;
      scratch += kt_floats;
    }
    for (const Run& r : runs) {
      CB_CHECK(r.vis >= 1, "attention_cached: a query sees no key");
      attend_transposed(r.t1 - r.t0, r.vis, hd, scale, qb + r.t0 * C, C, kt, 16 * hd, vb, C,
                        scratch, ob + r.t0 * C, nullptr);
    }
  });
}

void CpuModelOps::write_kv_cache(int B, int m, int t0, int H, int W, const float* k,
                                 int64_t ld_k, const float* v, int64_t ld_v, float* kc, float* vc,
                                 int64_t kv_batch_stride) {
  if (precision_ == Precision::bf16 && attend_bf16_supported(W / H)) {
    key_mirrors_.erase(kc);
    write_bf16_cache(B, m, t0, H, W, k, ld_k, v, ld_v, kc, kv_batch_stride);
    return;
  }
  bf16_caches_.erase(kc);
  ModelOps<float>::write_kv_cache(B, m, t0, H, W, k, ld_k, v, ld_v, kc, vc, kv_batch_stride);
  if (!frozen_) return;
  // The copy of the keys that attention_cached reads (cpu only): per (row, head) the cache's
  // slots in blocks of 16 (transpose_blocked's layout), written as the slots arrive instead of
  // transposed again for every step.
  const int T = (int)(kv_batch_stride / W), hd = W / H;
  KeyMirror& mirror = key_mirrors_[kc];
  if (mirror.rows != B || mirror.slots != T || mirror.heads != H || mirror.width != W) {
    mirror = KeyMirror{B, T, H, W, transposed_floats(T, hd), {}};
    mirror.data.assign(size_t(int64_t(B) * H * mirror.pair_floats), 0.0f);
  }
  parallel_for(int64_t(B) * H, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      const int64_t b = p / H;
      const int h = (int)(p % H);
      float* pair = mirror.data.data() + p * mirror.pair_floats;
      for (int i = 0; i < m; i++) {
        const int t = t0 + i;
        const float* kt = k + (b * m + i) * ld_k + int64_t(h) * hd;  // (hd)
        float* to = pair + int64_t(t / 16) * hd * 16 + (t % 16);     // stride 16
        for (int d = 0; d < hd; d++) to[d * 16] = kt[d];
      }
    }
  });
}

const CpuModelOps::KeyMirror* CpuModelOps::key_mirror(const float* k, int B, int H,
                                                      int64_t kv_batch_stride, int64_t C) const {
  if (!frozen_) return nullptr;
  auto it = key_mirrors_.find(k);
  if (it == key_mirrors_.end()) return nullptr;
  const KeyMirror& m = it->second;
  const bool same = m.rows == B && m.heads == H && m.width == C &&
                    int64_t(m.slots) * C == kv_batch_stride;
  return same ? &m : nullptr;
}

void CpuModelOps::write_bf16_cache(int B, int m, int t0, int H, int W, const float* k,
                                   int64_t ld_k, const float* v, int64_t ld_v, const float* kc,
                                   int64_t kv_batch_stride) {
  const int T = (int)(kv_batch_stride / W), hd = W / H;
  CB_CHECK(t0 >= 0 && t0 + m <= T, "write_kv_cache: slots [" + std::to_string(t0) + ", " +
                                       std::to_string(t0 + m) + ") outside the cache's " +
                                       std::to_string(T));
  Bf16Cache& cache = bf16_caches_[kc];
  if (cache.rows != B || cache.slots != T || cache.heads != H || cache.width != W) {
    cache = Bf16Cache{B, T, H, W, bf16_key_pair_values(T, hd), bf16_value_pair_values(T, hd),
                      {}, {}};
    // Zeros: the padding slots of a block are multiplied by weights of 0, never by garbage.
    cache.keys.assign(size_t(int64_t(B) * H * cache.pair_keys), bf16_t{0});
    cache.values.assign(size_t(int64_t(B) * H * cache.pair_values), bf16_t{0});
  }
  parallel_for(int64_t(B) * H, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      const int64_t b = p / H;
      const int h = (int)(p % H);
      bf16_t* keys = cache.keys.data() + p * cache.pair_keys;
      bf16_t* values = cache.values.data() + p * cache.pair_values;
      for (int i = 0; i < m; i++) {
        const int64_t row = b * m + i;
        store_bf16_key(t0 + i, hd, k + row * ld_k + int64_t(h) * hd, keys);
      }
      for (int i = 0; i < m;) {
        const int64_t row = b * m + i;
        const float* vi = v + row * ld_v + int64_t(h) * hd;  // (hd)
        if ((t0 + i) % 2 == 0 && i + 1 < m) {  // both slots of a pair
          store_bf16_value_pair(t0 + i, hd, vi, vi + ld_v, values);
          i += 2;
        } else {
          store_bf16_value(t0 + i, hd, vi, values);
          i++;
        }
      }
    }
  });
}

const CpuModelOps::Bf16Cache* CpuModelOps::bf16_cache(const float* k, int B, int H,
                                                     int64_t kv_batch_stride, int64_t C) const {
  if (precision_ != Precision::bf16) return nullptr;
  auto it = bf16_caches_.find(k);
  if (it == bf16_caches_.end()) return nullptr;
  const Bf16Cache& c = it->second;
  // The fp32 arrays behind k were not written: another shape cannot fall back to them.
  CB_CHECK(c.rows == B && c.heads == H && c.width == C && int64_t(c.slots) * C == kv_batch_stride,
           "attention_cached: the bf16 cache was written as " + std::to_string(c.rows) + " rows x " +
               std::to_string(c.slots) + " slots x " + std::to_string(c.width) +
               " and is read with another shape");
  return &c;
}

}  // namespace cb
