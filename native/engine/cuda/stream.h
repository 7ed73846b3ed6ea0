// The stream every kernel of the cuda model backend is launched on: the legacy default stream
// (0), except while this thread records a CUDA graph (graph_recorder.cu), when it is the
// capturing stream. Launches name it explicitly, since the legacy stream cannot be captured.
#pragma once

#include <cuda_runtime_api.h>

namespace cb {

// This thread's launch stream; graph_recorder.cu sets it around a capture.
inline cudaStream_t& launch_stream() {
  static thread_local cudaStream_t stream = nullptr;
  return stream;
}

}  // namespace cb
