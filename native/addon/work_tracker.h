// The addon's async calls in flight, so that JS can wait for them before the process exits.
// exit() runs the static destructors of every loaded library (OpenBLAS's, the CUDA runtime's,
// the C++ runtime's) while a worker thread may still be computing under them, which crashes
// the process (SIGSEGV) after its last line was printed. `whenIdle()` resolves once no worker
// of this addon is running; src/engine.ts's settleNativeWork awaits it before Deno.exit.
#pragma once

#include <napi.h>

#include <vector>

namespace cbn {

// One per Node-API environment (its instance data); used on the JS thread only.
class WorkTracker {
 public:
  static void install(Napi::Env env);  // addon.cc, once per environment
  static WorkTracker& of(Napi::Env env);

  void started() { running_++; }
  // A worker's Execute has returned: resolves the waiters when none is left.
  void finished(Napi::Env env);
  Napi::Promise when_idle(Napi::Env env);

 private:
  int running_ = 0;
  std::vector<Napi::Promise::Deferred> waiters_;
};

// A Napi worker counted by the environment's WorkTracker from construction until its work is
// complete: its Execute has returned and, for a plain AsyncWorker, OnOK / OnError have settled
// its promise (a progress worker settles its promise a little later, once its queued progress
// calls have run; no native thread is busy with it by then).
template <typename Base>
class TrackedWorker : public Base {
 public:
  TrackedWorker(Napi::Env env, const char* resource_name) : Base(env, resource_name) {
    WorkTracker::of(env).started();
  }

 protected:
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    WorkTracker& tracker = WorkTracker::of(env);  // outlives this worker
    Base::OnWorkComplete(env, status);  // OnOK / OnError, then this worker deletes itself
    tracker.finished(env);
  }
};

// whenIdle() -> Promise<void>: resolves once no async call of this addon is running.
Napi::Value when_idle(const Napi::CallbackInfo& info);

}  // namespace cbn
