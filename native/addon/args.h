// Reading binding arguments; a wrong argument throws cb::Error naming it, what was expected and
// what it got (and this binding's file and line), which guarded() turns into a JS error. The
// messages never show "undefined", "null" or "[object Object]": a missing value reads "no value".
#pragma once

#include <napi.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "error.h"

namespace cbn {

// What a JS value is, for messages: "the number NaN", "a string", "an object", "no value", ...
inline std::string kind_of(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined:
    case napi_null: return "no value";
    case napi_boolean: return "a boolean";
    case napi_number: return "the number " + cb::format_number(v.As<Napi::Number>().DoubleValue());
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_bigint: return "a bigint";
    case napi_external: return "an external value";
    case napi_object:
      if (v.IsArray()) return "an array";
      if (v.IsTypedArray()) return "a typed array of another type";
      return "an object";
  }
  return "a value of unknown type";
}

inline std::string string_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  CB_CHECK(info[i].IsString(), std::string(name) + " must be a string, got " + kind_of(info[i]));
  return info[i].As<Napi::String>().Utf8Value();
}

inline bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  CB_CHECK(info[i].IsBoolean(), std::string(name) + " must be a boolean, got " + kind_of(info[i]));
  return info[i].As<Napi::Boolean>().Value();
}

// A finite number (NaN and the infinities are refused).
inline double number_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const bool ok = info[i].IsNumber() && std::isfinite(info[i].As<Napi::Number>().DoubleValue());
  CB_CHECK(ok, std::string(name) + " must be a finite number, got " + kind_of(info[i]));
  return info[i].As<Napi::Number>().DoubleValue();
}

// Whether v is an integer in [lo, hi]; the range is checked first, so no cast is out of range.
inline bool integer_in(double v, int64_t lo, int64_t hi) {
  return v >= (double)lo && v <= (double)hi && v == std::floor(v);
}

inline std::string integer_range(int64_t lo, int64_t hi) {
  return "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
}

// An integer in [lo, hi].
inline int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo,
                       int64_t hi) {
  const bool ok = info[i].IsNumber() && integer_in(info[i].As<Napi::Number>().DoubleValue(), lo, hi);
  CB_CHECK(ok, std::string(name) + " must be " + integer_range(lo, hi) + ", got " +
                   kind_of(info[i]));
  return (int64_t)info[i].As<Napi::Number>().DoubleValue();
}

inline Napi::Float32Array float32_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  CB_CHECK(info[i].IsTypedArray() &&
               info[i].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array,
           std::string(name) + " must be a Float32Array, got " + kind_of(info[i]));
  return info[i].As<Napi::Float32Array>();
}

}  // namespace cbn
