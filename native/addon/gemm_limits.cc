// gemmLimits({size?, seconds?, readMiB?}) -> Promise<limits>: this machine's limits for the
// reports (engine/cpu/machine_limits.h), measured in one call on a worker thread:
//   {threads, size, fp32: [{path, gflops, seconds, runs}], fp32Peak: {path, gflops},
//    fp32Rule, bf16: {path, gflops, seconds, runs} | null, bf16Unavailable (why, or ""),
//    readGBps, readBytes, readPasses, cpu, onednn}
// size: the GEMM's m = n = k (default 4096); seconds: the time box of each measurement
// (default 2); readMiB: the bandwidth buffer (default 1024). One call at a time.
#include <memory>
#include <string>

#include "args.h"
#include "bindings.h"
#include "cpu/machine_limits.h"
#include "errors.h"
#include "promise_worker.h"

namespace cbn {
namespace {

bool g_busy = false;  // a measurement in flight (they would time each other)

Napi::Object rate_object(Napi::Env env, const cb::GemmRate& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", r.path);
  o.Set("gflops", r.gflops);
  o.Set("seconds", r.seconds);
  o.Set("runs", r.runs);
  return o;
}

// An optional positive number field of the options object.
double option(const Napi::Object& o, const char* name, double fallback, double lo, double hi) {
  if (!o.Has(name) || o.Get(name).IsUndefined()) return fallback;
  const Napi::Value v = o.Get(name);
  CB_CHECK(v.IsNumber(), std::string("gemmLimits: ") + name + " must be a number, got " +
                             kind_of(v));
  const double x = v.As<Napi::Number>().DoubleValue();
  CB_CHECK(x >= lo && x <= hi, std::string("gemmLimits: ") + name + " must be in [" +
                                   cb::format_number(lo) + ", " + cb::format_number(hi) +
                                   "], got " + cb::format_number(x));
  return x;
}

}  // namespace

Napi::Value gemm_limits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    CB_CHECK(info.Length() <= 1, "gemmLimits takes at most one argument (an options object)");
    cb::LimitOptions options;
    if (info.Length() == 1 && !info[0].IsUndefined()) {
      CB_CHECK(info[0].IsObject(), "gemmLimits: options must be an object, got " +
                                       kind_of(info[0]));
      const Napi::Object o = info[0].As<Napi::Object>();
      options.gemm_size = (int)option(o, "size", options.gemm_size, 1, 16384);
      options.seconds_each = option(o, "seconds", options.seconds_each, 0.01, 60);
      options.read_bytes =
          int64_t(option(o, "readMiB", double(options.read_bytes >> 20), 1, 65536)) << 20;
    }
    CB_CHECK(!g_busy, "gemmLimits: another measurement is still running (await it first)");
    auto limits = std::make_shared<cb::MachineLimits>();
    auto* worker = new PromiseWorker(
        env, "checkerboard.gemmLimits", &g_busy,
        [limits, options] { *limits = cb::measure_machine_limits(options); },
        [limits](Napi::Env e) -> Napi::Value {
          const cb::MachineLimits& lim = *limits;
          Napi::Object out = Napi::Object::New(e);
          out.Set("threads", lim.threads);
          out.Set("size", lim.gemm_size);
          Napi::Array fp32 = Napi::Array::New(e, lim.fp32.size());
          for (size_t i = 0; i < lim.fp32.size(); i++) fp32.Set(i, rate_object(e, lim.fp32[i]));
          out.Set("fp32", fp32);
          Napi::Object peak = Napi::Object::New(e);
          peak.Set("path", lim.fp32_best.path);
          peak.Set("gflops", lim.fp32_best.gflops);
          out.Set("fp32Peak", peak);
          out.Set("fp32Rule", lim.fp32_rule);
          out.Set("bf16", lim.bf16_available ? Napi::Value(rate_object(e, lim.bf16)) : e.Null());
          out.Set("bf16Unavailable", lim.bf16_unavailable);
          out.Set("readGBps", lim.read_gb_per_s);
          out.Set("readBytes", double(lim.read_bytes));
          out.Set("readPasses", lim.read_passes);
          out.Set("cpu", lim.cpu_features);
          out.Set("onednn", lim.onednn);
          return out;
        });
    Napi::Promise promise = worker->promise();
    worker->Queue();  // the worker deletes itself when done
    return promise;
  });
}

}  // namespace cbn
