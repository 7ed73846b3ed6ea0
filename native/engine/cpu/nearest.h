// nearest_codes on the CPU: per chunk of points one GEMM for the dot products, then a threaded
// argmin over the chunk's rows. No argument checks (see check_nearest_args).
#pragma once

#include <cstdint>

namespace cb {

// Points per chunk when the caller does not choose: about 16 MiB of (chunk, k) scores.
int64_t default_chunk_rows(int k);

void cpu_nearest_codes(const float* points,    // (n, d)
                       int64_t n, int d,
                       const float* codebook,  // (k, d)
                       int k,
                       int32_t* index,         // (n)
                       float* dist2,           // (n)
                       int64_t chunk_rows);

}  // namespace cb
