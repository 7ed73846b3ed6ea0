// The VqNet class of the addon: a thin binding over cb::VqModel (vq/vq_model.h), LlamaGen's
// VQ-16 encoder, quantiser and decoder.
//   new VqNet(backend, tensors)                    tensors: {name: {shape: number[], data:
//                                                   Float32Array}} (a state dict)
//   new VqNet(backend, "random", config, seed)     config: {ch, chMult, zChannels, codes,
//                                                   codeDim, encoderBlocks, decoderBlocks}
//   encode(images, B, H, W, {encOut}) -> Promise<{latent, indices, dist2, encOut?}>
//   decodeCodes(indices, B, h, w, {intermediates}) -> Promise<{images, quant?, postQuant?,
//                                                              decMid?}>
//   decodeLatents(zq, B, h, w, {intermediates}) -> Promise<{images, postQuant?, decMid?}>
//   setCodebook(codebook, K, D)   config()   dispose()
// Backends: cpu-ref, cpu, cuda (float), and cpu-ref-f64 (the reference in double: weights and
// inputs widened, every output a Float64Array; the parity test's ground truth).
// Inputs are copied before the work is queued; long calls run on a worker thread, and while one
// is in flight every other call is refused, so the model is never used from two threads.
#include <napi.h>

#include <climits>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "bindings.h"
#include "errors.h"
#include "promise_worker.h"
#include "typed_copy.h"
#include "vq/conv_ops.h"
#include "vq/vq_model.h"
#include "vq_args.h"

