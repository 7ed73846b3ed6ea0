#include "op_table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cpu/bf16_convert.h"
#include "cpu/cpu_features.h"
#include "cpu/model_ops_ref.h"
#include "cuda/cuda.h"
#include "harness.h"
#include "model/backends.h"
#include "vq/conv_ops_cpu.h"
#include "vq/conv_ops_ref.h"

namespace cbt {
namespace {

constexpr size_t kAlignments[] = {0, sizeof(float)};

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// The worst figures of one backend over the table, for its summary line.
struct Worst {
  double nmse_ratio = 0, elem_ratio = 0;
  std::string nmse_what, elem_what;
};

void compare_reals(const std::string& what, const std::vector<double>& got,
                   const std::vector<double>& want, const OpTolerance& tol, Worst& worst) {
  EXPECT(got.size() == want.size(), what + ": " + std::to_string(got.size()) +
                                        " values, the oracle has " + std::to_string(want.size()));
  const size_t n = got.size();
  for (size_t i = 0; i < n; i++) {
    EXPECT(std::isfinite(want[i]), what + ": the oracle is not finite at " + std::to_string(i));
    EXPECT(std::isfinite(got[i]), what + ": NaN or Inf at " + std::to_string(i) +
                                      " (an unwritten output starts as NaN)");
  }
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < n; i++) {
    err2 += (got[i] - want[i]) * (got[i] - want[i]);
    ref2 += want[i] * want[i];
  }
  const double nmse = ref2 > 0 ? err2 / ref2 : err2;
  EXPECT(nmse <= tol.nmse, what + ": nmse " + fmt(nmse) + " > " + fmt(tol.nmse));
  if (tol.nmse > 0 && nmse / tol.nmse >= worst.nmse_ratio) {
    worst.nmse_ratio = nmse / tol.nmse;
    worst.nmse_what = what;
  }
  const double rms = n > 0 ? std::sqrt(ref2 / double(n)) : 0.0;
  for (size_t i = 0; i < n; i++) {
    const double diff = std::fabs(got[i] - want[i]);
    const double bound = tol.atol * rms + tol.rtol * std::fabs(want[i]) + tol.floor;
    EXPECT(diff <= bound, what + ": at " + std::to_string(i) + " got " + fmt(got[i]) +
                              ", oracle " + fmt(want[i]) + " (|diff| " + fmt(diff) + " > " +
                              fmt(bound) + "; nmse " + fmt(nmse) + ")");
    if (bound > 0 && diff / bound >= worst.elem_ratio) {
      worst.elem_ratio = diff / bound;
      worst.elem_what = what;
    }
  }
}

void compare_indices(const std::string& what, const std::vector<int32_t>& got,
                     const std::vector<int32_t>& want) {
  EXPECT(got.size() == want.size(), what + ": " + std::to_string(got.size()) +
                                        " indices, the oracle has " + std::to_string(want.size()));
  for (size_t i = 0; i < got.size(); i++) {
    EXPECT(got[i] == want[i], what + ": index " + std::to_string(got[i]) + " at " +
                                  std::to_string(i) + ", the oracle picks " +
                                  std::to_string(want[i]));
  }
}

// Whether `name` can run here; prints the SKIP line for an unusable cuda or cpu-bf16.
bool backend_usable(const std::string& name) {
  if (name == "cpu-bf16") {
    const std::string why = cb::bf16_matmul_unavailable();
    if (!why.empty()) std::printf("SKIP cpu-bf16: %s\n", why.c_str());
    return why.empty();
  }
  if (name.rfind("cuda", 0) != 0) return true;
  const cb::CudaStatus status = cb::cuda_status();
  if (!status.available) std::printf("SKIP cuda: %s\n", status.reason.c_str());
  return status.available;
}

// Each family's oracle and backends.
template <template <typename> class Ops>
struct Family;
template <>
struct Family<cb::ConvOps> {
  using Oracle = cb::RefConvOps<double>;
  static std::unique_ptr<cb::ConvOps<float>> make(const std::string& name) {
    return make_table_backend(name);
  }
};
template <>
struct Family<cb::ModelOps> {
  using Oracle = cb::RefModelOps<double>;
  static std::unique_ptr<cb::ModelOps<float>> make(const std::string& name) {
    return make_model_table_backend(name);
  }
};

}  // namespace

