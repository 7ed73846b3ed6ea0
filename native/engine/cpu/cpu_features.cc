#include "cpu_features.h"

#include "onednn_gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace cb {
namespace {

// Linux lets a process use the 8 KiB of AMX tile data only after it asks (arch_prctl); the
// grant covers every thread. oneDNN asks the same way for its own AMX kernels.
bool amx_permitted() {
#if defined(__x86_64__) && defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  // XCR0: bits 1, 2 (SSE, AVX state); 5, 6, 7 (opmask, ZMM upper halves, ZMM 16-31).
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool os_avx = (xcr0_lo & 0x6u) == 0x6u, os_avx512 = (xcr0_lo & 0xe6u) == 0xe6u;
  if (!os_avx || __get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31);
  f.avx2_fma = avx2 && fma;
  f.avx512 = os_avx512 && avx512f && avx512dq && avx512bw && avx512vl;
  __cpuid_count(7, 1, a, b, c, d);
  f.avx512_bf16 = f.avx512 && (a & (1u << 5));
  // XCR0 bits 17, 18: tile configuration and tile data state.
  const bool os_amx = (xcr0_lo & 0x60000u) == 0x60000u;
  f.amx_bf16 = f.avx512_bf16 && amx_bf16 && amx_tile && os_amx && amx_permitted();
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string cpu_feature_names() {
  const CpuFeatures& f = cpu_features();
  std::string names;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!names.empty()) names += ' ';
    names += name;
  };
  add(f.amx_bf16, "amx_bf16");
  add(f.avx512_bf16, "avx512_bf16");
  add(f.avx512, "avx512");
  add(f.avx2_fma, "avx2_fma");
  return names.empty() ? "none" : names;
}

std::string bf16_matmul_unavailable() {
  if (!cpu_features().avx512_bf16) {
    return "bf16 on the cpu backend needs a CPU with the avx512_bf16 feature (AVX512-BF16), "
           "which this one lacks (it has: " + cpu_feature_names() + "); use fp32 here";
  }
  if (!onednn_compiled()) {
    return "bf16 on the cpu backend runs on oneDNN, which this build lacks (install libdnnl-dev "
           "and rebuild)";
  }
  const std::string isa = onednn_isa();
  if (isa.find("bf16") == std::string::npos && isa.find("amx") == std::string::npos) {
    return "bf16 on the cpu backend needs oneDNN's avx512_bf16 kernels, but oneDNN uses " + isa +
           " on this CPU";
  }
  return "";
}

}  // namespace cb
