// The mixed-precision ops (model/mixed_ops.h) as one op table (op_table.h), run on every backend
// that has them: "cpu-bf16" (oneDNN bf16 matmuls; skipped on a CPU without avx512_bf16) and
// "cuda" (tensor cores; skipped without a GPU). The oracle is RefModelOps<double> fed the same
// bf16-rounded operands the backend multiplies, so what is left to bound is fp32 arithmetic
// (the matmuls) or one bf16 rounding of an fp32 result (the ops with bf16 outputs).
//
// The bounds. bf16 keeps 8 significant bits, so rounding a value to nearest moves it by at most
// half an ulp: between 2^-9 and 2^-8 of its size, i.e. at most u16 = 2^-8 = 3.9e-3 relative.
//   - Matmuls: both operands are bf16, so each product (8 x 8 bits) is exact in fp32, and the
//     only error is the fp32 accumulation of k products (u = 2^-24 per add). Its rounding
//     errors are independent, so the sum is off by about u sqrt(k) of the output's RMS
//     (2.7e-6 at k = 2048); kOperands allows 3e-4 of the RMS elementwise and an nmse of 1e-7,
//     over 100 standard deviations. An operand rounded any other way than nearest-even (say,
//     truncated) is off by ~2^-9 per product, ~1e-3 of the RMS: nmse ~ 1e-6, caught.
//     (Against the unrounded fp32 operands the error would be ~2 x 2^-9 per product instead:
//     that is the model-level bound of test_cpu_bf16_model.cc, not this table's.)
//   - bf16 outputs (modulate_bf16, gelu_bf16, the optimizer's copy): one rounding of the fp32
//     result, <= u16 |ref| = 3.9e-3 |ref|, plus the fp32 result's own few ulps: rtol 4.2e-3.
//     A matmul with a bf16 output (the fused GELU's) has both errors.
//   - to_bf16: exact (it is the rounding itself).
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "compare.h"
#include "cpu/bf16_convert.h"
#include "cpu/cpu_features.h"
#include "harness.h"
#include "model/backends.h"
#include "op_table.h"

namespace {

using cbt::ModelOpCase;
using cbt::OpTolerance;
using Vec = std::vector<float>;

constexpr OpTolerance kExact{0, 0, 0, 0};
constexpr OpTolerance kOperands{3e-4, 1e-3, 1e-7, 1e-6};
constexpr OpTolerance kBf16Output{1e-6, 4.2e-3, 2e-5, 1e-7};
// A matmul's fp32 result (kOperands) rounded once to bf16 (kBf16Output).
constexpr OpTolerance kMatmulBf16Output{3e-4, 4.2e-3, 2e-5, 1e-6};
constexpr OpTolerance kColumnSums{1e-5, 1e-4, 1e-9, 1e-6};  // fp32 sums of up to 10^3 terms
constexpr OpTolerance kTight{1e-6, 1e-5, 1e-9, 1e-7};       // a few fp32 roundings

const std::vector<std::string> kBackends = {"cpu-bf16", "cuda"};

// Whether a case function runs the oracle (RefModelOps<double>) or a backend under test.
template <typename Run>
constexpr bool is_oracle() {
  return std::is_same<std::decay_t<Run>, cbt::OpRunOn<cb::ModelOps, double>>::value;
}

template <typename Run>
cb::MixedPrecisionOps& mixed_of(Run& r) {
  cb::MixedPrecisionOps* m = r.ops().mixed();
  EXPECT(m != nullptr, std::string(r.ops().name()) + " has no mixed-precision ops");
  return *m;
}

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t v : d) s += (s.empty() ? "" : " ") + std::to_string(v);
  return s;
}

