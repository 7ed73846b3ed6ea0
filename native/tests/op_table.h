// Table-driven op tests in the way of ggml's test-backend-ops: a test case is an op name, its
// shape parameters as text, a tolerance and one function that fills the inputs, runs the op on
// a given backend and names its outputs. The runner runs every case on the family's reference
// in double (the oracle: RefConvOps<double> for the conv ops, RefModelOps<double> for the
// transformer's), then on each backend under test from the same float inputs, and checks each
// output in this order:
//   1. every value finite (outputs start as NaN, so an element an op forgets to write fails),
//   2. the normalised MSE  sum (got - ref)^2 / sum ref^2 <= nmse,
//   3. elementwise |got - ref| <= atol rms(ref) + rtol |ref| + floor (index outputs: equal),
//   4. the guard bytes around every buffer (guarded_buffer.h) unchanged.
// Every case runs twice per backend: on aligned buffers and on buffers one float past an
// aligned address, "(misaligned)" in messages (a model's tensors sit at any float offset).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "guarded_buffer.h"
#include "model/mixed_ops.h"
#include "model/model_ops.h"
#include "vq/conv_ops.h"

namespace cbt {

// bf16 as the tests see it: the bits of a float rounded to nearest, ties to even (NaN stays a
// quiet NaN), and the value of such bits.
constexpr uint16_t kBf16NaN = 0x7fc0;
uint16_t bf16_bits_of(float v);
std::vector<uint16_t> bf16_bits_of(const std::vector<float>& v);
double bf16_bits_value(uint16_t bits);
// v with every value rounded to bf16.
std::vector<float> bf16_rounded(const std::vector<float>& v);

struct OpTolerance {
  double atol;   // times the reference's RMS
  double rtol;   // times |ref|
  double nmse;   // bound on the normalised MSE
  double floor;  // absolute, for outputs that are zero in exact arithmetic
};

// One output of a case as the runner compares it: values as double, or indices.
struct OpOutput {
  std::string name;
  std::vector<double> values;   // real outputs
  std::vector<int32_t> indices; // index outputs
  bool is_index = false;
};

// One run of a case on one backend of an op family (Ops: cb::ConvOps or cb::ModelOps): the
// buffers of the call, in that backend's memory. A case function asks for its inputs and
// outputs by name; the runner reads the outputs afterwards.
template <template <typename> class Ops, typename Real>
class OpRunOn {
 public:
  OpRunOn(Ops<Real>& ops, size_t misalign) : ops_(ops), buffers_(ops.memory(), misalign) {}

  Ops<Real>& ops() { return ops_; }

  // A read-only input, converted from the case's float values.
  const Real* in(const std::string& name, const std::vector<float>& host) {
    return buffers_.upload(name, std::vector<Real>(host.begin(), host.end()));
  }
  const int32_t* in_index(const std::string& name, const std::vector<int32_t>& host) {
    return buffers_.upload(name, host);
  }
  // An output of `count` values, pre-filled with NaN.
  Real* out(const std::string& name, size_t count) {
    Real* p = buffers_.template output<Real>(name, count);
    reals_.push_back({name, p});
    return p;
  }
  int32_t* out_index(const std::string& name, size_t count) {
    int32_t* p = buffers_.template output<int32_t>(name, count);
    indices_.push_back({name, p});
    return p;
  }
  // An input the op overwrites or accumulates into (in-place ops): uploaded, read back after.
  Real* inout(const std::string& name, const std::vector<float>& host) {
    Real* p = buffers_.upload(name, std::vector<Real>(host.begin(), host.end()));
    reals_.push_back({name, p});
    return p;
  }

  // bf16 buffers (mixed precision, model/mixed_ops.h): an input of the case's values rounded to
  // bf16 (nearest, ties to even), and an output of `count` bf16 NaNs, read back as values in
  // the order of the real outputs (so the oracle can give the same output as a Real one).
  const cb::bf16_t* in_bf16(const std::string& name, const std::vector<float>& host) {
    return reinterpret_cast<const cb::bf16_t*>(buffers_.upload(name, bf16_bits_of(host)));
  }
  cb::bf16_t* out_bf16(const std::string& name, size_t count) {
    return track_bf16(name, buffers_.upload(name, std::vector<uint16_t>(count, kBf16NaN)));
  }
  // A bf16 buffer the op writes into in part: the case's values rounded, read back after.
  cb::bf16_t* inout_bf16(const std::string& name, const std::vector<float>& host) {
    return track_bf16(name, buffers_.upload(name, bf16_bits_of(host)));
  }

