// CpuModelOps: the sampler's per-step work outside the transformer: bilinear upsampling of the
// previous scale's latents and the token draws, rows split over threads (each row's draw is a
// function of its logits and key alone, so the thread count never changes a code).
#include "../sample/philox.h"
#include "../sample/upsample.h"
#include "model_ops_cpu.h"
#include "parallel.h"

namespace cb {

void CpuModelOps::upsample_bilinear(int B, int s_in, int s_out, int D, const float* src,
                                    float* dst) {
  parallel_for(B, 4, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      upsample_bilinear_grid(s_in, s_out, D, src + b * s_in * s_in * D,
                             dst + b * s_out * s_out * D);
    }
  });
}

void CpuModelOps::sample_tokens(int64_t n, int K, const float* cond, const float* uncond,
                                float guidance, const TokenSampling& s, const int32_t* image,
                                const int32_t* slot, int32_t* codes, float* entropy_bits) {
  // A row costs about 3K exp/mul-adds in double: split when there are a few thousand of those.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max(K, 1));
  parallel_for(n, grain, [&](int64_t i0, int64_t i1) {
    TokenSamplingScratch scratch;
    for (int64_t i = i0; i < i1; i++) {
      codes[i] = sample_row(K, cond + i * K, uncond ? uncond + i * K : nullptr, guidance, s,
                            sample_uniform(s.seed, image[i], slot[i]), scratch,
                            entropy_bits ? entropy_bits + i : nullptr);
    }
  });
}

}  // namespace cb
