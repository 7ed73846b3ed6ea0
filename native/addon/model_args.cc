#include "model_args.h"

#include <climits>
#include <string>

#include "args.h"
#include "error.h"
#include "sample/sampling_settings.h"

namespace cbn {
namespace {

Napi::Value field(const Napi::Object& o, const char* name) {
  CB_CHECK(o.Has(name), std::string("missing field '") + name + "'");
  return o.Get(name);
}

// An int field (in [INT_MIN, INT_MAX]; the value's own range is checked where it is used).
int int_field(const Napi::Object& o, const char* name) {
  const Napi::Value v = field(o, name);
  CB_CHECK(v.IsNumber() && integer_in(v.As<Napi::Number>().DoubleValue(), INT_MIN, INT_MAX),
           std::string("field '") + name + "' must be " + integer_range(INT_MIN, INT_MAX) +
               ", got " + kind_of(v));
  return (int)v.As<Napi::Number>().DoubleValue();
}

// A number field; non-finite values are left to the checks of the engine, which name them.
double number_field(const Napi::Object& o, const char* name) {
  const Napi::Value v = field(o, name);
  CB_CHECK(v.IsNumber(), std::string("field '") + name + "' must be a number, got " + kind_of(v));
  return v.As<Napi::Number>().DoubleValue();
}

bool bool_field(const Napi::Object& o, const char* name) {
  const Napi::Value v = field(o, name);
  CB_CHECK(v.IsBoolean(), std::string("field '") + name + "' must be a boolean, got " + kind_of(v));
  return v.As<Napi::Boolean>().Value();
}

constexpr size_t kAnyLength = ~size_t(0);

// A copy of a typed-array field of `expected` values (kAnyLength: any length).
template <typename TypedArray, typename Value>
std::vector<Value> typed_field(const Napi::Object& o, const char* name, napi_typedarray_type type,
                               const char* type_name, size_t expected) {
  const Napi::Value v = field(o, name);
  CB_CHECK(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == type,
           std::string("field '") + name + "' must be " + type_name + ", got " + kind_of(v));
  TypedArray a = v.As<TypedArray>();
  if (expected == kAnyLength) expected = a.ElementLength();
  CB_CHECK(a.ElementLength() == expected, std::string("field '") + name + "' has " +
                                              std::to_string(a.ElementLength()) +
                                              " values, expected " + std::to_string(expected));
  return std::vector<Value>(a.Data(), a.Data() + expected);
}

}  // namespace

cb::ModelConfig parse_model_config(const Napi::Value& value) {
  CB_CHECK(value.IsObject(), "model config must be an object, got " + kind_of(value));
  const Napi::Object o = value.As<Napi::Object>();
  cb::ModelConfig c;
  c.vocab = int_field(o, "vocab");
  c.latent_dim = int_field(o, "latentDim");
  c.classes = int_field(o, "classes");
  c.depth = int_field(o, "depth");
  c.width = int_field(o, "width");
  c.heads = int_field(o, "heads");
  c.mlp_ratio = int_field(o, "mlpRatio");
  c.rope_mix_layers = int_field(o, "ropeMixLayers");
  const Napi::Value scales = field(o, "scales");
  CB_CHECK(scales.IsArray(), "field 'scales' must be an array, got " + kind_of(scales));
  const Napi::Array a = scales.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    const Napi::Value s = a.Get(i);
    CB_CHECK(s.IsNumber() && integer_in(s.As<Napi::Number>().DoubleValue(), 1, INT_MAX),
             "field 'scales' must hold integers in [1, " + std::to_string(INT_MAX) + "], got " +
                 kind_of(s) + " at index " + std::to_string(i));
    c.scales.push_back((int)s.As<Napi::Number>().DoubleValue());
  }
  c.validate();
  return c;
}

