// The Model class of the addon: a thin binding over cb::Model<float>.
//   new Model(config, backend, seed, precision?)    config: {vocab, latentDim, classes, depth,
//                                        width, heads, mlpRatio, scales, ropeMixLayers};
//                                        precision "fp32" | "bf16" (model_args.h)
//   paramTable() -> [{name, shape, offset, size, decay, init}]
//   forward(batch, wantLogits, forBackward) -> Promise<{loss, tokens, lossRows, logits?}>
//   backward() -> Promise<void>      step(lr, beta1, beta2, eps, weightDecay) -> Promise<void>
//   zeroGrad()   getParam(name)   setParam(name, values)   getState(which)   setState(which, v)
//   setCodebook(values)   the tokenizer's (K, latentDim) code vectors, which forward and sample
//                         build the Eq. 1 inputs from
//   stepCount()  setStepCount(t)  dispose()
//   attachDataParallel(zero1) -> {shardBegin, shardEnd, transport}   (several ranks)
//   sample(request, onStep | null) -> Promise<{codes, entropy?, stepCodes?, logits?,
//                                              forwardPasses}>    (sample/sampler.h)
// Long calls run on a worker thread; while one is in flight every other call is refused, so the
// model is never used from two threads at once.
#include <napi.h>

#include <functional>
#include <memory>
#include <string>

#include "args.h"
#include "dist/data_parallel.h"
#include "errors.h"
#include "model/backends.h"
#include "model/model.h"
#include "model_args.h"
#include "promise_worker.h"
#include "sample/sampler.h"
#include "typed_copy.h"
#include "work_tracker.h"

namespace cbn {
namespace {

using ModelF = cb::Model<float>;

// Runs the sampling loop on a worker thread; after each step `on_step(step, steps)` is called
// on the JS thread (when given). Resolves with the SampleResult as typed arrays.
class SampleWorker : public TrackedWorker<Napi::AsyncProgressQueueWorker<int>> {
 public:
  SampleWorker(Napi::Env env, bool* busy, ModelF* model, cb::SampleWorkspace<float>* workspace,
               cb::SampleRequest request, Napi::Value on_step)
      : TrackedWorker(env, "checkerboard.sample"),
        deferred_(Napi::Promise::Deferred::New(env)),
        busy_(busy),
        model_(model),
        workspace_(workspace),
        request_(std::move(request)) {
    if (on_step.IsFunction()) on_step_ = Napi::Persistent(on_step.As<Napi::Function>());
    steps_ = (int)request_.block_start.size() - 1;
    *busy_ = true;
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    try {
      result_ = cb::sample_images(*model_, request_, *workspace_,
                                  [&progress](int step, int) { progress.Send(&step, 1); });
    } catch (...) {
      failure_ = describe(std::current_exception(), __FILE__, __LINE__);
      SetError(failure_.message);
    }
  }
  void OnProgress(const int* steps, size_t count) override {
    if (on_step_.IsEmpty() || callback_failed_) return;
    Napi::Env env = Env();
    for (size_t i = 0; i < count; i++) {
      try {
        on_step_.Call({Napi::Number::New(env, steps[i]), Napi::Number::New(env, steps_)});
      } catch (const Napi::Error& e) {
        callback_failed_ = true;  // reported when the promise settles
        callback_error_ = Napi::Persistent(e.Value());
        return;
      }
    }
  }
  void OnOK() override {
    *busy_ = false;
    Napi::Env env = Env();
    if (callback_failed_) {
      deferred_.Reject(callback_error_.Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("codes", typed_copy(env, result_.codes));
    if (request_.want_entropy) out.Set("entropy", typed_copy(env, result_.entropy));
    if (request_.want_step_codes) out.Set("stepCodes", typed_copy(env, result_.step_codes));
    if (request_.want_logits) out.Set("logits", typed_copy(env, result_.logits));
    out.Set("forwardPasses", Napi::Number::New(env, result_.forward_passes));
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error&) override {
    *busy_ = false;
    deferred_.Reject(to_js_error(Env(), failure_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  bool* busy_;
  ModelF* model_;
  cb::SampleWorkspace<float>* workspace_;
  cb::SampleRequest request_;
  Napi::FunctionReference on_step_;
  int steps_ = 0;
  bool callback_failed_ = false;
  Napi::ObjectReference callback_error_;
  cb::SampleResult result_;
  Failure failure_;
};

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod("paramTable", &ModelWrap::param_table),
                        InstanceMethod("forward", &ModelWrap::forward),
                        InstanceMethod("backward", &ModelWrap::backward),
                        InstanceMethod("step", &ModelWrap::step),
                        InstanceMethod("zeroGrad", &ModelWrap::zero_grad),
                        InstanceMethod("getParam", &ModelWrap::get_param),
                        InstanceMethod("setParam", &ModelWrap::set_param),
                        InstanceMethod("setCodebook", &ModelWrap::set_codebook),
                        InstanceMethod("getState", &ModelWrap::get_state),
                        InstanceMethod("setState", &ModelWrap::set_state),
                        InstanceMethod("stepCount", &ModelWrap::step_count),
                        InstanceMethod("setStepCount", &ModelWrap::set_step_count),
                        InstanceMethod("sample", &ModelWrap::sample),
                        InstanceMethod("attachDataParallel", &ModelWrap::attach_data_parallel),
                        InstanceMethod("dispose", &ModelWrap::dispose)});
  }

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    guarded(info.Env(), [&]() -> Napi::Value {
      const cb::ModelConfig config = parse_model_config(info[0]);
      const std::string backend = string_arg(info, 1, "Model: backend");
      const int64_t seed = int_arg(info, 2, "Model: seed", 0, (int64_t(1) << 53));
      model_ = std::make_unique<ModelF>(
          config,
          has_precision_arg(info, 3) ? cb::make_model_ops<float>(backend, precision_arg(info, 3))
                                     : cb::make_model_ops<float>(backend),
          seed);
      return info.Env().Undefined();
    });
  }

