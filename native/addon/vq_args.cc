// The arguments the VQ classes of the addon share (vq_args.h).
#include "vq_args.h"

#include <string>

#include "args.h"
#include "error.h"

namespace cbn {

static int int_field(const Napi::Object& o, const char* name, int lo, int hi) {
  const Napi::Value v = o.Get(name);
  CB_CHECK(v.IsNumber() && integer_in(v.As<Napi::Number>().DoubleValue(), lo, hi),
           std::string("VqNet config: field '") + name + "' must be " + integer_range(lo, hi) +
               ", got " + kind_of(v));
  return (int)v.As<Napi::Number>().DoubleValue();
}

cb::VqConfig parse_vq_config(const Napi::Value& value) {
  CB_CHECK(value.IsObject(), "VqNet: config must be an object, got " + kind_of(value));
  const Napi::Object o = value.As<Napi::Object>();
  cb::VqConfig c;
  c.ch = int_field(o, "ch", 1, 1 << 16);
  const Napi::Value mult = o.Get("chMult");
  CB_CHECK(mult.IsArray(), "VqNet config: field 'chMult' must be an array, got " + kind_of(mult));
  const Napi::Array m = mult.As<Napi::Array>();
  c.ch_mult.clear();
  for (uint32_t i = 0; i < m.Length(); i++) {
    const Napi::Value x = m.Get(i);
    CB_CHECK(x.IsNumber() && integer_in(x.As<Napi::Number>().DoubleValue(), 1, 64),
             "VqNet config: chMult entries must be " + integer_range(1, 64) + ", got " + kind_of(x));
    c.ch_mult.push_back((int)x.As<Napi::Number>().DoubleValue());
  }
  c.z_channels = int_field(o, "zChannels", 1, 1 << 16);
  c.codebook_size = int_field(o, "codes", 1, 1 << 24);
  c.code_dim = int_field(o, "codeDim", 1, 1 << 16);
  c.encoder_blocks = int_field(o, "encoderBlocks", 1, 64);
  c.decoder_blocks = int_field(o, "decoderBlocks", 1, 64);
  c.validate();
  return c;
}

cb::HostTensors parse_vq_tensors(const Napi::Object& o) {
  cb::HostTensors out;
  const Napi::Array names = o.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
    const Napi::Value t = o.Get(name);
    CB_CHECK(t.IsObject(), "VqNet: tensor '" + name + "' must be {shape, data}, got " + kind_of(t));
    const Napi::Value shape = t.As<Napi::Object>().Get("shape");
    const Napi::Value data = t.As<Napi::Object>().Get("data");
    CB_CHECK(shape.IsArray(), "VqNet: tensor '" + name + "': shape must be an array, got " +
                                  kind_of(shape));
    CB_CHECK(data.IsTypedArray() && data.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array,
             "VqNet: tensor '" + name + "': data must be a Float32Array, got " + kind_of(data));
    cb::HostTensor h;
    int64_t count = 1;
    const Napi::Array dims = shape.As<Napi::Array>();
    for (uint32_t d = 0; d < dims.Length(); d++) {
      const Napi::Value x = dims.Get(d);
      CB_CHECK(x.IsNumber() && integer_in(x.As<Napi::Number>().DoubleValue(), 0, int64_t(1) << 31),
               "VqNet: tensor '" + name + "': shape entries must be non-negative integers");
      h.shape.push_back((int64_t)x.As<Napi::Number>().DoubleValue());
      count *= h.shape.back();
      CB_CHECK(count <= (int64_t(1) << 40), "VqNet: tensor '" + name + "' is too large");
    }
    const Napi::Float32Array values = data.As<Napi::Float32Array>();
    CB_CHECK((int64_t)values.ElementLength() == count,
             "VqNet: tensor '" + name + "' has " + std::to_string(values.ElementLength()) +
                 " values, its shape " + cb::shape_text(h.shape) + " needs " + std::to_string(count));
    h.data = values.Data();
    out[name] = h;
  }
  return out;
}

Napi::Object vq_config_object(Napi::Env env, const cb::VqConfig& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ch", Napi::Number::New(env, c.ch));
  Napi::Array mult = Napi::Array::New(env, c.ch_mult.size());
  for (size_t i = 0; i < c.ch_mult.size(); i++) mult.Set(i, Napi::Number::New(env, c.ch_mult[i]));
  o.Set("chMult", mult);
  o.Set("zChannels", Napi::Number::New(env, c.z_channels));
  o.Set("codes", Napi::Number::New(env, c.codebook_size));
  o.Set("codeDim", Napi::Number::New(env, c.code_dim));
  o.Set("encoderBlocks", Napi::Number::New(env, c.encoder_blocks));
  o.Set("decoderBlocks", Napi::Number::New(env, c.decoder_blocks));
  return o;
}

}  // namespace cbn