// y = x w^T + b, then dx, dw += and db += from dy; x given as fp32 (rounded by the backend) or
// as bf16. The oracle multiplies the rounded x, w and dy; db sums the fp32 dy.
void add_linear_cases(std::vector<ModelOpCase>& cases) {
  struct Shape {
    int64_t n;
    int in, out;
  };
  // The model's shapes in small (latent 8 -> W; W -> 3W, 4W, 6W; 4W -> W) and thin (2, 3, 7
  // rows: batch 1 with CFG at the coarse scales), odd sizes, and one of the S preset's.
  const std::vector<Shape> shapes = {{1, 8, 5},    {2, 32, 96},   {3, 17, 33}, {7, 64, 192},
                                     {2, 64, 384}, {130, 96, 200}, {64, 512, 1536},
                                     {33, 2048, 512}};
  uint32_t seed = 7000;
  for (const Shape& s : shapes) {
    for (bool x16 : {false, true}) {
      seed += 10;
      const Vec x = cbt::random_uniform(s.n * s.in, seed), w = cbt::random_uniform(
                                                               size_t(s.out) * s.in, seed + 1);
      const Vec b = cbt::random_uniform(s.out, seed + 2), dy = cbt::random_uniform(
                                                              s.n * s.out, seed + 3);
      const Vec dw0 = cbt::random_uniform(size_t(s.out) * s.in, seed + 4);
      const Vec db0 = cbt::random_uniform(s.out, seed + 5);
      const std::string params = dims({s.n, s.in, s.out}) + (x16 ? " x bf16" : " x fp32");
      cases.push_back(cbt::model_op_case("linear_mixed", "n in out = " + params, kOperands,
                                         [=](auto& r) {
        if constexpr (is_oracle<decltype(r)>()) {
          auto* y = r.out("y", s.n * s.out);
          r.ops().linear(s.n, s.in, s.out, r.in("x", cbt::bf16_rounded(x)),
                         r.in("w", cbt::bf16_rounded(w)), r.in("b", b), y);
        } else {
          float* y = r.out("y", s.n * s.out);
          const cb::bf16_t* w16 = r.in_bf16("w", w);
          if (x16) {
            mixed_of(r).linear_mixed(s.n, s.in, s.out, r.in_bf16("x", x), w16, r.in("b", b), y);
          } else {
            mixed_of(r).linear_mixed(s.n, s.in, s.out, r.in("x", x), w16, r.in("b", b), y);
          }
        }
      }));
      if (!x16) {  // the fused GELU (the sampler's MLPs): the oracle's linear, then its gelu
        cases.push_back(cbt::model_op_case("linear_gelu_mixed", "n in out = " + params,
                                           kOperands, [=](auto& r) {
          auto* y = r.out("y", s.n * s.out);
          if constexpr (is_oracle<decltype(r)>()) {
            r.ops().linear(s.n, s.in, s.out, r.in("x", cbt::bf16_rounded(x)),
                           r.in("w", cbt::bf16_rounded(w)), r.in("b", b), y);
            r.ops().gelu(s.n * s.out, y, y);
          } else {
            mixed_of(r).linear_gelu_mixed(s.n, s.in, s.out, r.in("x", x), r.in_bf16("w", w),
                                          r.in("b", b), y);
          }
        }));
      }
      // The fused GELU with bf16 activations (the cpu sampler's MLPs): the same, rounded once.
      cases.push_back(cbt::model_op_case("linear_gelu_mixed bf16 y", "n in out = " + params,
                                         kMatmulBf16Output, [=](auto& r) {
        if constexpr (is_oracle<decltype(r)>()) {
          auto* y = r.out("y", s.n * s.out);
          r.ops().linear(s.n, s.in, s.out, r.in("x", cbt::bf16_rounded(x)),
                         r.in("w", cbt::bf16_rounded(w)), r.in("b", b), y);
          r.ops().gelu(s.n * s.out, y, y);
        } else {
          cb::MixedPrecisionOps& mixed = mixed_of(r);
          if (!mixed.bf16_activations()) return;  // this backend keeps fp32 activations
          cb::bf16_t* y = r.out_bf16("y", s.n * s.out);
          const cb::bf16_t* w16 = r.in_bf16("w", w);
          if (x16) {
            mixed.linear_gelu_mixed(s.n, s.in, s.out, r.in_bf16("x", x), w16, r.in("b", b), y);
          } else {
            mixed.linear_gelu_mixed(s.n, s.in, s.out, r.in("x", x), w16, r.in("b", b), y);
          }
        }
      }));
      cases.push_back(cbt::model_op_case("linear_backward_mixed", "n in out = " + params,
                                         kOperands, [=](auto& r) {
        auto* dx = r.out("dx", s.n * s.in);
        auto* dw = r.inout("dw", dw0);
        if constexpr (is_oracle<decltype(r)>()) {
          r.ops().linear_backward(s.n, s.in, s.out, r.in("x", cbt::bf16_rounded(x)),
                                  r.in("w", cbt::bf16_rounded(w)),
                                  r.in("dy", cbt::bf16_rounded(dy)), dx, dw, nullptr);
        } else {
          const cb::bf16_t* w16 = r.in_bf16("w", w);
          const float* gdy = r.in("dy", dy);
          if (x16) {
            mixed_of(r).linear_backward_mixed(s.n, s.in, s.out, r.in_bf16("x", x), w16, gdy, dx,
                                              dw, nullptr);
          } else {
            mixed_of(r).linear_backward_mixed(s.n, s.in, s.out, r.in("x", x), w16, gdy, dx, dw,
                                              nullptr);
          }
        }
      }));
      cases.push_back(cbt::model_op_case("linear_backward_mixed db", "n in out = " + params,
                                         kColumnSums, [=](auto& r) {
        auto* db = r.inout("db", db0);
        if constexpr (is_oracle<decltype(r)>()) {
          r.ops().linear_backward(s.n, s.in, s.out, nullptr, nullptr, r.in("dy", dy), nullptr,
                                  nullptr, db);
        } else {
          const cb::bf16_t* w16 = r.in_bf16("w", w);
          if (x16) {
            mixed_of(r).linear_backward_mixed(s.n, s.in, s.out, r.in_bf16("x", x), w16,
                                              r.in("dy", dy), nullptr, nullptr, db);
          } else {
            mixed_of(r).linear_backward_mixed(s.n, s.in, s.out, r.in("x", x), w16,
                                              r.in("dy", dy), nullptr, nullptr, db);
          }
        }
      }));
    }
  }
}

