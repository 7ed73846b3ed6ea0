#include "bf16_convert.h"

namespace cb {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CB_BF16_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define CB_BF16_CLONES
#endif

CB_BF16_CLONES void float_to_bf16_span(const float* src, bf16_t* dst, int64_t n) {
  uint16_t* out = reinterpret_cast<uint16_t*>(dst);  // bf16_t is one uint16_t
  for (int64_t i = 0; i < n; i++) out[i] = float_to_bf16(src[i]).bits;
}

}  // namespace cb
