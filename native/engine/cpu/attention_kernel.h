// The inner loop of the cpu's attention forward (CpuModelOps::attention and attention_cached):
// one (sequence, head) pair's run of queries against its visible keys, in register-blocked
// vector loops. Why not GEMM library calls: attention is many tiny products (S preset: up to 64
// queries, 32 dims, up to 342 keys per run and pair; a sampling step has rows x heads pairs, a
// training step batch x heads x runs), and two calls per run cost more in call overhead than in
// arithmetic.
#pragma once

#include <cstdint>

namespace cb {

// Floats of scratch attend_queries needs for `vis` keys of `hd` dims.
int64_t attention_scratch_floats(int vis, int hd);

// o_i = softmax(scale q_i K^T) V for the m queries i, and lse_i = log sum_j exp(scale q_i k_j)
// when lse is not null: q, o (m, hd) at row stride ld_q; k, v (vis >= 1, hd) at row stride
// ld_kv; lse (m); scratch: attention_scratch_floats(vis, hd) floats.
void attend_queries(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                    const float* k, const float* v, int64_t ld_kv, float* scratch, float* o,
                    float* lse);

}  // namespace cb
