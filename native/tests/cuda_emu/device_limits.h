// The emulated device's limits, those of an H100/H200 (sm_90), which launches are checked
// against (launch.cc) and cudaGetDeviceProperties reports (runtime_device.cc).
#pragma once

#include <cstddef>

namespace cb_emu {

constexpr int kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned kMaxGridDim[3] = {0x7fffffffu, 65535, 65535};
constexpr size_t kDefaultMaxDynamicShared = 48 * 1024;  // without cudaFuncSetAttribute
constexpr size_t kMaxSharedPerBlockOptin = 227 * 1024;  // the most a kernel may opt in to
constexpr int kMultiProcessors = 132;
constexpr size_t kGlobalMemoryBytes = size_t(141) << 30;
constexpr int kComputeMajor = 9, kComputeMinor = 0;
constexpr const char* kDeviceName = "cuda-emu: CPU emulation of an sm_90 GPU (tests only)";

}  // namespace cb_emu
