// linearSeconds(backend, rows, in, out, repeats) -> Promise<{seconds: number[], precision}>:
// times the model's own linear (engine/model/linear_timing.h) on a model backend, off the JS
// thread. The reference rate of the TypeScript benchmarks (src/bench/*): on cuda it is the
// bf16 tensor-core kernel the model runs, on device-resident buffers, with nothing allocated
// or copied while timing (the old gemm() path allocated and copied on every call).
#include <climits>
#include <string>
#include <vector>

#include "args.h"
#include "bindings.h"
#include "errors.h"
#include "model/backends.h"
#include "model/linear_timing.h"
#include "work_tracker.h"

namespace cbn {
namespace {

class LinearTimingWorker : public TrackedWorker<Napi::AsyncWorker> {
 public:
  LinearTimingWorker(Napi::Env env, std::string backend, int64_t rows, int in, int out,
                     int repeats)
      : TrackedWorker(env, "checkerboard.linearSeconds"),
        deferred_(Napi::Promise::Deferred::New(env)),
        backend_(std::move(backend)),
        rows_(rows), in_(in), out_(out), repeats_(repeats) {}

  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {  // worker thread: no JS here
    try {
      auto ops = cb::make_model_ops<float>(backend_);
      precision_ = cb::model_linear_precision(*ops);
      seconds_ = cb::time_model_linear(*ops, rows_, in_, out_, repeats_);
    } catch (...) {
      failure_ = describe(std::current_exception(), __FILE__, __LINE__);
      SetError(failure_.message);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array seconds = Napi::Array::New(env, seconds_.size());
    for (size_t i = 0; i < seconds_.size(); i++) seconds.Set(i, Napi::Number::New(env, seconds_[i]));
    Napi::Object out = Napi::Object::New(env);
    out.Set("seconds", seconds);
    out.Set("precision", precision_);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error&) override {
    deferred_.Reject(to_js_error(Env(), failure_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string backend_;
  int64_t rows_;
  int in_, out_, repeats_;
  std::string precision_;
  std::vector<double> seconds_;
  Failure failure_;
};

}  // namespace

Napi::Value linear_seconds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    CB_CHECK(info.Length() == 5, "linearSeconds(backend, rows, in, out, repeats) takes 5 arguments");
    const std::string backend = string_arg(info, 0, "linearSeconds: backend");
    const int64_t rows = int_arg(info, 1, "linearSeconds: rows", 1, int64_t(1) << 40);
    const int in = (int)int_arg(info, 2, "linearSeconds: in", 1, INT_MAX);
    const int out = (int)int_arg(info, 3, "linearSeconds: out", 1, INT_MAX);
    const int repeats = (int)int_arg(info, 4, "linearSeconds: repeats", 1, 1000000);
    auto* worker = new LinearTimingWorker(env, backend, rows, in, out, repeats);
    Napi::Promise promise = worker->promise();
    worker->Queue();  // the worker deletes itself when done
    return promise;
  });
}

}  // namespace cbn
