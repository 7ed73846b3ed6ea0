#include "work_tracker.h"

#include "error.h"
#include "errors.h"

namespace cbn {

void WorkTracker::install(Napi::Env env) { env.SetInstanceData(new WorkTracker()); }

WorkTracker& WorkTracker::of(Napi::Env env) {
  WorkTracker* tracker = env.GetInstanceData<WorkTracker>();
  CB_CHECK(tracker != nullptr, "the addon's work tracker is not installed");
  return *tracker;
}

void WorkTracker::finished(Napi::Env env) {
  if (running_ > 0) running_--;
  if (running_ > 0 || waiters_.empty()) return;
  Napi::HandleScope scope(env);
  std::vector<Napi::Promise::Deferred> waiters;
  waiters.swap(waiters_);
  for (auto& w : waiters) w.Resolve(env.Undefined());
}

Napi::Promise WorkTracker::when_idle(Napi::Env env) {
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  if (running_ == 0) {
    deferred.Resolve(env.Undefined());
  } else {
    waiters_.push_back(deferred);
  }
  return deferred.Promise();
}

Napi::Value when_idle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value { return WorkTracker::of(env).when_idle(env); });
}

}  // namespace cbn
