// Reading binding arguments; a wrong argument throws cb::Error naming it (and this binding's
// file and line), which guarded() turns into a JS error.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "error.h"

namespace cbn {

inline std::string string_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  CB_CHECK(info[i].IsString(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

inline bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  CB_CHECK(info[i].IsBoolean(), std::string(name) + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

inline double number_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  CB_CHECK(info[i].IsNumber(), std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

// An integer in [lo, hi].
inline int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo,
                       int64_t hi) {
  const double v = number_arg(info, i, name);
  CB_CHECK(v == (double)(int64_t)v && v >= (double)lo && v <= (double)hi,
           std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " +
               std::to_string(hi) + "], got " + std::to_string(v));
  return (int64_t)v;
}

inline Napi::Float32Array float32_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  CB_CHECK(info[i].IsTypedArray() &&
               info[i].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array,
           std::string(name) + " must be a Float32Array");
  return info[i].As<Napi::Float32Array>();
}

}  // namespace cbn
