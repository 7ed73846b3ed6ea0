// The inner loops of the cpu's attention (CpuModelOps::attention, attention_backward and
// attention_cached): one (sequence, head) pair's run of queries against its visible keys, in
// register-blocked vector loops. Why not GEMM library calls: attention is many tiny products
// (S preset: up to 64 queries, 32 dims, up to 342 keys per run and pair; a sampling step has
// rows x heads pairs, a training step batch x heads x runs), and the calls cost more in
// overhead than in arithmetic (the backward's five sgemm tiles a run, measured: see DESIGN.md).
//
// The keys (and, for the backward, the values) are read as transposed blocks of 16, made once
// per pair by transpose_blocked and shared by all of that pair's runs: a run that sees the
// first vis keys reads the first padded(vis) / 16 blocks of the same array.
#pragma once

#include <cstdint>

namespace cb {

// Floats of transpose_blocked's output for n rows of hd values.
int64_t transposed_floats(int n, int hd);

// xt (ceil(n / 16), hd, 16) = the n rows x (n, hd) at row stride ld, transposed in blocks of 16
// rows and zero padded to a multiple of 16.
void transpose_blocked(int n, int hd, const float* x, int64_t ld, float* xt);

// Floats of scratch attend_transposed needs for `vis` keys of `hd` dims.
int64_t attend_scratch_floats(int vis, int hd);

// o_i = softmax(scale q_i K^T) V for the m queries i, and lse_i = log sum_j exp(scale q_i k_j)
// when lse is not null: q, o (m, hd) at row stride ld_q; kt the keys transposed in blocks of
// 16 (at least vis of them), block i an (hd, 16) tile at kt + i kt_block (transpose_blocked's
// output: kt_block = 16 hd); v (vis >= 1, hd) at row stride ld_kv; lse (m).
void attend_transposed(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                       const float* kt, int64_t kt_block, const float* v, int64_t ld_kv,
                       float* scratch, float* o, float* lse);

// Floats of scratch attend_backward needs for m queries and `vis` keys.
int64_t attend_backward_scratch_floats(int m, int vis);

// The backward of attend_transposed for the run's m queries: with P = exp(scale q K^T - lse)
// and dS = P * (dO V^T - rowsum(dO * O)), writes dq = scale dS K (m rows) and adds
// dv += P^T dO and dk += scale dS^T q to the first vis rows of dk and dv. q, dout, o, dq (m, hd)
// at row stride ld_q; lse (m); k, v, dk, dv (vis >= 1, hd) at row stride ld_kv; kt and vt the
// keys and values from transpose_blocked (at least vis of them).
void attend_backward(int m, int vis, int hd, float scale, const float* q, const float* dout,
                     const float* o, int64_t ld_q, const float* lse, const float* k,
                     const float* kt, const float* v, const float* vt, int64_t ld_kv,
                     float* scratch, float* dq, float* dk, float* dv);

}  // namespace cb
