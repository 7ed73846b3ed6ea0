// Deterministic column sums on the GPU, shared by the ops that reduce rows into a parameter
// gradient (linear's db, the masked fill's dvec): two passes, fixed row chunks summed in row
// order and combined in a fixed tree, then the chunks added in chunk order, so a result never
// depends on scheduling. Host functions; every pointer is device memory.
#pragma once

#include <cstdint>

namespace cb {

// Row chunks for n rows (depends only on n); the scratch `part` below holds
// column_chunks(n) * c floats.
int64_t column_chunks(int64_t n);

// dst (c) += the column sums of src (n rows of c at stride ld).
void column_sums_add(int64_t n, int c, const float* src, int64_t ld, float* dst, float* part);

// dst (c) += the column sums of the rows r of src with mask[r] != 0, and those rows of src are
// zeroed after they are read.
void masked_column_sums_add_and_zero(int64_t n, int c, float* src, int64_t ld,
                                     const uint8_t* mask, float* dst, float* part);

}  // namespace cb
