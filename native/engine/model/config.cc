#include "config.h"

#include <string>

#include "../error.h"

namespace cb {

int64_t ModelConfig::grid_positions() const {
  int64_t total = 0;
  for (int s : scales) total += int64_t(s) * s;
  return total;
}

int64_t ModelConfig::scale_offset(int k) const {
  int64_t total = 0;
  for (int j = 0; j < k; j++) total += int64_t(scales[j]) * scales[j];
  return total;
}

void ModelConfig::validate() const {
  auto positive = [](int v, const char* what) {
    CB_CHECK(v >= 1, std::string("model config: ") + what + " must be at least 1, got " +
                         std::to_string(v));
  };
  positive(vocab, "vocab");
  positive(latent_dim, "latentDim");
  positive(classes, "classes");
  positive(depth, "depth");
  positive(width, "width");
  positive(heads, "heads");
  positive(mlp_ratio, "mlpRatio");
  CB_CHECK(width % heads == 0, "model config: width " + std::to_string(width) +
                                   " is not divisible by heads " + std::to_string(heads));
  CB_CHECK(head_dim() % 2 == 0, "model config: head dimension " + std::to_string(head_dim()) +
                                    " (width / heads) must be even for RoPE");
  CB_CHECK(!scales.empty(), "model config: scales must not be empty");
  for (size_t k = 0; k < scales.size(); k++) {
    CB_CHECK(scales[k] >= 1 && (k == 0 || scales[k] > scales[k - 1]),
             "model config: scales must be positive and strictly increasing");
  }
  CB_CHECK(rope_mix_layers >= 0 && rope_mix_layers <= depth,
           "model config: ropeMixLayers must be in [0, depth], got " +
               std::to_string(rope_mix_layers));
  CB_CHECK(sequence_length() < (int64_t(1) << 31), "model config: sequence too long");
}

}  // namespace cb
