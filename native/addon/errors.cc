#include "errors.h"

#include "error.h"

namespace cbn {

Failure describe(std::exception_ptr error, const char* file, int line) {
  try {
    std::rethrow_exception(error);
  } catch (const cb::Error& e) {
    return {e.what(), e.file(), e.line()};
  } catch (const std::exception& e) {
    return {e.what(), cb::source_path(file), line};
  } catch (...) {
    return {"unknown native exception", cb::source_path(file), line};
  }
}

Napi::Error to_js_error(Napi::Env env, const Failure& failure) {
  const std::string where = failure.file + ":" + std::to_string(failure.line);
  Napi::Error error = Napi::Error::New(env, failure.message + " (" + where + ")");
  error.Set("nativeFile", Napi::String::New(env, failure.file));
  error.Set("nativeLine", Napi::Number::New(env, failure.line));
  return error;
}

}  // namespace cbn