uint16_t bf16_bits_of(float v) { return cb::float_to_bf16(v).bits; }

std::vector<uint16_t> bf16_bits_of(const std::vector<float>& v) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); i++) bits[i] = bf16_bits_of(v[i]);
  return bits;
}

double bf16_bits_value(uint16_t bits) { return cb::bf16_to_float(cb::bf16_t{bits}); }

std::vector<float> bf16_rounded(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = cb::round_to_bf16(v[i]);
  return out;
}

std::unique_ptr<cb::ModelOps<float>> make_model_table_backend(const std::string& name) {
  std::unique_ptr<cb::ModelOps<float>> ops =
      name == "cpu-bf16" ? cb::make_model_ops<float>("cpu", cb::Precision::bf16)
                         : cb::make_model_ops<float>(name);
  EXPECT(ops->name() == name, "asked for model backend " + name + ", got " + ops->name());
  return ops;
}

std::unique_ptr<cb::ConvOps<float>> make_table_backend(const std::string& name) {
  if (name == "cpu-small-scratch") return std::make_unique<cb::CpuConvOps>(size_t(64) << 10);
  std::unique_ptr<cb::ConvOps<float>> ops = cb::make_conv_ops<float>(name);
  EXPECT(ops->name() == name, "asked for conv backend " + name + ", got " + ops->name());
  return ops;
}

template <template <typename> class Ops>
void run_op_table(const std::vector<OpCaseOn<Ops>>& cases,
                  const std::vector<std::string>& backends) {
  // The oracle's outputs, once per case (they do not depend on the alignment).
  typename Family<Ops>::Oracle oracle;
  std::vector<std::vector<OpOutput>> expected;
  for (const OpCaseOn<Ops>& c : cases) {
    OpRunOn<Ops, double> run(oracle, 0);
    c.run_oracle(run);
    run.check_guards();
    expected.push_back(run.outputs());
  }
  for (const std::string& name : backends) {
    if (!backend_usable(name)) continue;
    std::unique_ptr<Ops<float>> ops = Family<Ops>::make(name);
    Worst worst;
    for (size_t ci = 0; ci < cases.size(); ci++) {
      const OpCaseOn<Ops>& c = cases[ci];
      for (size_t misalign : kAlignments) {
        const std::string what = name + " " + c.op + " " + c.params +
                                 (misalign != 0 ? " (misaligned)" : "");
        OpRunOn<Ops, float> run(*ops, misalign);
        c.run(run);
        const std::vector<OpOutput> got = run.outputs();
        EXPECT(got.size() == expected[ci].size(), what + ": outputs differ from the oracle's");
        for (size_t o = 0; o < got.size(); o++) {
          const std::string out_what = what + ": " + got[o].name;
          if (got[o].is_index) {
            compare_indices(out_what, got[o].indices, expected[ci][o].indices);
          } else {
            compare_reals(out_what, got[o].values, expected[ci][o].values, c.tol, worst);
          }
        }
        run.check_guards();
      }
    }
    std::printf("     %s: %zu cases; worst nmse/bound %s (%s); worst |diff|/bound %s (%s)\n",
                name.c_str(), cases.size(), fmt(worst.nmse_ratio).c_str(),
                worst.nmse_what.c_str(), fmt(worst.elem_ratio).c_str(),
                worst.elem_what.c_str());
  }
}

template void run_op_table<cb::ConvOps>(const std::vector<OpCaseOn<cb::ConvOps>>&,
                                         const std::vector<std::string>&);
template void run_op_table<cb::ModelOps>(const std::vector<OpCaseOn<cb::ModelOps>>&,
                                          const std::vector<std::string>&);

}  // namespace cbt
