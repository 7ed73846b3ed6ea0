// The checkerboard Node-API addon: a thin binding over the engine library (native/engine).
#include <napi.h>

#include "bindings.h"
#include "work_tracker.h"

namespace cbn {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  WorkTracker::install(env);
  exports.Set("buildInfo", Napi::Function::New(env, build_info, "buildInfo"));
  exports.Set("cudaStatus", Napi::Function::New(env, cuda_status, "cudaStatus"));
  exports.Set("setThreads", Napi::Function::New(env, set_threads, "setThreads"));
  exports.Set("gemm", Napi::Function::New(env, gemm, "gemm"));
  exports.Set("nearestCodes", Napi::Function::New(env, nearest_codes, "nearestCodes"));
  exports.Set("linearSeconds", Napi::Function::New(env, linear_seconds, "linearSeconds"));
  exports.Set("whenIdle", Napi::Function::New(env, when_idle, "whenIdle"));
  register_model(env, exports);
  register_vq(env, exports);
  return exports;
}

}  // namespace cbn

// NODE_API_MODULE pastes the name into an identifier, so it needs an unqualified one.
static Napi::Object init_module(Napi::Env env, Napi::Object exports) {
  return cbn::init(env, exports);
}
NODE_API_MODULE(checkerboard, init_module)
