// The inner loop of KV-cached attention on the cpu (CpuModelOps::attention_cached): one
// (sequence, head) pair's queries against its visible cached keys, in plain vectorisable loops.
// Why not sgemm tiles as in the training attention: a sampling step has (rows x heads) pairs of
// tiny products (S preset: 64 queries, 32 dims, up to 341 keys), and two GEMM library calls per
// pair cost more in call overhead than in arithmetic.
#pragma once

#include <cstdint>

namespace cb {

// Floats of scratch attend_cached_queries needs for `vis` keys of `hd` dims.
int64_t cached_attention_scratch(int vis, int hd);

// o_i = softmax(scale q_i K^T) V for the m queries i: q, o (m, hd) at row stride ld_q; k, v
// (vis, hd) at row stride ld_kv; scratch: cached_attention_scratch(vis, hd) floats.
void attend_cached_queries(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                           const float* k, const float* v, int64_t ld_kv, float* scratch,
                           float* o);

}  // namespace cb
