// Host vectors handed to JS: a new typed array holding a copy of the values (Float32Array for
// float, Float64Array for double, Int32Array for int32_t, ...).
#pragma once

#include <napi.h>

#include <cstring>
#include <vector>

namespace cbn {

template <typename T>
Napi::TypedArrayOf<T> typed_copy(Napi::Env env, const std::vector<T>& values) {
  Napi::TypedArrayOf<T> out = Napi::TypedArrayOf<T>::New(env, values.size());
  // An empty vector's data() may be null, which memcpy must not be given.
  if (!values.empty()) std::memcpy(out.Data(), values.data(), values.size() * sizeof(T));
  return out;
}

}  // namespace cbn
