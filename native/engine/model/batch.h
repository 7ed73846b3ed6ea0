// One training or evaluation batch as the model consumes it: B sequences of T slots, built by
// the caller from the plan (slot layout) and the codes (DESIGN.md, Sequence and inputs). Only
// index arrays: the model builds the Eq. 1 inputs from them and its codebook (Model::forward).
#pragma once

#include <cstdint>
#include <vector>

namespace cb {

template <typename Real>
struct Batch {
  int B = 0, T = 0;
  std::vector<int32_t> labels;       // (B) class, or `classes` for the null class
  std::vector<int32_t> pos_p;        // (B*T) position index of the slot: 0 = class token,
                                     // 2 + scale_offset(k) + p for grid position p of scale k
  std::vector<int32_t> pos_q;        // (B*T) position index of the fed token q (same scale),
                                     // 1 = a scale's first block (learned), 0 = class token
  std::vector<int32_t> codes;        // (B, L) the sequence's codes: scales concatenated, raster
                                     // order inside a scale (a shard row); L = T - 1
  std::vector<int32_t> targets;      // (B*T) code to predict; < 0 ignored (the class slot)
  std::vector<int32_t> visible_end;  // (T) slot t attends to slots [0, visible_end[t])
  // The backward's loss is the sum over counted slots divided by this many tokens; 0: by the
  // batch's own counted slots (its mean). Data parallel ranks give the global batch's count,
  // so that the sum of the ranks' gradients is the global batch's mean gradient.
  int64_t loss_tokens = 0;
};

}  // namespace cb
