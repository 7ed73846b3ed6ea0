// What the parts of the emulated runtime share (not seen by device code): the last error,
// stream capture, and the kernels' attributes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "runtime_api.h"

namespace cb_emu {

// Sets the calling thread's last error to `code` and remembers `detail`, which
// cudaGetErrorString(code) appends to CUDA's text; returns `code`. Kernel failures are also
// printed on stderr, as they happen.
cudaError_t fail(cudaError_t code, const std::string& detail);

// An operation queued on a stream: run at once, or recorded while the stream captures.
using StreamOp = std::function<cudaError_t()>;

// Runs `op` now, or appends it to the capture of `stream` when that stream is capturing.
// An unknown stream is cudaErrorInvalidResourceHandle.
cudaError_t enqueue(cudaStream_t stream, const StreamOp& op);

// For the calls that cannot be captured (allocations, synchronous copies, device-wide
// synchronisation): when the calling thread has a capture in progress in global or
// thread-local mode, that capture is invalidated and the call fails, as in CUDA.
cudaError_t refuse_during_capture(const char* call);

// Sets the block scheduler's seed for the launches that follow (0: threads in order; the
// default comes from CB_EMU_SEED, else 1) and returns the previous one. For the emulator's own
// tests.
uint64_t set_schedule_seed(uint64_t seed);

// The dynamic shared memory a kernel may use (cudaFuncAttributeMaxDynamicSharedMemorySize).
size_t max_dynamic_shared(const void* kernel);

}  // namespace cb_emu
