// CudaModelOps::make_recorder: op sequences recorded as CUDA graphs (model/op_recorder.h). The
// first run of a key runs the ops as they are (which also grows any scratch they need), then
// records the same calls again by stream capture on this thread (kernels are not executed while
// captured) and instantiates the graph; later runs launch the instantiated graph on the legacy
// stream, ordered like the kernels it replaces. A recording names the scratch arrays of the ops
// it used, so all recordings are dropped when the scratch is reallocated.
#include <cuda_runtime_api.h>

#include <memory>
#include <unordered_map>
#include <utility>

#include "check.h"
#include "model_ops_cuda.h"
#include "stream.h"

namespace cb {
namespace {

class CudaGraphRecorder final : public OpRecorder {
 public:
  explicit CudaGraphRecorder(CudaModelOps& ops)
      : ops_(ops), generation_(ops.scratch_generation()) {
    // Only captured, never run: non-blocking, so that another thread's work on the legacy
    // stream during a capture does not count as an implicit dependency of the capture (an
    // error). A launch that missed launch_stream() would run at capture time and be absent
    // from the replays, which the GPU test of replayed against unrecorded sampling catches.
    CB_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~CudaGraphRecorder() override {
    clear();
    cudaStreamDestroy(stream_);  // a destructor must not throw; a failure is not actionable
  }
  CudaGraphRecorder(const CudaGraphRecorder&) = delete;
  CudaGraphRecorder& operator=(const CudaGraphRecorder&) = delete;

  void run(const std::string& key, const std::function<void()>& work) override {
    forget_if_stale();
    auto it = graphs_.find(key);
    if (it != graphs_.end()) {
      CB_CUDA_CHECK(cudaGraphLaunch(it->second, 0));
      return;
    }
    work();
    forget_if_stale();  // work may have grown the scratch that older recordings name
    graphs_.emplace(key, record(work));
  }

  void clear() override {
    for (auto& kv : graphs_) cudaGraphExecDestroy(kv.second);
    graphs_.clear();
  }

  size_t recordings() const override { return graphs_.size(); }

 private:
  void forget_if_stale() {
    if (ops_.scratch_generation() == generation_) return;
    clear();
    generation_ = ops_.scratch_generation();
  }

  cudaGraphExec_t record(const std::function<void()>& work) {
    // Thread-local mode: a call from this thread that cannot be captured (an allocation, a
    // synchronous copy) fails the capture with an error rather than running.
    CB_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    launch_stream() = stream_;
    ops_.set_capturing(true);
    auto end_capture = [&]() {
      launch_stream() = nullptr;
      ops_.set_capturing(false);
      cudaGraph_t graph = nullptr;
      const cudaError_t err = cudaStreamEndCapture(stream_, &graph);
      return std::make_pair(err, graph);
    };
    try {
      work();
    } catch (...) {
      const auto ended = end_capture();
      if (ended.second != nullptr) cudaGraphDestroy(ended.second);
      cudaGetLastError();  // the capture's error is reported by the exception in flight
      throw;
    }
    const auto ended = end_capture();
    CB_CUDA_CHECK(ended.first);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, ended.second, 0);
    cudaGraphDestroy(ended.second);
    CB_CUDA_CHECK(err);
    return exec;
  }

  CudaModelOps& ops_;
  uint64_t generation_;
  cudaStream_t stream_ = nullptr;
  std::unordered_map<std::string, cudaGraphExec_t> graphs_;
};

}  // namespace

std::unique_ptr<OpRecorder> CudaModelOps::make_recorder() {
  return std::make_unique<CudaGraphRecorder>(*this);
}

}  // namespace cb
