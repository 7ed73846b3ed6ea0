// Streams, stream capture and graphs of the emulation (runtime_api.h). Work is synchronous, so
// a stream is only a handle and a capture state: while a stream captures, what is queued on it
// (launches, async copies and memsets) is recorded instead of run; cudaStreamEndCapture turns
// the record into a graph, and cudaGraphLaunch replays it in order. The legacy stream (0)
// cannot capture; work queued on it during a capture runs at once and is not in the graph, as
// on the GPU with a non-blocking capturing stream. In global and thread-local mode, calls that
// cannot be captured (cudaMalloc, cudaFree, cudaMemcpy, cudaDeviceSynchronize) from the
// capturing thread fail and invalidate the capture.
#include <algorithm>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "emulator.h"

struct CUstream_st {
  unsigned flags = 0;
  bool capturing = false, invalidated = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id owner;  // the thread that began the capture
  std::vector<cb_emu::StreamOp> recorded;
};

struct CUgraph_st {
  std::vector<cb_emu::StreamOp> ops;
};

struct CUgraphExec_st {
  std::vector<cb_emu::StreamOp> ops;
};

namespace cb_emu {
namespace {

std::mutex& streams_mutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}
std::set<CUstream_st*>& streams() {
  static auto* s = new std::set<CUstream_st*>();
  return *s;
}
std::set<const void*>& graphs() {  // live cudaGraph_t and cudaGraphExec_t handles
  static auto* g = new std::set<const void*>();
  return *g;
}

bool known_stream(cudaStream_t s) {
  std::lock_guard<std::mutex> lock(streams_mutex());
  return streams().count(s) != 0;
}

bool known_graph(const void* g) {
  std::lock_guard<std::mutex> lock(streams_mutex());
  return graphs().count(g) != 0;
}

cudaError_t run_all(const std::vector<StreamOp>& ops) {
  for (const StreamOp& op : ops) {
    const cudaError_t e = op();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t enqueue(cudaStream_t stream, const StreamOp& op) {
  if (stream == nullptr) return op();
  std::unique_lock<std::mutex> lock(streams_mutex());
  if (streams().count(stream) == 0) {
    lock.unlock();
    return fail(cudaErrorInvalidResourceHandle, "work queued on a stream that does not exist");
  }
  if (!stream->capturing) {
    lock.unlock();
    return op();
  }
  if (stream->invalidated) {
    lock.unlock();
    return fail(cudaErrorStreamCaptureInvalidated, "the capture of this stream failed earlier");
  }
  stream->recorded.push_back(op);
  return cudaSuccess;
}

cudaError_t refuse_during_capture(const char* call) {
  std::unique_lock<std::mutex> lock(streams_mutex());
  bool refused = false;
  for (CUstream_st* s : streams()) {
    if (s->capturing && s->mode != cudaStreamCaptureModeRelaxed &&
        (s->mode == cudaStreamCaptureModeGlobal || s->owner == std::this_thread::get_id())) {
      s->invalidated = true;
      refused = true;
    }
  }
  lock.unlock();
  if (!refused) return cudaSuccess;
  return fail(cudaErrorStreamCaptureUnsupported,
              std::string(call) + " while a stream is being captured (it cannot be recorded; "
                                  "the capture is invalidated)");
}

}  // namespace cb_emu

using namespace cb_emu;

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  auto* s = new CUstream_st();
  s->flags = flags;
  std::lock_guard<std::mutex> lock(streams_mutex());
  streams().insert(s);
  *stream = s;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  {
    std::lock_guard<std::mutex> lock(streams_mutex());
    if (stream == nullptr || streams().erase(stream) == 0) {
      return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy of an unknown stream");
    }
  }
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream != nullptr && !known_stream(stream)) {
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize of an unknown stream");
  }
  if (stream != nullptr && stream->capturing) {
    stream->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize of a capturing stream");
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  if (refuse_during_capture("cudaDeviceSynchronize") != cudaSuccess) {
    return cudaErrorStreamCaptureUnsupported;
  }
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (stream == nullptr) {
    return fail(cudaErrorStreamCaptureUnsupported, "the legacy stream cannot be captured");
  }
  std::lock_guard<std::mutex> lock(streams_mutex());
  if (streams().count(stream) == 0) {
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamBeginCapture of an unknown stream");
  }
  if (stream->capturing) return fail(cudaErrorInvalidValue, "the stream is capturing already");
  stream->capturing = true;
  stream->invalidated = false;
  stream->mode = mode;
  stream->owner = std::this_thread::get_id();
  stream->recorded.clear();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  *graph = nullptr;
  std::unique_lock<std::mutex> lock(streams_mutex());
  if (stream == nullptr || streams().count(stream) == 0 || !stream->capturing) {
    lock.unlock();
    return fail(cudaErrorStreamCaptureUnmatched, "cudaStreamEndCapture without a capture");
  }
  if (stream->mode == cudaStreamCaptureModeThreadLocal &&
      stream->owner != std::this_thread::get_id()) {
    lock.unlock();
    return fail(cudaErrorStreamCaptureWrongThread, "cudaStreamEndCapture");
  }
  stream->capturing = false;
  std::vector<StreamOp> ops;
  ops.swap(stream->recorded);
  if (stream->invalidated) {
    lock.unlock();
    return fail(cudaErrorStreamCaptureInvalidated, "a call during the capture was not allowed");
  }
  auto* g = new CUgraph_st();
  g->ops = std::move(ops);
  graphs().insert(g);
  *graph = g;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = nullptr;
  if (graph == nullptr || !known_graph(graph)) {
    return fail(cudaErrorInvalidValue, "cudaGraphInstantiate of an unknown graph");
  }
  auto* e = new CUgraphExec_st();
  e->ops = graph->ops;
  std::lock_guard<std::mutex> lock(streams_mutex());
  graphs().insert(e);
  *exec = e;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr || !known_graph(exec)) {
    return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch of an unknown graph");
  }
  const std::vector<StreamOp> ops = exec->ops;
  return enqueue(stream, [ops] { return run_all(ops); });
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  {
    std::lock_guard<std::mutex> lock(streams_mutex());
    if (graph == nullptr || graphs().erase(graph) == 0) {
      return fail(cudaErrorInvalidValue, "cudaGraphDestroy of an unknown graph");
    }
  }
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  {
    std::lock_guard<std::mutex> lock(streams_mutex());
    if (exec == nullptr || graphs().erase(exec) == 0) {
      return fail(cudaErrorInvalidValue, "cudaGraphExecDestroy of an unknown graph");
    }
  }
  delete exec;
  return cudaSuccess;
}
