// An async call of a class binding as a promise: `work` runs on a worker thread, then `done`
// builds the resolved value on the JS thread. A throw in either rejects the promise with the
// failure as a JS error (errors.h). `*busy` is true from construction until the promise is
// settled, so the binding can refuse every other call meanwhile (its object is never used from
// two threads). `owner`, when given, is the binding's JS object, held until then so that it
// cannot be collected mid-call.
#pragma once

#include <napi.h>

#include <functional>
#include <utility>

#include "errors.h"
#include "work_tracker.h"

namespace cbn {

class PromiseWorker : public TrackedWorker<Napi::AsyncWorker> {
 public:
  PromiseWorker(Napi::Env env, const char* resource_name, bool* busy, std::function<void()> work,
                std::function<Napi::Value(Napi::Env)> done, Napi::Object owner = Napi::Object())
      : TrackedWorker(env, resource_name),
        deferred_(Napi::Promise::Deferred::New(env)),
        busy_(busy),
        work_(std::move(work)),
        done_(std::move(done)) {
    if (!owner.IsEmpty()) owner_ = Napi::Persistent(owner);
    *busy_ = true;
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (...) {
      failure_ = describe(std::current_exception(), __FILE__, __LINE__);
      SetError(failure_.message);
    }
  }
  void OnOK() override {
    *busy_ = false;
    try {
      deferred_.Resolve(done_(Env()));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(
          to_js_error(Env(), describe(std::current_exception(), __FILE__, __LINE__)).Value());
    }
  }
  void OnError(const Napi::Error&) override {
    *busy_ = false;
    deferred_.Reject(to_js_error(Env(), failure_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference owner_;
  bool* busy_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  Failure failure_;
};

}  // namespace cbn
