// The multi-process functions of the addon (engine/dist/communicator.h), all synchronous:
//   distLaunch() -> {rank, world, localRank, localWorld, launcher}   the environment only
//   distSupport() -> {mpi, mpiLibrary, mpiWhyNot, nccl: {loaded, version, path, whyNot}}
//   distInit() -> {rank, world, supported, whyNot}                    MPI_Init when world > 1
//   distAllReduce(Float64Array)        in place: the sum over the ranks
//   distBroadcast(Uint8Array, root)    in place: root's bytes everywhere
//   distGather(Uint8Array) -> Uint8Array   every rank's bytes on rank 0 (empty elsewhere)
//   distBarrier()  distAbort(code)  distFinalize()
//   distCounters() -> {calls, bytes, seconds}   of the gradient collectives so far
//   distTransport(device) -> "mpi" | "nccl" | "mpi (host copies: ...)"
#include <napi.h>

#include "args.h"
#include "bindings.h"
#include "dist/communicator.h"
#include "dist/nccl_library.h"
#include "errors.h"

namespace cbn {
namespace {

cb::Communicator& comm() {
  cb::Communicator* c = cb::dist_communicator();
  CB_CHECK(c != nullptr, "this process is not one of several ranks (distInit first)");
  return *c;
}

Napi::Value dist_launch(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const cb::LaunchInfo l = cb::launch_info();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("rank", l.rank);
    o.Set("world", l.world);
    o.Set("localRank", l.local_rank);
    o.Set("localWorld", l.local_world);
    o.Set("launcher", l.launcher);
    return o;
  });
}

// What `checkerboard info` shows: MPI in this build, and whether NCCL loads here.
Napi::Value dist_support(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    std::string why;
    Napi::Object o = Napi::Object::New(env);
    o.Set("mpi", cb::dist_supported(&why));
    o.Set("mpiLibrary", cb::mpi_library_version());
    o.Set("mpiWhyNot", why);
    std::string nccl_why;
    const cb::NcclLibrary* nccl = cb::nccl_library(&nccl_why);
    Napi::Object n = Napi::Object::New(env);
    n.Set("loaded", nccl != nullptr);
    n.Set("version", nccl != nullptr ? nccl->version : 0);
    n.Set("path", nccl != nullptr ? nccl->path : "");
    n.Set("whyNot", nccl_why);
    o.Set("nccl", n);
    return o;
  });
}

Napi::Value dist_init(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::string why;
    const bool supported = cb::dist_supported(&why);
    cb::Communicator* c = cb::dist_init();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("rank", c ? c->rank() : 0);
    o.Set("world", c ? c->world() : 1);
    o.Set("supported", supported);
    o.Set("whyNot", why);
    return o;
  });
}

Napi::Value dist_all_reduce(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    CB_CHECK(info[0].IsTypedArray() &&
                 info[0].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array,
             "distAllReduce: values must be a Float64Array, got " + kind_of(info[0]));
    Napi::Float64Array v = info[0].As<Napi::Float64Array>();
    comm().all_reduce_host(v.Data(), int64_t(v.ElementLength()));
    return info.Env().Undefined();
  });
}

Napi::Uint8Array bytes_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  CB_CHECK(info[i].IsTypedArray() &&
               info[i].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array,
           std::string(name) + " must be a Uint8Array, got " + kind_of(info[i]));
  return info[i].As<Napi::Uint8Array>();
}

Napi::Value dist_broadcast(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Uint8Array bytes = bytes_arg(info, 0, "distBroadcast: bytes");
    const int root = int(int_arg(info, 1, "distBroadcast: root", 0, comm().world() - 1));
    comm().broadcast(bytes.Data(), int64_t(bytes.ByteLength()), root);
    return info.Env().Undefined();
  });
}

Napi::Value dist_gather(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Uint8Array bytes = bytes_arg(info, 0, "distGather: bytes");
    const std::vector<uint8_t> all = comm().gather(bytes.Data(), int64_t(bytes.ByteLength()));
    Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), all.size());
    std::copy(all.begin(), all.end(), out.Data());
    return out;
  });
}

Napi::Value dist_barrier(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    comm().barrier();
    return info.Env().Undefined();
  });
}

Napi::Value dist_abort(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    comm().abort(int(int_arg(info, 0, "distAbort: code", 1, 255)));
    return info.Env().Undefined();  // not reached
  });
}

Napi::Value dist_finalize(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    cb::dist_finalize();
    return info.Env().Undefined();
  });
}

Napi::Value dist_counters(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const cb::Communicator::Counters& k = comm().counters();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("calls", double(k.calls));
    o.Set("bytes", k.bytes);
    o.Set("seconds", k.seconds);
    return o;
  });
}

Napi::Value dist_transport(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string device = string_arg(info, 0, "distTransport: device");
    CB_CHECK(device == "cpu" || device == "cuda",
             "distTransport: device must be cpu or cuda, got '" + device + "'");
    return Napi::String::New(info.Env(), comm().transport(device == "cuda"));
  });
}

}  // namespace

void register_dist(Napi::Env env, Napi::Object exports) {
  exports.Set("distLaunch", Napi::Function::New(env, dist_launch, "distLaunch"));
  exports.Set("distSupport", Napi::Function::New(env, dist_support, "distSupport"));
  exports.Set("distInit", Napi::Function::New(env, dist_init, "distInit"));
  exports.Set("distAllReduce", Napi::Function::New(env, dist_all_reduce, "distAllReduce"));
  exports.Set("distBroadcast", Napi::Function::New(env, dist_broadcast, "distBroadcast"));
  exports.Set("distGather", Napi::Function::New(env, dist_gather, "distGather"));
  exports.Set("distBarrier", Napi::Function::New(env, dist_barrier, "distBarrier"));
  exports.Set("distAbort", Napi::Function::New(env, dist_abort, "distAbort"));
  exports.Set("distFinalize", Napi::Function::New(env, dist_finalize, "distFinalize"));
  exports.Set("distCounters", Napi::Function::New(env, dist_counters, "distCounters"));
  exports.Set("distTransport", Napi::Function::New(env, dist_transport, "distTransport"));
}

}  // namespace cbn
