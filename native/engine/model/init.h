// Parameter initialisation from the layout table: seeded normals, zeros, and the factored
// axial RoPE angles (DESIGN.md, Transformer).
#pragma once

#include <cstdint>

#include "config.h"
#include "param_layout.h"

namespace cb {

// Fills `params` (layout.total() values) deterministically from `seed`.
template <typename Real>
void init_params(const ModelConfig& config, const ParamLayout& layout, uint64_t seed, Real* params);

// The initial RoPE angle table (positions, rope_pairs): 7/8 of the pairs spatial (x and y
// halves, at the token centre on the final grid), 1/8 from the scale index; the class token and
// the first-block position start at angle 0.
template <typename Real>
void rope_axial_angles(const ModelConfig& config, Real* angles);

}  // namespace cb
