// The per-row loops of the cpu backend's LayerNorm and AdaLN ops (model_ops_cpu_norm.cc) and
// of the bias gradient (model_ops_cpu.cc), compiled as vector_math.cc is: one copy per
// instruction set (AVX-512, AVX2, baseline), the loader picking the CPU's. The callers thread
// over rows or column blocks; these are serial.
//
// Sums over a row run in 16 interleaved partial sums added up in a fixed order: one running
// sum is a chain of dependent adds that no compiler may vectorise (and it was most of
// LayerNorm's time, perf); the order depends only on the row length, so results repeat.
#pragma once

#include <cstdint>

namespace cb {

// y = (x - mean) rstd over a row of c values, rstd = 1 / sqrt(var + eps) (two passes: the
// variance from centred values does not cancel); writes the row's mean and rstd.
void layernorm_row(const float* x, int c, float eps, float* y, float* mean, float* rstd);

// dx = rstd (dy - mean(dy) - xhat mean(dy xhat)), xhat = (x - mean) rstd, over a row of c.
void layernorm_backward_row(const float* x, const float* dy, int c, float mean, float rstd,
                            float* dx);

// y = x (1 + scale) + shift over c values.
void modulate_row(const float* x, const float* shift, const float* scale, int c, float* y);

// For T rows of w values at row stride ld: dx = dy (1 + scale); dshift += sum_t dy and
// dscale += sum_t dy x (summed in row order into the w accumulators).
void modulate_backward_rows(int T, int w, int64_t ld, const float* x, const float* dy,
                            const float* scale, float* dx, float* dshift, float* dscale);

// x += gate h over c values.
void gated_residual_row(const float* gate, const float* h, int c, float* x);

// For T rows of w values at row stride ld: dh = dx gate; dgate += sum_t dx h (row order).
void gated_residual_backward_rows(int T, int w, int64_t ld, const float* dx, const float* gate,
                                  const float* h, float* dh, float* dgate);

// acc += the sum of n rows of w values at row stride ld, in row order.
void sum_rows(int64_t n, int w, int64_t ld, const float* x, float* acc);

}  // namespace cb