void add_elementwise_cases(std::vector<ModelOpCase>& cases) {
  uint32_t seed = 8000;
  // to_bf16: a strided block into a strided destination (the Eq. 1 concat), and a long flat row
  // (the parameters' copy), with a tie that must round to even.
  struct Copy {
    int64_t rows, cols, src_ld, dst_ld;
  };
  for (const Copy& c : {Copy{7, 5, 9, 20}, Copy{1, 200003, 200003, 200003}}) {
    Vec src = cbt::random_uniform(size_t((c.rows - 1) * c.src_ld + c.cols), seed++, -3.0f, 3.0f);
    src[0] = 1.0f + 1.0f / 256.0f;  // halfway between 1 and 1 + 2^-7: rounds to even (1)
    cases.push_back(cbt::model_op_case("to_bf16", dims({c.rows, c.cols, c.src_ld, c.dst_ld}),
                                       kExact, [=](auto& r) {
      // The destination starts as 0.5 (exact in bf16); its gaps between rows must stay so.
      const Vec fill(size_t((c.rows - 1) * c.dst_ld + c.cols), 0.5f);
      if constexpr (is_oracle<decltype(r)>()) {
        auto* want = r.inout("dst", fill);
        for (int64_t i = 0; i < c.rows; i++) {
          for (int64_t j = 0; j < c.cols; j++) {
            want[i * c.dst_ld + j] = cb::round_to_bf16(src[size_t(i * c.src_ld + j)]);
          }
        }
      } else {
        cb::bf16_t* dst = r.inout_bf16("dst", fill);
        mixed_of(r).to_bf16(c.rows, c.cols, r.in("src", src), c.src_ld, dst, c.dst_ld);
      }
    }));
  }
  for (int64_t count : {int64_t(1), int64_t(1000), int64_t(200003)}) {
    const Vec x = cbt::random_uniform(count, seed++, -6.0f, 6.0f);
    cases.push_back(cbt::model_op_case("gelu_bf16", "count " + std::to_string(count),
                                       kBf16Output, [=](auto& r) {
      if constexpr (is_oracle<decltype(r)>()) {
        r.ops().gelu(count, r.in("x", x), r.out("y", count));
      } else {
        mixed_of(r).gelu_bf16(count, r.in("x", x), r.out_bf16("y", count));
      }
    }));
  }
  struct Mod {
    int B, T, c;
  };
  for (const Mod& m : {Mod{1, 1, 5}, Mod{3, 7, 33}, Mod{2, 342, 512}}) {
    const int ld = 6 * m.c;
    const Vec xn = cbt::random_uniform(size_t(m.B) * m.T * m.c, seed++, -3.0f, 3.0f);
    const Vec ada = cbt::random_uniform(size_t(m.B) * ld, seed++);
    cases.push_back(cbt::model_op_case("modulate_bf16", dims({m.B, m.T, m.c}), kBf16Output,
                                       [=](auto& r) {
      const auto* gxn = r.in("xn", xn);
      const auto* gada = r.in("ada", ada);
      const size_t count = size_t(m.B) * m.T * m.c;
      if constexpr (is_oracle<decltype(r)>()) {
        r.ops().modulate(m.B, m.T, m.c, gxn, gada, gada + m.c, ld, r.out("y", count));
      } else {
        mixed_of(r).modulate_bf16(m.B, m.T, m.c, gxn, gada, gada + m.c, ld,
                                  r.out_bf16("y", count));
      }
    }));
  }
  for (int64_t count : {int64_t(1), int64_t(200003)}) {
    const Vec p0 = cbt::random_uniform(count, seed++);
    const Vec g = cbt::random_uniform(count, seed++, -0.1f, 0.1f);
    const Vec m0 = cbt::random_uniform(count, seed++, -0.01f, 0.01f);
    const Vec v0 = cbt::random_uniform(count, seed++, 0.0f, 1e-3f);
    // The master values, moments and the bf16 copy (the rounding of the new master value).
    for (const char* output : {"param", "param16"}) {
      const std::string out = output;
      cases.push_back(cbt::model_op_case("adamw_mixed " + out, "count " + std::to_string(count),
                                         out == "param" ? kTight : kBf16Output, [=](auto& r) {
        auto* p = r.inout("param", p0);
        auto* m = r.inout("m", m0);
        auto* v = r.inout("v", v0);
        if constexpr (is_oracle<decltype(r)>()) {
          r.ops().adamw(count, p, r.in("grad", g), m, v, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3);
          if (out == "param16") {
            auto* p16 = r.out("param16", count);
            for (int64_t i = 0; i < count; i++) p16[i] = p[i];
          }
        } else {
          // The copy is an output of the "param16" case; the "param" case gives it a buffer
          // that is not compared.
          cb::bf16_t* p16 = out == "param16"
                                ? r.out_bf16("param16", count)
                                : const_cast<cb::bf16_t*>(r.in_bf16("copy", Vec(count, 0.0f)));
          mixed_of(r).adamw_mixed(count, p, p16,
                                  r.in("grad", g), m, v, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3);
        }
      }));
    }
  }
}

}  // namespace

