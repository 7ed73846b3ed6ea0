// The bf16 cpu backend's attention over the KV cache on AMX: the same cache layouts and the same
// rounding as attend_bf16_avx512 (attention_bf16.h), with the products as tile multiplies (tdpbf16ps:
// a 16 x 16 fp32 tile += a 16 x 32 bf16 tile times 16 rows of 16 bf16 pairs).
//
// Why: on this project's machine vdpbf16ps issues at a quarter of the fp32 FMA's instruction
// rate, so at half its FLOP rate (measured: 107 against 214 GFLOP/s a thread), and the
// AVX512-BF16 kernel took ~20% of the S preset's bf16 sampling time (batch 16); one tile
// multiply is 8,192 multiply-adds (measured: ~3 TFLOP/s a thread when its operands sit in
// tiles). With it the kernel runs 1.8x faster (9.7 against 16.8 us for 28 queries against 341
// keys, hd 32, one thread) and is bound by the softmax's exponentials and the cache's reads.
//
// Layouts, read as tiles without copying: the key layout's block of 16 keys is, per 32 dims,
// one B tile (16 dim-pair rows of 16 key pairs); the value layout's 16 slot pairs are, per 16
// dims, one B tile (16 slot-pair rows of 16 dim pairs). Queries and weights go through scratch
// as bf16 A tiles of 16 rows; a block of fewer than 16 queries pads with zero rows.
#pragma once

#include <cstdint>

#include "../model/mixed_ops.h"

namespace cb {

// Floats of scratch attend_bf16_amx needs for `vis` keys of hd dims.
int64_t attend_amx_scratch_floats(int vis, int hd);

// The tiles configured as the kernel reads them, on this thread, for the object's life, then
// released: one ldtilecfg for a thread's run of calls (configured per call, it took ~9% of a
// call). No other AMX code (a oneDNN bf16 matmul) may run on the thread meanwhile; oneDNN's
// configures its own tiles when it runs. Needs cpu_features().amx_bf16.
class AmxTileScope {
 public:
  AmxTileScope();
  ~AmxTileScope();
  AmxTileScope(const AmxTileScope&) = delete;
  AmxTileScope& operator=(const AmxTileScope&) = delete;
};

// attend_bf16_avx512 (attention_bf16.h) on AMX, inside an AmxTileScope: the m queries q (m, hd) at row
// stride ld_q against the first vis >= 1 slots of kp, vp; o (m, hd) at stride ld_q. Needs
// attend_bf16_supported(hd).
void attend_bf16_amx_in_scope(int m, int vis, int hd, float scale, const float* q,
                              int64_t ld_q, const bf16_t* kp, const bf16_t* vp, float* scratch,
                              float* o);

// The same with its own AmxTileScope.
void attend_bf16_amx(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                     const bf16_t* kp, const bf16_t* vp, float* scratch, float* o);

}  // namespace cb