namespace cbn {
namespace {

const char* kF64 = "cpu-ref-f64";

// A Float32Array or Float64Array argument of exactly `count` values, copied as Real.
template <typename Real>
std::vector<Real> real_values(const Napi::Value& v, int64_t count, const std::string& name) {
  const bool typed = v.IsTypedArray();
  const napi_typedarray_type type = typed ? v.As<Napi::TypedArray>().TypedArrayType() : napi_int8_array;
  CB_CHECK(typed && (type == napi_float32_array || type == napi_float64_array),
           name + " must be a Float32Array or a Float64Array, got " + kind_of(v));
  const size_t length = v.As<Napi::TypedArray>().ElementLength();
  CB_CHECK((int64_t)length == count, name + " has " + std::to_string(length) +
                                         " values, expected " + std::to_string(count));
  if (type == napi_float32_array) {
    const float* p = v.As<Napi::Float32Array>().Data();
    return std::vector<Real>(p, p + length);
  }
  const double* p = v.As<Napi::Float64Array>().Data();
  return std::vector<Real>(p, p + length);
}

std::vector<int32_t> int32_values(const Napi::Value& v, int64_t count, const std::string& name) {
  CB_CHECK(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array,
           name + " must be an Int32Array, got " + kind_of(v));
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  CB_CHECK((int64_t)a.ElementLength() == count, name + " has " + std::to_string(a.ElementLength()) +
                                                    " values, expected " + std::to_string(count));
  return std::vector<int32_t>(a.Data(), a.Data() + count);
}

// opts.flag when opts is an object with that boolean; false when opts is absent.
bool option_flag(const Napi::CallbackInfo& info, size_t i, const char* flag, const char* call) {
  if (info.Length() <= i || info[i].IsUndefined()) return false;
  CB_CHECK(info[i].IsObject(), std::string(call) + ": opts must be an object, got " + kind_of(info[i]));
  const Napi::Value v = info[i].As<Napi::Object>().Get(flag);
  if (v.IsUndefined()) return false;
  CB_CHECK(v.IsBoolean(), std::string(call) + ": opts." + flag + " must be a boolean, got " +
                              kind_of(v));
  return v.As<Napi::Boolean>().Value();
}

class VqNetWrap : public Napi::ObjectWrap<VqNetWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "VqNet",
                       {InstanceMethod("encode", &VqNetWrap::encode),
                        InstanceMethod("decodeCodes", &VqNetWrap::decode_codes),
                        InstanceMethod("decodeLatents", &VqNetWrap::decode_latents),
                        InstanceMethod("setCodebook", &VqNetWrap::set_codebook),
                        InstanceMethod("config", &VqNetWrap::config),
                        InstanceMethod("dispose", &VqNetWrap::dispose)});
  }

  explicit VqNetWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VqNetWrap>(info) {
    guarded(info.Env(), [&]() -> Napi::Value {
      CB_CHECK(info.Length() == 2 || info.Length() == 4,
               "VqNet(backend, tensors) or VqNet(backend, 'random', config, seed)");
      const std::string backend = string_arg(info, 0, "VqNet: backend");
      const bool f64 = backend == kF64;
      if (info.Length() == 4) {
        CB_CHECK(info[1].IsString() && info[1].As<Napi::String>().Utf8Value() == "random",
                 "VqNet: with 4 arguments the second must be 'random'");
        const cb::VqConfig config = parse_vq_config(info[2]);
        const int64_t seed = int_arg(info, 3, "VqNet: seed", 0, int64_t(1) << 53);
        if (f64) {
          f64_ = std::make_unique<cb::VqModel<double>>(cb::make_conv_ops<double>("cpu-ref"),
                                                       config, seed);
        } else {
          f32_ = std::make_unique<cb::VqModel<float>>(cb::make_conv_ops<float>(backend), config,
                                                      seed);
        }
      } else {
        CB_CHECK(info[1].IsObject(), "VqNet: tensors must be an object {name: {shape, data}}, got " +
                                         kind_of(info[1]));
        const cb::HostTensors tensors = parse_vq_tensors(info[1].As<Napi::Object>());
        if (f64) {
          f64_ = std::make_unique<cb::VqModel<double>>(cb::make_conv_ops<double>("cpu-ref"),
                                                       tensors, "VqNet");
        } else {
          f32_ = std::make_unique<cb::VqModel<float>>(cb::make_conv_ops<float>(backend), tensors,
                                                      "VqNet");
        }
      }
      return info.Env().Undefined();
    });
  }

 private:
  void check_ready() const {
    CB_CHECK(f32_ != nullptr || f64_ != nullptr, "VqNet: already disposed");
    CB_CHECK(!busy_, "VqNet: another call is still running (await it first)");
  }
  const cb::VqConfig& model_config() const { return f32_ ? f32_->config() : f64_->config(); }

  Napi::Value queue(const Napi::CallbackInfo& info, std::function<void()> work,
                    std::function<Napi::Value(Napi::Env)> done) {
    auto* worker = new PromiseWorker(info.Env(), "checkerboard.vq", &busy_, std::move(work),
                                    std::move(done), Value());
    worker->Queue();  // the worker deletes itself when done
    return worker->promise();
  }

  // encode(images (B, 3, H, W), B, H, W, {encOut}) on the model of type Real.
  template <typename Real>
  Napi::Value encode_with(cb::VqModel<Real>& model, const Napi::CallbackInfo& info) {
    const cb::VqConfig& c = model.config();
    const int B = (int)int_arg(info, 1, "encode: B", 0, 1 << 20);
    const int H = (int)int_arg(info, 2, "encode: H", 1, 1 << 15);
    const int W = (int)int_arg(info, 3, "encode: W", 1, 1 << 15);
    const bool want_enc_out = option_flag(info, 4, "encOut", "encode");
    const int f = c.downsample();
    CB_CHECK(H % f == 0 && W % f == 0, "encode: image sides must be multiples of " +
                                           std::to_string(f) + ", got " + std::to_string(H) +
                                           " x " + std::to_string(W));
    const int64_t hw = int64_t(H / f) * (W / f);
    auto images = std::make_shared<std::vector<Real>>(
        real_values<Real>(info[0], int64_t(B) * c.in_channels * H * W, "encode: images"));
    struct Out {
      std::vector<Real> latent, enc_out, dist2;
      std::vector<int32_t> index;
    };
    auto out = std::make_shared<Out>();
    out->latent.resize(B * c.code_dim * hw);
    out->dist2.resize(B * hw);
    out->index.resize(B * hw);
    if (want_enc_out) out->enc_out.resize(B * c.z_channels * hw);
    return queue(
        info,
        [&model, images, out, B, H, W, f, want_enc_out] {
          model.encode(images->data(), B, H, W, out->latent.data(),
                       want_enc_out ? out->enc_out.data() : nullptr);
          model.quantize(out->latent.data(), B, H / f, W / f, out->index.data(), nullptr,
                         out->dist2.data());
        },
        [out, want_enc_out](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("latent", typed_copy(env, out->latent));
          o.Set("indices", typed_copy(env, out->index));
          o.Set("dist2", typed_copy(env, out->dist2));
          if (want_enc_out) o.Set("encOut", typed_copy(env, out->enc_out));
          return o;
        });
  }

  // decodeCodes (from_codes) or decodeLatents: (B, h, w) indices or (B, D, h, w) latents.
  template <typename Real>
  Napi::Value decode_with(cb::VqModel<Real>& model, const Napi::CallbackInfo& info,
                          bool from_codes) {
    const char* call = from_codes ? "decodeCodes" : "decodeLatents";
    const cb::VqConfig& c = model.config();
    const int B = (int)int_arg(info, 1, (std::string(call) + ": B").c_str(), 0, 1 << 20);
    const int h = (int)int_arg(info, 2, (std::string(call) + ": h").c_str(), 1, 1 << 11);
    const int w = (int)int_arg(info, 3, (std::string(call) + ": w").c_str(), 1, 1 << 11);
    const bool taps = option_flag(info, 4, "intermediates", call);
    const int64_t hw = int64_t(h) * w, f = c.downsample();
    struct Out {
      std::vector<Real> images, quant, post_quant, dec_mid;
    };
    auto out = std::make_shared<Out>();
    out->images.resize(B * c.out_channels * hw * f * f);
    if (taps) {
      if (from_codes) out->quant.resize(B * c.code_dim * hw);
      out->post_quant.resize(B * c.z_channels * hw);
      out->dec_mid.resize(B * c.mid_channels() * hw);
    }
    auto codes = std::make_shared<std::vector<int32_t>>();
    auto zq = std::make_shared<std::vector<Real>>();
    if (from_codes) {
      *codes = int32_values(info[0], B * hw, "decodeCodes: indices");
    } else {
      *zq = real_values<Real>(info[0], B * c.code_dim * hw, "decodeLatents: zq");
    }
    return queue(
        info,
        [&model, codes, zq, out, B, h, w, taps, from_codes] {
          Real* post = taps ? out->post_quant.data() : nullptr;
          Real* mid = taps ? out->dec_mid.data() : nullptr;
          if (from_codes) {
            model.decode_codes(codes->data(), B, h, w, out->images.data(),
                               taps ? out->quant.data() : nullptr, post, mid);
          } else {
            model.decode(zq->data(), B, h, w, out->images.data(), post, mid);
          }
        },
        [out, taps, from_codes](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("images", typed_copy(env, out->images));
          if (taps) {
            if (from_codes) o.Set("quant", typed_copy(env, out->quant));
            o.Set("postQuant", typed_copy(env, out->post_quant));
            o.Set("decMid", typed_copy(env, out->dec_mid));
          }
          return o;
        });
  }

  Napi::Value encode(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      return f32_ ? encode_with(*f32_, info) : encode_with(*f64_, info);
    });
  }

  Napi::Value decode_codes(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      return f32_ ? decode_with(*f32_, info, true) : decode_with(*f64_, info, true);
    });
  }

  Napi::Value decode_latents(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      return f32_ ? decode_with(*f32_, info, false) : decode_with(*f64_, info, false);
    });
  }

  Napi::Value set_codebook(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      Napi::Float32Array rows = float32_arg(info, 0, "setCodebook: codebook");
      const int K = (int)int_arg(info, 1, "setCodebook: K", 1, 1 << 24);
      const int D = (int)int_arg(info, 2, "setCodebook: D", 1, 1 << 16);
      CB_CHECK((int64_t)rows.ElementLength() == int64_t(K) * D,
               "setCodebook: codebook has " + std::to_string(rows.ElementLength()) +
                   " values, expected K * D = " + std::to_string(K) + " * " + std::to_string(D));
      if (f32_) f32_->set_codebook(K, D, rows.Data());
      if (f64_) f64_->set_codebook(K, D, rows.Data());
      return info.Env().Undefined();
    });
  }

  Napi::Value config(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      check_ready();
      Napi::Env env = info.Env();
      return vq_config_object(env, model_config());
    });
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      CB_CHECK(!busy_, "VqNet: another call is still running (await it first)");
      f32_.reset();
      f64_.reset();
      return info.Env().Undefined();
    });
  }

  std::unique_ptr<cb::VqModel<float>> f32_;   // cpu-ref, cpu, cuda
  std::unique_ptr<cb::VqModel<double>> f64_;  // cpu-ref-f64
  bool busy_ = false;
};

}  // namespace

void register_vq(Napi::Env env, Napi::Object exports) {
  exports.Set("VqNet", VqNetWrap::define(env));
}

}  // namespace cbn