CB_TEST("bf16", bf16_rounding_is_nearest_even_with_denormals_and_nan) {
  auto bits = [](float v) { return cb::float_to_bf16(v).bits; };
  EXPECT(bits(1.0f) == 0x3f80, "1.0");
  EXPECT(bits(1.0f + 1.0f / 256) == 0x3f80, "1 + 2^-8 is a tie: rounds to even 1.0");
  EXPECT(bits(1.0f + 3.0f / 256) == 0x3f82, "1 + 3 2^-8 is a tie: rounds to even 1 + 2^-6");
  EXPECT(bits(1.0f + 1.0f / 256 + 1.0f / 65536) == 0x3f81, "just above a tie rounds up");
  EXPECT(bits(-2.5f) == 0xc020, "-2.5 is exact");
  EXPECT(bits(1e-40f) == cb::float_to_bf16(1e-40f).bits && bits(1e-40f) != 0,
         "a float denormal keeps its top bits");
  EXPECT((bits(std::nanf("")) & 0x7fc0) == 0x7fc0, "NaN stays a quiet NaN");
  EXPECT(bits(3.4028235e38f) == 0x7f80, "the largest float rounds to Inf, as nearest-even says");
  // The span loop (the AVX512-BF16 instruction where the CPU has it, else compiled for AVX-512
  // and the baseline) agrees with the scalar rounding, ties, denormals, NaN and Inf included.
  Vec x = cbt::random_uniform(1003, 5, -1e3f, 1e3f);
  const float specials[] = {1e-40f, -3e-39f, std::nanf(""), -INFINITY, INFINITY, 3.4028235e38f,
                            1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 0.0f, -0.0f, 1.1754944e-38f};
  for (size_t s = 0; s < sizeof specials / sizeof specials[0]; s++) x[37 * s + 5] = specials[s];
  std::vector<cb::bf16_t> y(x.size());
  cb::float_to_bf16_span(x.data(), y.data(), (int64_t)x.size());
  for (size_t i = 0; i < x.size(); i++) {
    EXPECT(y[i].bits == bits(x[i]), "float_to_bf16_span differs at " + std::to_string(i));
  }
}

