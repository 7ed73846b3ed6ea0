// The checkerboard Node-API addon: a thin binding over the engine library (native/engine).
#include <napi.h>

#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "bindings.h"
#include "work_tracker.h"

namespace cbn {
namespace {

// glibc gives every thread that allocates its own arena (up to 8 per core), and keeps what each
// arena once held. sharp's decoder threads and the engine's workers allocate side by side, so a
// long `data` run's peak memory crept up with the dataset's length though nothing is kept. Here,
// at load time, the threads that Deno and V8 started have their arenas already: this caps the
// ones made after. The launchers (deno.json's task, dist/checkerboard) also set
// MALLOC_ARENA_MAX=1 before the process starts. MALLOC_ARENA_MAX set by the user wins.
void limit_malloc_arenas() {
#if defined(__GLIBC__) && defined(M_ARENA_MAX)
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
#endif
}

// streamingMalloc(): for a long streaming job (`data`). glibc raises its mmap threshold each time
// a large block is freed, so image buffers (a decoded 256 px square is 192 KiB) move from mmap
// into the arenas and fragment them (patch tokenizer, 64 px: peak 290 MiB at 1,000 images, 390
// at 5,000). A fixed 64 KiB threshold sends image-sized blocks straight back to the system when
// freed; with src/util/memory.ts's settleMemory it keeps the peak flat. Not set at load time:
// every block over 64 KiB then costs an mmap, page faults and an munmap, which made KV-cached
// sampling 1.7x slower (S, batch 16: 812 against 476 ms per image, measured). A
// MALLOC_MMAP_THRESHOLD_ set by the user wins. Returns whether the threshold was set.
Napi::Value streaming_malloc(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD)
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr) return Napi::Boolean::New(info.Env(), false);
  return Napi::Boolean::New(info.Env(), mallopt(M_MMAP_THRESHOLD, 64 * 1024) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// releaseFreeMemory(): hands the free pages of every malloc arena back to the system
// (malloc_trim). A long streaming run calls it between batches: blocks freed by sharp's decoder
// threads and the engine's workers leave holes in the arenas that glibc keeps resident, so
// without it the peak crept up with the run's length though nothing is kept. Returns whether
// any memory was released (always false without glibc).
Napi::Value release_free_memory(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

}  // namespace

Napi::Object init(Napi::Env env, Napi::Object exports) {
  limit_malloc_arenas();
  WorkTracker::install(env);
  exports.Set("buildInfo", Napi::Function::New(env, build_info, "buildInfo"));
  exports.Set("cudaStatus", Napi::Function::New(env, cuda_status, "cudaStatus"));
  exports.Set("setThreads", Napi::Function::New(env, set_threads, "setThreads"));
  exports.Set("gemm", Napi::Function::New(env, gemm, "gemm"));
  exports.Set("nearestCodes", Napi::Function::New(env, nearest_codes, "nearestCodes"));
  exports.Set("linearSeconds", Napi::Function::New(env, linear_seconds, "linearSeconds"));
  exports.Set("gemmLimits", Napi::Function::New(env, gemm_limits, "gemmLimits"));
  exports.Set("whenIdle", Napi::Function::New(env, when_idle, "whenIdle"));
  exports.Set("streamingMalloc", Napi::Function::New(env, streaming_malloc, "streamingMalloc"));
  exports.Set("releaseFreeMemory",
              Napi::Function::New(env, release_free_memory, "releaseFreeMemory"));
  register_model(env, exports);
  register_vq(env, exports);
  register_vq_trainer(env, exports);
  register_dist(env, exports);
  return exports;
}

}  // namespace cbn

// NODE_API_MODULE pastes the name into an identifier, so it needs an unqualified one.
static Napi::Object init_module(Napi::Env env, Napi::Object exports) {
  return cbn::init(env, exports);
}
NODE_API_MODULE(checkerboard, init_module)
