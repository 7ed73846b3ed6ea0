// The x86 CPU features the cpu backend chooses its kernels by, read once with cpuid (and
// xgetbv: a feature counts only when the OS also saves its registers). On other architectures
// every flag is false.
#pragma once

#include <string>

namespace cb {

struct CpuFeatures {
  bool avx2_fma = false;     // AVX2 and FMA3 (x86-64-v3)
  bool avx512 = false;       // AVX-512 F, BW, DQ, VL (what oneDNN calls avx512_core)
  bool avx512_bf16 = false;  // AVX512_BF16 (vdpbf16ps, vcvtneps2bf16), with avx512
  // AMX-TILE and AMX-BF16 (tdpbf16ps), with avx512_bf16, the OS saving the tile state and
  // having granted this process its use (Linux's ARCH_REQ_XCOMP_PERM, asked for once here).
  bool amx_bf16 = false;
};

const CpuFeatures& cpu_features();

// "amx_bf16 avx512_bf16 avx512 avx2_fma", the flags that are set, for messages and reports.
std::string cpu_feature_names();

// Why the cpu backend cannot run bf16 matmuls here (no avx512_bf16, no oneDNN in the build, or
// oneDNN without bf16 kernels for this CPU), or "" when it can.
std::string bf16_matmul_unavailable();

}  // namespace cb
