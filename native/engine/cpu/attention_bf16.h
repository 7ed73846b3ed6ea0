// The bf16 cpu backend's attention over the KV cache (sampling): the cache kept as bf16 in the
// layouts AVX512-BF16's pair dot product (vdpbf16ps) reads, and the kernel that reads them.
//
// Why: at batch 16 a sampling step reads the whole cache of every (row, head) pair once per
// layer, and in fp32 that read was about half of the attention's time (S preset: ~0.3 GB per
// image at ~30 GB/s, measured beside a kernel at 57% of one core's fp32 peak). Half the bytes,
// and one instruction for two dims (scores) or two keys (values) of a multiply-add.
//
// What is rounded: q (after the 1/sqrt(hd) scale), K, V and the softmax weights P enter the
// products as bf16 (round to nearest even by the hardware conversion, which also flushes fp32
// denormals to zero: nothing at these magnitudes); the products accumulate in
// fp32, and the scores, their max, the exponentials and the sums are fp32, as in every bf16
// matmul of this backend.
#pragma once

#include <cstdint>
#include <memory>

#include "../model/mixed_ops.h"
#include "attention_amx.h"

namespace cb {

// Whether the bf16 attention kernels take heads of hd dims (hd a multiple of 32, at most 128).
bool attend_bf16_supported(int hd);

// bf16 values of one (row, head) pair's keys for T slots: ceil(T / 16) blocks of (hd / 2, 16, 2),
// i.e. per block and dim pair the 16 keys' two dims side by side.
int64_t bf16_key_pair_values(int T, int hd);
// bf16 values of one pair's values for T slots: ceil(T / 2) blocks of (hd, 2), i.e. per slot
// pair and dim the two slots' values side by side.
int64_t bf16_value_pair_values(int T, int hd);

// Writes slot t's key k (hd) into a pair's key array kp, and its value v (hd) into vp (the
// other slot of its pair untouched). Need avx512_bf16, as the kernels.
void store_bf16_key(int t, int hd, const float* k, bf16_t* kp);
void store_bf16_value(int t, int hd, const float* v, bf16_t* vp);
// store_bf16_value of slots t (even) and t + 1 in one pass (whole vectors, no masked stores).
void store_bf16_value_pair(int t, int hd, const float* v0, const float* v1, bf16_t* vp);

// Floats of scratch Bf16Attention::attend needs for `vis` keys of hd dims.
int64_t attend_bf16_scratch_floats(int vis, int hd);

// attend: o_i = softmax(scale q_i K^T) V for the m queries i against the pair's first vis >= 1
// slots (kp, vp as written above): q, o (m, hd) at row stride ld_q. Needs avx512_bf16 (the bf16
// backend exists only there) and attend_bf16_supported(hd).
// Bf16Attention is a thread's run of such calls: the AMX kernel (attention_amx.h) where the
// CPU has AMX-BF16, its tiles configured for the object's life (AmxTileScope, so nothing else
// may use AMX on the thread meanwhile), else attend_bf16_avx512.
class Bf16Attention {
 public:
  Bf16Attention();
  ~Bf16Attention();
  Bf16Attention(const Bf16Attention&) = delete;
  Bf16Attention& operator=(const Bf16Attention&) = delete;
  void attend(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
              const bf16_t* kp, const bf16_t* vp, float* scratch, float* o);

 private:
  std::unique_ptr<AmxTileScope> tiles_;  // null where the AVX512-BF16 kernel runs
};

// The AVX512-BF16 kernel (vdpbf16ps), on every CPU that has the feature.
void attend_bf16_avx512(int m, int vis, int hd, float scale, const float* q, int64_t ld_q,
                        const bf16_t* kp, const bf16_t* vp, float* scratch, float* o);

}  // namespace cb
