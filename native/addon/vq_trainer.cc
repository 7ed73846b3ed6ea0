// The VqTrainer class of the addon: a thin binding over cb::VqTrainer<float> (vq/vq_trainer.h).
//   new VqTrainer(backend, config, initSeed, trainSeed)   random LlamaGen-style initial weights
//   step(passes, settings) -> Promise<{passes: [{pixelSq, pixelAbs, pixels, latentSq, latents}],
//                                      codesUsed, perplexity, codesLive, reinitialised}>
//     passes: [{images: Float32Array (B, 3, H, W) in [-1, 1], B, H, W, weight}]
//     settings: {lr, beta1, beta2, eps, weightDecay, pixelL2, pixelL1, codebook, commit,
//                deadAfter}
//   state() -> {params, m, v: Float32Array, lastUsed: Float64Array, step}
//   setState(state)    tensors() -> {name: {shape, data: Float32Array}} (the state dict)
//   config()   paramCount()   stepCount()   dispose()
// The step runs on a worker thread; while it is in flight every other call is refused.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "bindings.h"
#include "errors.h"
#include "promise_worker.h"
#include "typed_copy.h"
#include "vq/conv_ops.h"
#include "vq/vq_trainer.h"
#include "vq_args.h"

namespace cbn {
namespace {

double number_field(const Napi::Object& o, const char* name, double lo, double hi) {
  const Napi::Value v = o.Get(name);
  CB_CHECK(v.IsNumber() && v.As<Napi::Number>().DoubleValue() >= lo &&
               v.As<Napi::Number>().DoubleValue() <= hi,
           std::string("VqTrainer: settings.") + name + " must be a number in [" +
               cb::format_number(lo) + ", " + cb::format_number(hi) + "], got " + kind_of(v));
  return v.As<Napi::Number>().DoubleValue();
}

int64_t integer_field(const Napi::Object& o, const char* name, int64_t lo, int64_t hi,
                      const char* what) {
  const Napi::Value v = o.Get(name);
  CB_CHECK(v.IsNumber() && integer_in(v.As<Napi::Number>().DoubleValue(), lo, hi),
           std::string("VqTrainer: ") + what + "." + name + " must be " + integer_range(lo, hi) +
               ", got " + kind_of(v));
  return (int64_t)v.As<Napi::Number>().DoubleValue();
}

cb::VqStepSettings parse_settings(const Napi::Value& value) {
  CB_CHECK(value.IsObject(), "VqTrainer: settings must be an object, got " + kind_of(value));
  const Napi::Object o = value.As<Napi::Object>();
  cb::VqStepSettings s;
  s.lr = (float)number_field(o, "lr", 0, 1);
  s.beta1 = (float)number_field(o, "beta1", 0, 0.999999);
  s.beta2 = (float)number_field(o, "beta2", 0, 0.999999);
  s.eps = (float)number_field(o, "eps", 1e-30, 1);
  s.weight_decay = (float)number_field(o, "weightDecay", 0, 1);
  s.losses.pixel_l2 = number_field(o, "pixelL2", 0, 1e6);
  s.losses.pixel_l1 = number_field(o, "pixelL1", 0, 1e6);
  s.losses.codebook = number_field(o, "codebook", 0, 1e6);
  s.losses.commit = number_field(o, "commit", 0, 1e6);
  s.dead_after = (int)integer_field(o, "deadAfter", 0, 1 << 30, "settings");
  return s;
}

// A Float32Array field of exactly `count` values (count < 0: any length).
Napi::Float32Array float32_field(const Napi::Object& o, const char* name, int64_t count,
                                 const std::string& what) {
  const Napi::Value v = o.Get(name);
  CB_CHECK(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array,
           "VqTrainer: " + what + "." + name + " must be a Float32Array, got " + kind_of(v));
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  CB_CHECK(count < 0 || (int64_t)a.ElementLength() == count,
           "VqTrainer: " + what + "." + name + " has " + std::to_string(a.ElementLength()) +
               " values, expected " + std::to_string(count));
  return a;
}

class VqTrainerWrap : public Napi::ObjectWrap<VqTrainerWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "VqTrainer",
                       {InstanceMethod("step", &VqTrainerWrap::step),
                        InstanceMethod("state", &VqTrainerWrap::state),
                        InstanceMethod("setState", &VqTrainerWrap::set_state),
                        InstanceMethod("tensors", &VqTrainerWrap::tensors),
                        InstanceMethod("config", &VqTrainerWrap::config),
                        InstanceMethod("paramCount", &VqTrainerWrap::param_count),
                        InstanceMethod("stepCount", &VqTrainerWrap::step_count),
                        InstanceMethod("dispose", &VqTrainerWrap::dispose)});
  }

  explicit VqTrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VqTrainerWrap>(info) {
    guarded(info.Env(), [&]() -> Napi::Value {
      CB_CHECK(info.Length() == 4, "VqTrainer(backend, config, initSeed, trainSeed)");
      const std::string backend = string_arg(info, 0, "VqTrainer: backend");
      const cb::VqConfig config = parse_vq_config(info[1]);
      const int64_t init_seed = int_arg(info, 2, "VqTrainer: initSeed", 0, int64_t(1) << 53);
      const int64_t train_seed = int_arg(info, 3, "VqTrainer: trainSeed", 0, int64_t(1) << 53);
      auto model = std::make_unique<cb::VqModel<float>>(cb::make_conv_ops<float>(backend), config,
                                                        (uint64_t)init_seed);
      trainer_ = std::make_unique<cb::VqTrainer<float>>(std::move(model), backend,
                                                        (uint64_t)train_seed);
      return info.Env().Undefined();
    });
  }

 private:
  void check_ready() const {
    CB_CHECK(trainer_ != nullptr, "VqTrainer: already disposed");
    CB_CHECK(!busy_, "VqTrainer: a step is still running (await it first)");
  }

  Napi::Value step(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      CB_CHECK(info.Length() == 2 && info[0].IsArray(),
               "VqTrainer.step(passes: [{images, B, H, W, weight}], settings)");
      const cb::VqConfig& c = trainer_->model().config();
      const Napi::Array list = info[0].As<Napi::Array>();
      CB_CHECK(list.Length() >= 1 && list.Length() <= 64,
               "VqTrainer.step: between 1 and 64 passes, got " + std::to_string(list.Length()));
      // The images are copied: the JS arrays may change while the step runs.
      auto images = std::make_shared<std::vector<std::vector<float>>>();
      auto passes = std::make_shared<std::vector<cb::VqTrainImages>>();
      for (uint32_t i = 0; i < list.Length(); i++) {
        CB_CHECK(list.Get(i).IsObject(), "VqTrainer.step: passes[" + std::to_string(i) +
                                             "] must be an object");
        const Napi::Object o = list.Get(i).As<Napi::Object>();
        const std::string what = "passes[" + std::to_string(i) + "]";
        cb::VqTrainImages p;
        p.B = (int)integer_field(o, "B", 1, 1 << 16, what.c_str());
        p.H = (int)integer_field(o, "H", 1, 1 << 14, what.c_str());
        p.W = (int)integer_field(o, "W", 1, 1 << 14, what.c_str());
        p.weight = number_field(o, "weight", 0, 1e6);
        const Napi::Float32Array a =
            float32_field(o, "images", int64_t(p.B) * c.in_channels * p.H * p.W, what);
        images->emplace_back(a.Data(), a.Data() + a.ElementLength());
        passes->push_back(p);
      }
      for (size_t i = 0; i < passes->size(); i++) (*passes)[i].images = (*images)[i].data();
      const cb::VqStepSettings settings = parse_settings(info[1]);
      auto stats = std::make_shared<cb::VqStepStats>();
      cb::VqTrainer<float>* trainer = trainer_.get();
      auto* worker = new PromiseWorker(
          info.Env(), "checkerboard.vq-train", &busy_,
          [trainer, images, passes, settings, stats] { *stats = trainer->step(*passes, settings); },
          [stats](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            Napi::Array list = Napi::Array::New(env, stats->passes.size());
            for (size_t i = 0; i < stats->passes.size(); i++) {
              const cb::VqPassStats& p = stats->passes[i];
              Napi::Object x = Napi::Object::New(env);
              x.Set("pixelSq", p.pixel_sq);
              x.Set("pixelAbs", p.pixel_abs);
              x.Set("pixels", (double)p.pixels);
              x.Set("latentSq", p.latent_sq);
              x.Set("latents", (double)p.latents);
              list.Set(i, x);
            }
            o.Set("passes", list);
            o.Set("codesUsed", stats->codes_used);
            o.Set("perplexity", stats->perplexity);
            o.Set("codesLive", stats->codes_live);
            o.Set("reinitialised", stats->reinitialised);
            return o;
          },
          Value());
      worker->Queue();  // the worker deletes itself when done
      return worker->promise();
    });
  }

  Napi::Value state(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      Napi::Env env = info.Env();
      const cb::VqTrainer<float>::State s = trainer_->state();
      Napi::Object o = Napi::Object::New(env);
      o.Set("params", typed_copy(env, s.params));
      o.Set("m", typed_copy(env, s.m));
      o.Set("v", typed_copy(env, s.v));
      // Steps fit a double exactly (< 2^53).
      o.Set("lastUsed", typed_copy(env, std::vector<double>(s.last_used.begin(),
                                                            s.last_used.end())));
      o.Set("step", (double)s.step);
      return o;
    });
  }

  Napi::Value set_state(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      CB_CHECK(info.Length() == 1 && info[0].IsObject(),
               "VqTrainer.setState({params, m, v, lastUsed, step})");
      const Napi::Object o = info[0].As<Napi::Object>();
      const int64_t n = trainer_->model().params().size();
      cb::VqTrainer<float>::State s;
      for (auto [name, dst] : {std::pair<const char*, std::vector<float>*>{"params", &s.params},
                               {"m", &s.m},
                               {"v", &s.v}}) {
        const Napi::Float32Array a = float32_field(o, name, n, "state");
        dst->assign(a.Data(), a.Data() + n);
      }
      const Napi::Value last = o.Get("lastUsed");
      CB_CHECK(last.IsTypedArray() &&
                   last.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array,
               "VqTrainer: state.lastUsed must be a Float64Array, got " + kind_of(last));
      const Napi::Float64Array l = last.As<Napi::Float64Array>();
      s.step = integer_field(o, "step", 0, int64_t(1) << 52, "state");
      for (size_t i = 0; i < l.ElementLength(); i++) {
        CB_CHECK(integer_in(l[i], 0, s.step), "VqTrainer: state.lastUsed[" + std::to_string(i) +
                                                  "] must be an integer in [0, step]");
        s.last_used.push_back((int64_t)l[i]);
      }
      trainer_->set_state(s);
      return info.Env().Undefined();
    });
  }

  Napi::Value tensors(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      Napi::Env env = info.Env();
      const cb::VqModel<float>& model = trainer_->model();
      std::vector<float> all((size_t)model.params().size());
      model.params().download(all.data(), (int64_t)all.size());
      Napi::Object o = Napi::Object::New(env);
      for (const cb::VqParamSlot& slot : model.param_slots()) {
        Napi::Object t = Napi::Object::New(env);
        Napi::Array shape = Napi::Array::New(env, slot.shape.size());
        for (size_t d = 0; d < slot.shape.size(); d++) shape.Set(d, (double)slot.shape[d]);
        t.Set("shape", shape);
        t.Set("data", typed_copy(env, std::vector<float>(all.begin() + slot.offset,
                                                         all.begin() + slot.offset + slot.count)));
        o.Set(slot.name, t);
      }
      return o;
    });
  }

  Napi::Value config(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      return vq_config_object(info.Env(), trainer_->model().config());
    });
  }

  Napi::Value param_count(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      return Napi::Number::New(info.Env(), (double)trainer_->model().params().size());
    });
  }

  Napi::Value step_count(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      return Napi::Number::New(info.Env(), (double)trainer_->step_count());
    });
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      CB_CHECK(!busy_, "VqTrainer: a step is still running (await it first)");
      trainer_.reset();
      return info.Env().Undefined();
    });
  }

  std::unique_ptr<cb::VqTrainer<float>> trainer_;
  bool busy_ = false;
};

}  // namespace

void register_vq_trainer(Napi::Env env, Napi::Object exports) {
  exports.Set("VqTrainer", VqTrainerWrap::define(env));
}

}  // namespace cbn