 private:
  ModelF& ready() {
    CB_CHECK(model_ != nullptr, "model: already disposed");
    CB_CHECK(!busy_, "model: another call is still running (await it first)");
    return *model_;
  }

  Napi::Value param_table(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      const auto& entries = ready().layout().entries();
      Napi::Array out = Napi::Array::New(env, entries.size());
      for (size_t i = 0; i < entries.size(); i++) {
        const cb::ParamEntry& e = entries[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", e.name);
        Napi::Array shape = Napi::Array::New(env, e.shape.size());
        for (size_t d = 0; d < e.shape.size(); d++) shape.Set(d, Napi::Number::New(env, (double)e.shape[d]));
        o.Set("shape", shape);
        o.Set("offset", Napi::Number::New(env, (double)e.offset));
        o.Set("size", Napi::Number::New(env, (double)e.size));
        o.Set("decay", Napi::Boolean::New(env, e.decay));
        o.Set("init", init_name(e.init));
        out.Set(i, o);
      }
      return out;
    });
  }

  Napi::Value forward(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      auto batch = std::make_shared<cb::Batch<float>>(
          parse_batch(info[0], model.config().grid_positions()));
      const bool want_logits = bool_arg(info, 1, "forward: wantLogits");
      const bool for_backward = bool_arg(info, 2, "forward: forBackward");
      auto result = std::make_shared<cb::ForwardResult>();
      auto* worker = new PromiseWorker(
          info.Env(), "checkerboard.model", &busy_, [&model, batch, for_backward, result] {
            *result = model.forward(*batch, for_backward);
          },
          [&model, result, want_logits](Napi::Env env) -> Napi::Value {
            const int64_t n = int64_t(model.last_batch()) * model.last_slots();
            Napi::Object out = Napi::Object::New(env);
            out.Set("loss", Napi::Number::New(env, result->loss));
            out.Set("tokens", Napi::Number::New(env, (double)result->tokens));
            Napi::Float32Array rows = Napi::Float32Array::New(env, n);
            model.read_loss_rows(rows.Data());
            out.Set("lossRows", rows);
            if (want_logits) {
              const int64_t count = n * model.config().vocab;
              Napi::Float32Array logits = Napi::Float32Array::New(env, count);
              model.read_logits(logits.Data());
              out.Set("logits", logits);
            }
            return out;
          });
      worker->Queue();
      return worker->promise();
    });
  }

  Napi::Value backward(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      // backward(lastMicroBatch?): under data parallel, the last micro-batch of a step may
      // all-reduce the gradients while it runs (DataParallel::backward).
      const bool last = info.Length() > 0 && bool_arg(info, 0, "backward: lastMicroBatch");
      cb::DataParallel<float>* dp = data_parallel_.get();
      auto* worker = new PromiseWorker(
          info.Env(), "checkerboard.model", &busy_,
          [&model, dp, last] {
            if (dp != nullptr) {
              dp->backward(last);
            } else {
              model.backward();
            }
          },
          [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
      worker->Queue();
      return worker->promise();
    });
  }

  Napi::Value step(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      cb::AdamWSettings s;
      s.lr = (float)number_arg(info, 0, "step: lr");
      s.beta1 = (float)number_arg(info, 1, "step: beta1");
      s.beta2 = (float)number_arg(info, 2, "step: beta2");
      s.eps = (float)number_arg(info, 3, "step: eps");
      s.weight_decay = (float)number_arg(info, 4, "step: weightDecay");
      cb::DataParallel<float>* dp = data_parallel_.get();
      auto* worker = new PromiseWorker(
          info.Env(), "checkerboard.model", &busy_, [&model, dp, s] {
            if (dp != nullptr) {
              dp->step(s);
            } else {
              model.step(s);
            }
          },
          [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
      worker->Queue();
      return worker->promise();
    });
  }

  Napi::Value zero_grad(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ready().zero_grad();
      return info.Env().Undefined();
    });
  }

  Napi::Value get_param(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      const cb::ParamEntry& e = model.layout().find(string_arg(info, 0, "getParam: name"));
      Napi::Float32Array out = Napi::Float32Array::New(info.Env(), e.size);
      model.read_state("params", out.Data(), e.offset, e.size);
      return out;
    });
  }

  Napi::Value set_param(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      const std::string name = string_arg(info, 0, "setParam: name");
      const cb::ParamEntry& e = model.layout().find(name);
      Napi::Float32Array values = float32_arg(info, 1, "setParam: values");
      CB_CHECK((int64_t)values.ElementLength() == e.size,
               "setParam('" + name + "'): expected " + std::to_string(e.size) + " values, got " +
                   std::to_string(values.ElementLength()));
      model.write_state("params", values.Data(), e.offset, e.size);
      return info.Env().Undefined();
    });
  }

  Napi::Value set_codebook(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      Napi::Float32Array values = float32_arg(info, 0, "setCodebook: values");
      model.set_codebook(values.Data(), (int64_t)values.ElementLength());
      return info.Env().Undefined();
    });
  }

  Napi::Value get_state(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      const int64_t total = model.layout().total();
      const std::string which = string_arg(info, 0, "getState: which");
      if (data_parallel_ != nullptr) {
        // Collective under data parallelism (the sharded moments come together on rank 0).
        const std::vector<float> whole = data_parallel_->gather_state(which);
        Napi::Float32Array out = Napi::Float32Array::New(info.Env(), whole.size());
        std::copy(whole.begin(), whole.end(), out.Data());
        return out;
      }
      Napi::Float32Array out = Napi::Float32Array::New(info.Env(), total);
      model.read_state(which, out.Data(), 0, total);
      return out;
    });
  }

  Napi::Value set_state(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      const std::string which = string_arg(info, 0, "setState: which");
      Napi::Float32Array values = float32_arg(info, 1, "setState: values");
      const int64_t total = model.layout().total();
      CB_CHECK((int64_t)values.ElementLength() == total,
               "setState: expected " + std::to_string(total) + " values, got " +
                   std::to_string(values.ElementLength()));
      CB_CHECK(which != "grads", "unknown state '" + which +
                                     "' (params, adamM, adamV; grads is read-only)");
      if (data_parallel_ != nullptr) {
        data_parallel_->write_state(which, values.Data());
      } else {
        model.write_state(which, values.Data(), 0, total);
      }
      return info.Env().Undefined();
    });
  }

  // attachDataParallel(zero1): from now on step() exchanges the gradients with the other
  // ranks (engine/dist/data_parallel.h), and getState/setState of the moments gather or
  // scatter them under ZeRO-1. Every rank's parameters become rank 0's. Returns
  // {shardBegin, shardEnd, transport}.
  Napi::Value attach_data_parallel(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      const bool zero1 = bool_arg(info, 0, "attachDataParallel: zero1");
      const double bucket = number_arg(info, 1, "attachDataParallel: bucketValues");
      CB_CHECK(bucket >= 0 && bucket <= 9e15 && bucket == double(int64_t(bucket)),
               "attachDataParallel: bucketValues must be a whole number >= 0");
      cb::Communicator* comm = cb::dist_communicator();
      CB_CHECK(comm != nullptr, "attachDataParallel: this process is not one of several ranks");
      CB_CHECK(data_parallel_ == nullptr, "attachDataParallel: already attached");
      data_parallel_ = std::make_unique<cb::DataParallel<float>>(model, *comm, zero1,
                                                               int64_t(bucket));
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("shardBegin", double(model.shard_begin()));
      o.Set("shardEnd", double(model.shard_end()));
      o.Set("transport", comm->transport(&model.ops().memory() != &cb::host_memory()));
      o.Set("overlapped", data_parallel_->overlapped());
      return o;
    });
  }

  Napi::Value step_count(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      return Napi::Number::New(info.Env(), (double)ready().step_count());
    });
  }

  Napi::Value set_step_count(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ready().set_step_count(int_arg(info, 0, "setStepCount: stepCount", 0, int64_t(1) << 53));
      return info.Env().Undefined();
    });
  }

  Napi::Value sample(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ModelF& model = ready();
      auto* worker = new SampleWorker(info.Env(), &busy_, &model, &sample_workspace_,
                                      parse_sample_request(info[0]), info[1]);
      worker->Queue();
      return worker->promise();
    });
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      CB_CHECK(!busy_, "model: another call is still running (await it first)");
      data_parallel_.reset();
      model_.reset();
      return info.Env().Undefined();
    });
  }

  std::unique_ptr<ModelF> model_;
  std::unique_ptr<cb::DataParallel<float>> data_parallel_;  // attachDataParallel
  // Kept between sample() calls (the KV cache and step buffers), freed with the model.
  cb::SampleWorkspace<float> sample_workspace_;
  bool busy_ = false;
};

}  // namespace

void register_model(Napi::Env env, Napi::Object exports) {
  exports.Set("Model", ModelWrap::define(env));
}

}  // namespace cbn
