// The transformer's configuration and the sizes derived from it.
#pragma once

#include <cstdint>
#include <vector>

namespace cb {

struct ModelConfig {
  int vocab = 0;       // K: codebook size
  int latent_dim = 0;  // Dl: length of a code vector (the tokenizer's latent)
  int classes = 0;     // C: the class table has C + 1 rows, the last is the null class
  int depth = 0;
  int width = 0;
  int heads = 0;
  int mlp_ratio = 4;
  std::vector<int> scales;  // token-grid side of each scale, coarse to fine
  int rope_mix_layers = 0;  // key RoPE mixing in the first n layers (0: none)

  int head_dim() const { return width / heads; }
  int rope_pairs() const { return head_dim() / 2; }
  int hidden() const { return mlp_ratio * width; }
  // Position indices: 0 = class token, 1 = the learned "previous position" of a scale's first
  // block, then 2 + scale_offset(k) + y * s_k + x for grid position (x, y) of scale k.
  int64_t grid_positions() const;
  int64_t positions() const { return 2 + grid_positions(); }
  int64_t scale_offset(int k) const;
  // Slots of a full sequence: the class token plus every grid position of every scale.
  int64_t sequence_length() const { return 1 + grid_positions(); }

  // Throws cb::Error naming the first impossible setting.
  void validate() const;
};

}  // namespace cb
