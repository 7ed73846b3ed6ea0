// One training or evaluation batch as the model consumes it: B sequences of T slots, built by
// the caller from the plan (slot layout) and the codes (DESIGN.md, Sequence and inputs).
#pragma once

#include <cstdint>
#include <vector>

namespace cb {

template <typename Real>
struct Batch {
  int B = 0, T = 0;
  std::vector<int32_t> labels;       // (B) class, or `classes` for the null class
  std::vector<int32_t> pos_p;        // (B*T) position index of the slot (0 = class token)
  std::vector<int32_t> pos_q;        // (B*T) position index of the fed token (1 = learned)
  std::vector<Real> u_latent;           // (B*T, Dl) previous scale's latents upsampled, at p
  std::vector<Real> v_latent;           // (B*T, Dl) latent of the fed token of the previous block
  std::vector<uint8_t> u_learned;    // (B*T) 1: use u_start instead of mlp(u)
  std::vector<uint8_t> v_learned;    // (B*T) 1: use v_start instead of mlp(v)
  std::vector<int32_t> targets;      // (B*T) code to predict; < 0 ignored (the class slot)
  std::vector<int32_t> visible_end;  // (T) slot t attends to slots [0, visible_end[t])
};

}  // namespace cb
