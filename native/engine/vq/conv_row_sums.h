// Row helpers shared by the cpu conv ops' loops (internal to engine/vq): the target_clones
// marker their vectorised loops are compiled with, and GroupNorm's statistics, which the forward
// (conv_ops_cpu_elementwise.cc) computes and the backward (conv_ops_cpu_elementwise_backward.cc)
// recomputes the same way; conv2d_backward's dbias sums with the same sum.
#pragma once

#include <cstdint>

// One copy per instruction set (x86-64-v3 and the baseline); the loader picks one, as in
// cpu/vector_math.cc. The files that use it are compiled with -fno-trapping-math and
// -fno-math-errno (native/CMakeLists.txt), so the loops vectorise.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CB_CONV_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CB_CONV_CLONES
#endif

namespace cb {

// Sums of x and of (x - center)^2 over n values, in double. Eight running sums, each over every
// eighth value, so the loop vectorises without reassociation and the result depends on n alone
// (not on the instruction set or the thread count). Defined, with their clones, in
// conv_ops_cpu_elementwise.cc.
double conv_sum_span(const float* x, int64_t n);
double conv_squared_deviation_span(const float* x, int64_t n, double center);

}  // namespace cb