cb::Batch<float> parse_batch(const Napi::Value& value, int64_t codes_per_row) {
  CB_CHECK(value.IsObject(), "batch must be an object, got " + kind_of(value));
  const Napi::Object o = value.As<Napi::Object>();
  cb::Batch<float> b;
  b.B = int_field(o, "batch");
  b.T = int_field(o, "slots");
  CB_CHECK(b.B >= 1 && b.T >= 1, "batch: batch and slots must be at least 1");
  const size_t n = size_t(b.B) * b.T;
  b.labels = typed_field<Napi::Int32Array, int32_t>(o, "labels", napi_int32_array, "an Int32Array", b.B);
  b.pos_p = typed_field<Napi::Int32Array, int32_t>(o, "posP", napi_int32_array, "an Int32Array", n);
  b.pos_q = typed_field<Napi::Int32Array, int32_t>(o, "posQ", napi_int32_array, "an Int32Array", n);
  b.codes = typed_field<Napi::Int32Array, int32_t>(o, "codes", napi_int32_array, "an Int32Array",
                                                   size_t(b.B) * codes_per_row);
  b.targets = typed_field<Napi::Int32Array, int32_t>(o, "targets", napi_int32_array, "an Int32Array", n);
  b.visible_end = typed_field<Napi::Int32Array, int32_t>(o, "visibleEnd", napi_int32_array,
                                                         "an Int32Array", b.T);
  // Optional: the token count the loss's gradient is divided by (Batch::loss_tokens).
  const Napi::Value loss_tokens = o.Get("lossTokens");
  if (!loss_tokens.IsUndefined()) {
    CB_CHECK(loss_tokens.IsNumber() && loss_tokens.As<Napi::Number>().DoubleValue() >= 1 &&
                 loss_tokens.As<Napi::Number>().DoubleValue() < 9007199254740992.0,
             "batch: lossTokens must be a positive integer, got " + kind_of(loss_tokens));
    b.loss_tokens = int64_t(loss_tokens.As<Napi::Number>().DoubleValue());
  }
  return b;
}

cb::SampleRequest parse_sample_request(const Napi::Value& value) {
  CB_CHECK(value.IsObject(), "sample request must be an object, got " + kind_of(value));
  const Napi::Object o = value.As<Napi::Object>();
  auto ints = [&](const char* name) {
    return typed_field<Napi::Int32Array, int32_t>(o, name, napi_int32_array, "an Int32Array",
                                                  kAnyLength);
  };
  cb::SampleRequest r;
  r.labels = ints("labels");
  r.image_index = ints("imageIndex");
  r.block_start = ints("blockStart");
  r.block_end = ints("blockEnd");
  r.block_scale = ints("blockScale");
  r.pos_of = ints("posOf");
  r.prev_pos_of = ints("prevPosOf");
  const double guidance = number_field(o, "guidance");
  const double guidance_start = number_field(o, "guidanceStart");
  const double temperature = number_field(o, "temperature");
  const double top_k = number_field(o, "topK");
  const double top_p = number_field(o, "topP");
  // Checked before they are narrowed (a NaN or huge double has no int value); the engine's
  // check_request checks them again, with the same messages.
  cb::check_sampling_settings(guidance, guidance_start, temperature, top_k, top_p);
  r.guidance = (float)guidance;
  r.guidance_start = (int)guidance_start;
  r.sampling.temperature = (float)temperature;
  r.sampling.top_k = (int)top_k;
  r.sampling.top_p = (float)top_p;
  const double seed = number_field(o, "seed");
  CB_CHECK(integer_in(seed, 0, (int64_t(1) << 53) - 1),
           "sample: seed must be an integer in [0, 2^53), got " + cb::format_number(seed));
  r.sampling.seed = (uint64_t)seed;
  r.want_entropy = bool_field(o, "entropy");
  r.want_step_codes = bool_field(o, "stepCodes");
  r.want_logits = bool_field(o, "logits");
  return r;
}

const char* init_name(cb::Init init) {
  switch (init) {
    case cb::Init::Normal: return "normal";
    case cb::Init::Zeros: return "zeros";
    case cb::Init::RopeAxial: return "rope-axial";
  }
  return "unknown";
}

bool has_precision_arg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && !info[i].IsUndefined();
}

cb::Precision precision_arg(const Napi::CallbackInfo& info, size_t i) {
  CB_CHECK(info[i].IsString(), "Model: precision must be \"fp32\" or \"bf16\", got " +
                                   kind_of(info[i]));
  return cb::parse_precision(info[i].As<Napi::String>().Utf8Value());
}

}  // namespace cbn