  // Every output, in the order the case asked for them (reals first, then indices).
  std::vector<OpOutput> outputs() const {
    std::vector<OpOutput> all;
    for (size_t i = 0; i < reals_.size(); i++) {
      const auto& r = reals_[i];
      if (r.second == nullptr) {  // a bf16 output
        const uint16_t* p = nullptr;
        for (const auto& h : halves_) {
          if (h.first == i) p = h.second;
        }
        std::vector<double> values;
        for (uint16_t bits : buffers_.download(p)) values.push_back(bf16_bits_value(bits));
        all.push_back({r.first, values, {}, false});
        continue;
      }
      const std::vector<Real> host = buffers_.download(r.second);
      all.push_back({r.first, std::vector<double>(host.begin(), host.end()), {}, false});
    }
    for (const auto& r : indices_) all.push_back({r.first, {}, buffers_.download(r.second), true});
    return all;
  }
  void check_guards() const { buffers_.check_guards(); }

 private:
  cb::bf16_t* track_bf16(const std::string& name, uint16_t* p) {
    reals_.push_back({name, nullptr});
    halves_.push_back({reals_.size() - 1, p});
    return reinterpret_cast<cb::bf16_t*>(p);
  }

  Ops<Real>& ops_;
  DeviceBuffers buffers_;
  std::vector<std::pair<std::string, Real*>> reals_;  // null: the bf16 output in halves_
  std::vector<std::pair<size_t, uint16_t*>> halves_;   // (index in reals_, bf16 bits)
  std::vector<std::pair<std::string, int32_t*>> indices_;
};

template <template <typename> class Ops>
struct OpCaseOn {
  std::string op;      // "conv2d"
  std::string params;  // "B=2 Cin=5 H=7 ..."
  OpTolerance tol;
  std::function<void(OpRunOn<Ops, double>&)> run_oracle;
  std::function<void(OpRunOn<Ops, float>&)> run;
};

// A case from one generic function `fn(OpRunOn<Ops, Real>&)`, used for the oracle and the
// backends.
template <template <typename> class Ops, typename Fn>
OpCaseOn<Ops> op_case_on(std::string op, std::string params, OpTolerance tol, Fn fn) {
  return OpCaseOn<Ops>{std::move(op), std::move(params), tol,
                       [fn](OpRunOn<Ops, double>& r) { fn(r); },
                       [fn](OpRunOn<Ops, float>& r) { fn(r); }};
}

// The conv-op family (vq/conv_ops.h), the one most tables use.
template <typename Real>
using OpRun = OpRunOn<cb::ConvOps, Real>;
using OpCase = OpCaseOn<cb::ConvOps>;
template <typename Fn>
OpCase op_case(std::string op, std::string params, OpTolerance tol, Fn fn) {
  return op_case_on<cb::ConvOps>(std::move(op), std::move(params), tol, fn);
}

// The transformer's op family (model/model_ops.h).
using ModelOpCase = OpCaseOn<cb::ModelOps>;
template <typename Fn>
ModelOpCase model_op_case(std::string op, std::string params, OpTolerance tol, Fn fn) {
  return op_case_on<cb::ModelOps>(std::move(op), std::move(params), tol, fn);
}

// The backends a table runs on, by name. Conv ops: the names make_conv_ops<float> takes, and
// "cpu-small-scratch", the cpu ops with 64 KiB of scratch so that convs, attention and the
// quantiser run in many tiles. Model ops: the names make_model_ops<float> takes, and "cpu-bf16",
// the cpu backend made for bf16 (make_model_ops<float>("cpu", Precision::bf16)). "cuda" (and
// "cuda-fp32") print `SKIP cuda: <reason>` and are left out when no GPU is usable; "cpu-bf16"
// prints `SKIP cpu-bf16: <reason>` on a CPU without avx512_bf16.
std::unique_ptr<cb::ConvOps<float>> make_table_backend(const std::string& name);
std::unique_ptr<cb::ModelOps<float>> make_model_table_backend(const std::string& name);

// Runs every case on every backend named (see above); fails (EXPECT) at the first bad output,
// naming the backend, the op, its parameters and the output. Prints one summary line per backend:
// cases run, the worst nmse / bound and the worst |diff| / bound with the case they came from.
// Defined for Ops = cb::ConvOps and cb::ModelOps.
template <template <typename> class Ops>
void run_op_table(const std::vector<OpCaseOn<Ops>>& cases,
                  const std::vector<std::string>& backends);

}  // namespace cbt
