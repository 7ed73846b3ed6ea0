// The per-row loop of the cpu backend's rotary position embedding (CpuModelOps::rope): one
// row's H heads rotated pair by pair, (a, b) -> (a cos - b sin, a sin + b cos), with the
// angles of position p, or (the learned mixing, DESIGN.md) alpha_h times p's rotation plus
// (1 - alpha_h) times q's. The caller threads over rows.
#pragma once

#include <cstdint>

namespace cb {

// y (H, hd) from x (H heads of hd at stride hd); cp, sp (hd / 2): the cos and sin of p's
// angles; with alpha (H), also cq, sq for q's. AVX-512 where the CPU has it and hd is a
// multiple of 16 (the pairs as lanes, the cos and sin duplicated per pair), else scalar.
void rope_row(const float* x, int H, int hd, const float* cp, const float* sp, const float* cq,
              const float* sq, const float* alpha, float* y);

}  // namespace cb
