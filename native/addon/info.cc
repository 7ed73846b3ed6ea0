// buildInfo() and cudaStatus(): plain objects describing the build and the GPUs;
// setThreads(n): the cpu backend's threads, OpenBLAS's included (0: one per hardware thread).
#include "build_info.h"
#include "args.h"
#include "bindings.h"
#include "cpu/parallel.h"
#include "cuda/cuda.h"
#include "errors.h"
#include "model/backends.h"
#include "ops.h"

namespace cbn {

Napi::Value build_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const cb::BuildInfo b = cb::build_info();
    Napi::Object out = Napi::Object::New(env);
    out.Set("version", b.version);
    out.Set("buildType", b.build_type);
    out.Set("compiler", b.compiler);
    out.Set("cxxFlags", b.cxx_flags);
    out.Set("blas", b.blas);
    out.Set("blasConfig", b.blas_config);
    out.Set("blasThreads", b.blas_threads);
    out.Set("cudaCompiled", b.cuda_compiled);
    out.Set("cudaCompiler", b.cuda_compiler);
    out.Set("cudaFlags", b.cuda_flags);
    out.Set("cudaArchitectures", b.cuda_architectures);
    Napi::Array backends = Napi::Array::New(env);
    for (const auto& name : cb::backend_names()) backends.Set(backends.Length(), name);
    out.Set("backends", backends);
    Napi::Array model_backends = Napi::Array::New(env);
    for (const auto& name : cb::model_backend_names()) {
      model_backends.Set(model_backends.Length(), name);
    }
    out.Set("modelBackends", model_backends);
    return out;
  });
}

Napi::Value cuda_status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const cb::CudaStatus s = cb::cuda_status();
    Napi::Object out = Napi::Object::New(env);
    out.Set("compiled", s.compiled);
    out.Set("available", s.available);
    if (!s.available) out.Set("reason", s.reason);
    out.Set("runtimeVersion", s.runtime_version);
    out.Set("driverVersion", s.driver_version);
    Napi::Array devices = Napi::Array::New(env);
    for (const auto& d : s.devices) {
      Napi::Object dev = Napi::Object::New(env);
      dev.Set("name", d.name);
      dev.Set("memoryBytes", (double)d.memory_bytes);
      dev.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      devices.Set(devices.Length(), dev);
    }
    out.Set("devices", devices);
    return out;
  });
}

Napi::Value set_threads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    // setThreads(threads, splitThreads?): splitThreads, the count products are cut for,
    // defaults to threads (parallel.h, cpu_split_threads).
    const int split = info.Length() > 1 && !info[1].IsUndefined()
                          ? (int)int_arg(info, 1, "splitThreads", 0, 1024)
                          : -1;
    cb::set_cpu_threads((int)int_arg(info, 0, "threads", 0, 1024), split);
    return Napi::Number::New(env, cb::cpu_threads());
  });
}

}  // namespace cbn