CB_TEST("bf16", mixed_ops_match_the_reference_on_bf16_operands) {
  std::vector<ModelOpCase> cases;
  add_linear_cases(cases);
  add_elementwise_cases(cases);
  cbt::run_op_table(cases, kBackends);
}

// Only the bf16 backends have the mixed-precision ops; bf16 on a CPU without the feature is an
// error naming it, never a silent slow path.
CB_TEST("bf16", precision_choice_and_the_missing_feature_error) {
  EXPECT(cb::make_model_ops<float>("cpu")->mixed() == nullptr, "cpu (fp32) has no mixed ops");
  EXPECT(cb::make_model_ops<float>("cpu", cb::Precision::fp32)->mixed() == nullptr,
         "cpu with Precision::fp32 has no mixed ops");
  const std::string why = cb::bf16_matmul_unavailable();
  if (why.empty()) {
    auto ops = cb::make_model_ops<float>("cpu", cb::Precision::bf16);
    EXPECT(ops->mixed() != nullptr && std::string(ops->name()) == "cpu-bf16",
           "cpu with Precision::bf16 is cpu-bf16 with mixed ops");
  } else {
    bool thrown = false;
    try {
      cb::make_model_ops<float>("cpu", cb::Precision::bf16);
    } catch (const cb::Error& e) {
      thrown = true;
      EXPECT(cb::cpu_features().avx512_bf16 ||
                 std::string(e.what()).find("avx512_bf16") != std::string::npos,
             std::string("the error must name avx512_bf16: ") + e.what());
    }
    EXPECT(thrown, "bf16 where it cannot run must be a cb::Error (" + why + ")");
  }
  for (const char* name : {"cpu-ref", "cuda-fp32"}) {
    bool thrown = false;
    try {
      cb::make_model_ops<float>(name, cb::Precision::bf16);
    } catch (const cb::Error&) {
      thrown = true;
    }
    EXPECT(thrown, std::string(name) + " with Precision::bf16 must be refused");
  }
  EXPECT(cb::parse_precision("bf16") == cb::Precision::bf16 &&
             cb::parse_precision("fp32") == cb::Precision::fp32,
         "parse_precision");
  bool thrown = false;
  try {
    cb::parse_precision("fp16");
  } catch (const cb::Error& e) {
    thrown = std::string(e.what()).find("fp32 or bf16") != std::string::npos;
  }
  EXPECT(thrown, "an unknown precision is an error naming the choices");
}
