// Native failures as JavaScript errors: every C++ exception thrown inside a binding becomes a JS
// Error whose message ends with " (native/...:LINE)" and which has `nativeFile` and `nativeLine`.
#pragma once

#include <napi.h>

#include <exception>
#include <string>

namespace cbn {

// What a native failure said and where: kept as plain data so it can cross threads.
struct Failure {
  std::string message;
  std::string file;
  int line = 0;
};

// Describes the exception `error` (cb::Error keeps its own file and line; anything else is
// attributed to the binding that caught it, `file`/`line`).
Failure describe(std::exception_ptr error, const char* file, int line);

Napi::Error to_js_error(Napi::Env env, const Failure& failure);

// Calls fn() and rethrows any C++ exception as the JS error above. Every binding runs in this.
template <typename Fn>
Napi::Value guarded(Napi::Env env, Fn fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;  // already a JS error
  } catch (...) {
    throw to_js_error(env, describe(std::current_exception(), __FILE__, __LINE__));
  }
}

}  // namespace cbn
