// nearestCodes(backend, points, n, d, codebook, k, chunkRows?) -> Promise<{index, dist2}>.
// The inputs are copied, so the JS arrays may change (or be detached) while the search runs on
// a worker thread; the results are copied into new typed arrays on the JS thread.
#include <climits>
#include <cstring>
#include <vector>

#include "args.h"
#include "bindings.h"
#include "errors.h"
#include "ops.h"
#include "work_tracker.h"

namespace cbn {
namespace {

class NearestCodesWorker : public TrackedWorker<Napi::AsyncWorker> {
 public:
  // points and codebook hold points_len and codebook_len values (n * d and k * d when the
  // sizes are valid; otherwise the engine rejects the sizes before reading any data).
  NearestCodesWorker(Napi::Env env, std::string backend, const float* points, size_t points_len,
                     int64_t n, int d, const float* codebook, size_t codebook_len, int k,
                     int64_t chunk_rows)
      : TrackedWorker(env, "checkerboard.nearestCodes"),
        deferred_(Napi::Promise::Deferred::New(env)),
        backend_(std::move(backend)),
        points_(points, points + points_len),
        codebook_(codebook, codebook + codebook_len),
        n_(n), d_(d), k_(k), chunk_rows_(chunk_rows) {}

  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {  // worker thread: no JS here
    try {
      const int64_t rows = d_ >= 1 && k_ >= 1 ? n_ : 0;  // bad sizes: the engine throws
      index_.resize(rows);
      dist2_.resize(rows);
      cb::make_backend(backend_, chunk_rows_)
          ->nearest_codes(points_.data(), n_, d_, codebook_.data(), k_, index_.data(),
                          dist2_.data());
    } catch (...) {
      failure_ = describe(std::current_exception(), __FILE__, __LINE__);
      SetError(failure_.message);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Int32Array index = Napi::Int32Array::New(env, n_);
    Napi::Float32Array dist2 = Napi::Float32Array::New(env, n_);
    if (n_ > 0) {
      std::memcpy(index.Data(), index_.data(), n_ * sizeof(int32_t));
      std::memcpy(dist2.Data(), dist2_.data(), n_ * sizeof(float));
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("index", index);
    out.Set("dist2", dist2);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error&) override {
    deferred_.Reject(to_js_error(Env(), failure_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string backend_;
  std::vector<float> points_;    // (n, d)
  std::vector<float> codebook_;  // (k, d)
  int64_t n_;
  int d_, k_;
  int64_t chunk_rows_;
  std::vector<int32_t> index_;  // (n)
  std::vector<float> dist2_;    // (n)
  Failure failure_;
};

}  // namespace

Napi::Value nearest_codes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    CB_CHECK(info.Length() == 6 || info.Length() == 7,
             "nearestCodes(backend, points, n, d, codebook, k, chunkRows?) takes 6 or 7 arguments");
    const std::string backend = string_arg(info, 0, "nearestCodes: backend");
    Napi::Float32Array points = float32_arg(info, 1, "nearestCodes: points");
    const int64_t n = int_arg(info, 2, "nearestCodes: n", 0, int64_t(1) << 40);
    // d and k are checked by the engine (d >= 1, k >= 1); here only that they fit an int.
    const int d = (int)int_arg(info, 3, "nearestCodes: d", INT_MIN, INT_MAX);
    Napi::Float32Array codebook = float32_arg(info, 4, "nearestCodes: codebook");
    const int k = (int)int_arg(info, 5, "nearestCodes: k", INT_MIN, INT_MAX);
    const int64_t chunk_rows =
        info.Length() == 7 && !info[6].IsUndefined() ? int_arg(info, 6, "nearestCodes: chunkRows", 0, INT_MAX)
                                                      : 0;
    const bool sizes_ok = d >= 1 && k >= 1;  // otherwise the engine rejects them on the worker
    if (sizes_ok) {
      // Compared by division: n * d may not fit 64 bits (n < 2^40, d < 2^31).
      const size_t points_len = points.ElementLength(), codebook_len = codebook.ElementLength();
      CB_CHECK(points_len % d == 0 && (int64_t)(points_len / d) == n,
               "nearestCodes: points has " + std::to_string(points_len) + " values, expected n * d = " +
                   std::to_string(n) + " * " + std::to_string(d));
      CB_CHECK(codebook_len % d == 0 && (int64_t)(codebook_len / d) == k,
               "nearestCodes: codebook has " + std::to_string(codebook_len) +
                   " values, expected k * d = " + std::to_string(k) + " * " + std::to_string(d));
    }
    auto* worker = new NearestCodesWorker(
        env, backend, points.Data(), sizes_ok ? points.ElementLength() : 0, n, d,
        codebook.Data(), sizes_ok ? codebook.ElementLength() : 0, k, chunk_rows);
    Napi::Promise promise = worker->promise();
    worker->Queue();  // the worker deletes itself when done
    return promise;
  });
}

}  // namespace cbn
