// onednn_gemm.h in a build without oneDNN: nothing is compiled in, every call is refused.
#include "../error.h"
#include "onednn_gemm.h"

namespace cb {

bool onednn_compiled() { return false; }
std::string onednn_isa() { return ""; }
bool onednn_has_avx512() { return false; }
std::string onednn_version() { return ""; }

void onednn_matmul(GemmType, bool, bool, int64_t, int64_t, int64_t, float, const void*, int64_t,
                   const void*, int64_t, float, float*, int64_t, const float*, GemmEpilogue) {
  CB_FAIL("this build has no oneDNN (libdnnl-dev was not found when it was built)");
}

void onednn_sgemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                  const float*, int64_t, float, float*, int64_t) {
  CB_FAIL("this build has no oneDNN (libdnnl-dev was not found when it was built)");
}

OnednnPackedWeights::~OnednnPackedWeights() = default;

std::unique_ptr<OnednnPackedWeights> onednn_pack_weights(GemmType, int64_t, int64_t,
                                                         const void*) {
  return nullptr;  // nothing to pack for: callers keep the plain weights
}

void onednn_repack_weights(OnednnPackedWeights&, const void*) {
  CB_FAIL("this build has no oneDNN (libdnnl-dev was not found when it was built)");
}

void onednn_linear_packed(const OnednnPackedWeights&, int64_t, const void*, void*, const float*,
                          GemmEpilogue, GemmType) {
  CB_FAIL("this build has no oneDNN (libdnnl-dev was not found when it was built)");
}

size_t onednn_cached_primitives() { return 0; }

}  // namespace cb
