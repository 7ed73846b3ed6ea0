// The conv ops of the VQ tokenizer (vq/conv_ops.h), table-driven (op_table.h): every case runs
// on RefConvOps<double> as the oracle and is compared on
//   group conv-ops-cpu: cpu-ref in float, cpu, and cpu with 64 KiB of scratch (many tiles);
//   group cuda:         the cuda backend (SKIP cuda: <reason> without a GPU).
// Group conv-ops-ref checks the reference itself on cases small enough to work out by hand.
//
// Tolerances: the oracle is exact up to double rounding, so the differences are float
// arithmetic alone (u = 2^-24 ~ 6e-8): a few ulps for elementwise ops; about sqrt(N) u of the
// terms' size for a sum of N terms in another order (N <= 32 * 9 = 288 in a conv, 2304 in an
// attention row), relative to the output's RMS because cancellation leaves an absolute error of
// the terms' size near zero. GroupNorm with a mean offset of 100 loses ~100 u ~ 6e-6 in
// (x - mean) however it is computed in float; a one-pass float variance loses ~1e4 u per value
// (caught: its error is ~1e-3 of the output's RMS).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compare.h"
#include "harness.h"
#include "op_table.h"
#include "cpu/parallel.h"
#include "vq/conv_ops_cpu.h"
#include "vq/conv_ops_ref.h"

namespace {

using cbt::OpCase;
using cbt::OpRun;
using cbt::OpTolerance;
using cbt::op_case;
using Vec = std::vector<float>;
using Idx = std::vector<int32_t>;

// Data movement: bit-equal.
constexpr OpTolerance kExact{0, 0, 0, 0};
// One float add, correctly rounded: within 2^-24 of the exact sum (slack for the oracle's own
// double rounding).
constexpr OpTolerance kRounded{0, 5.9604645e-8 * (1 + 1e-9), 1e-14, 0};
// A few roundings and an exp per element; also short sums (l2 norms of d <= 16).
constexpr OpTolerance kTight{1e-6, 1e-5, 1e-11, 1e-7};
// Sums of up to a few thousand terms in another order.
constexpr OpTolerance kSum{1e-5, 1e-4, 1e-9, 1e-6};
// GroupNorm far from zero mean (see the top of the file).
constexpr OpTolerance kOffsetNorm{1e-4, 1e-4, 1e-8, 1e-6};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

Vec rand_vec(size_t count, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  return cbt::random_uniform(count, seed, lo, hi);
}

std::string conv_params(const cb::Conv2dShape& s, bool bias) {
  return "B=" + std::to_string(s.B) + " Cin=" + std::to_string(s.Cin) + " " +
         std::to_string(s.H) + "x" + std::to_string(s.W) + " Cout=" + std::to_string(s.Cout) +
         " k=" + std::to_string(s.k) + " stride=" + std::to_string(s.stride) + " pad=(" +
         std::to_string(s.pad_begin) + "," + std::to_string(s.pad_end) + ")" +
         (bias ? " bias" : " no bias");
}

// ---- conv2d -------------------------------------------------------------------------------

std::vector<OpCase> conv_cases() {
  struct Shape {
    cb::Conv2dShape s;
    bool bias;
  };
  // {B, Cin, H, W, Cout, k, stride, pad_begin, pad_end}
  const std::vector<Shape> shapes = {
      {{1, 1, 1, 1, 1, 1, 1, 0, 0}, true},      // one value
      {{2, 5, 6, 9, 7, 1, 1, 0, 0}, true},      // 1x1 (nin_shortcut, q/k/v): straight sgemm
      {{1, 64, 8, 8, 33, 1, 1, 0, 0}, false},   // 1x1, Cout no multiple of 8
      {{2, 3, 13, 11, 5, 1, 2, 0, 0}, true},    // 1x1 stride 2 (im2col of a 1x1)
      {{2, 5, 7, 9, 6, 3, 1, 1, 1}, true},      // 3x3 pad 1, odd sizes, B > 1
      {{1, 3, 17, 17, 13, 3, 1, 1, 1}, false},  // conv_in-like: Cin 3
      {{1, 9, 1, 1, 4, 3, 1, 1, 1}, true},      // 3x3 on a 1x1 image: padding only
      {{2, 32, 35, 33, 20, 3, 1, 1, 1}, true},  // wide enough for the per-tap sgemm path
      {{1, 64, 32, 40, 64, 3, 1, 1, 1}, true},  // per-tap path, weights above 64 KiB of scratch
      {{1, 40, 32, 32, 3, 3, 1, 1, 1}, false},  // conv_out-like: Cout 3
      {{1, 6, 16, 16, 7, 3, 2, 0, 1}, true},    // the downsampler: pad (0, 1), stride 2
      {{2, 11, 9, 11, 5, 3, 2, 0, 1}, false},   // downsampler at odd sizes
      {{1, 32, 32, 32, 32, 3, 2, 0, 1}, true},  // downsampler, model-like channels
      {{1, 4, 10, 7, 6, 3, 2, 1, 1}, true},     // stride 2 pad 1/1
      {{1, 7, 12, 12, 9, 3, 1, 0, 0}, true},    // 3x3 no padding
  };
  std::vector<OpCase> cases;
  uint32_t seed = 100;
  for (const Shape& sh : shapes) {
    const cb::Conv2dShape s = sh.s;
    const bool with_bias = sh.bias;
    seed += 10;
    const Vec x = rand_vec((size_t)s.B * s.Cin * s.H * s.W, seed);
    const Vec w = rand_vec((size_t)s.Cout * s.Cin * s.k * s.k, seed + 1);
    const Vec b = rand_vec(s.Cout, seed + 2);
    const size_t out_count = (size_t)s.B * s.Cout * s.out_h() * s.out_w();
    cases.push_back(op_case("conv2d", conv_params(s, with_bias), kSum, [=](auto& r) {
      const auto* gx = r.in("x", x);
      const auto* gw = r.in("w", w);
      const auto* gb = with_bias ? r.in("bias", b) : nullptr;
      auto* gy = r.out("y", out_count);
      r.ops().conv2d(s, gx, gw, gb, gy);
    }));
  }
  return cases;
}

// ---- group norm, swish, add, upsample ---------------------------------------------------------

std::vector<OpCase> norm_cases() {
  struct Shape {
    int B, C;
    int64_t HW;
    int groups;
    float offset;  // added to every x
    bool in_place;
  };
  const std::vector<Shape> shapes = {
      {2, 64, 37, 32, 0.0f, false},    // 2 channels per group, odd HW
      {1, 32, 1, 32, 0.0f, false},     // one value per group: variance 0, y = beta
      {1, 96, 64, 32, 0.0f, true},     // 3 channels per group, in place
      {2, 64, 64, 32, 100.0f, false},  // a large mean: catches a one-pass variance
      {1, 128, 256, 32, -50.0f, true}, // model-like, negative offset, in place
      {3, 40, 5, 8, 0.5f, false},      // another group count
  };
  std::vector<OpCase> cases;
  uint32_t seed = 300;
  for (const Shape& s : shapes) {
    for (bool with_swish : {false, true}) {
      seed += 10;
      Vec x = rand_vec((size_t)s.B * s.C * s.HW, seed, -2.0f, 2.0f);
      for (float& v : x) v += s.offset;
      const Vec gamma = rand_vec(s.C, seed + 1, 0.5f, 1.5f);  // 1 + noise, as the fixture's
      const Vec beta = rand_vec(s.C, seed + 2, -0.3f, 0.3f);
      const std::string params = "B=" + std::to_string(s.B) + " C=" + std::to_string(s.C) +
                                 " HW=" + std::to_string(s.HW) + " groups=" +
                                 std::to_string(s.groups) + " offset=" + number(s.offset) +
                                 (s.in_place ? " in place" : "");
      const OpTolerance tol = std::fabs(s.offset) > 1.0f ? kOffsetNorm : kTight;
      cases.push_back(op_case(with_swish ? "group_norm_swish" : "group_norm", params, tol,
                              [=](auto& r) {
        const auto* gg = r.in("gamma", gamma);
        const auto* gb = r.in("beta", beta);
        const auto* gx = s.in_place ? nullptr : r.in("x", x);
        auto* gy = s.in_place ? r.inout("y", x) : r.out("y", x.size());
        if (s.in_place) gx = gy;
        if (with_swish) {
          r.ops().group_norm_swish(s.B, s.C, s.HW, s.groups, 1e-6f, gx, gg, gb, gy);
        } else {
          r.ops().group_norm(s.B, s.C, s.HW, s.groups, 1e-6f, gx, gg, gb, gy);
        }
      }));
    }
  }
  return cases;
}

std::vector<OpCase> elementwise_cases() {
  std::vector<OpCase> cases;
  for (int64_t n : {int64_t(1), int64_t(1001), int64_t(70000)}) {
    const Vec x = rand_vec(n, 500 + (uint32_t)n, -20.0f, 20.0f);  // both tails of sigmoid
    const Vec y0 = rand_vec(n, 600 + (uint32_t)n);
    const std::string params = "count=" + std::to_string(n);
    cases.push_back(op_case("swish", params, kTight, [=](auto& r) {
      const auto* gx = r.in("x", x);
      r.ops().swish(n, gx, r.out("y", n));
    }));
    cases.push_back(op_case("swish", params + " in place", kTight, [=](auto& r) {
      auto* gy = r.inout("y", x);
      r.ops().swish(n, gy, gy);
    }));
    cases.push_back(op_case("add_inplace", params, kRounded, [=](auto& r) {
      const auto* gx = r.in("x", x);
      r.ops().add_inplace(n, r.inout("y", y0), gx);
    }));
  }
  struct Up {
    int B, C, H, W;
  };
  for (const Up& u : {Up{1, 1, 1, 1}, Up{2, 3, 5, 7}, Up{1, 16, 16, 16}}) {
    const Vec x = rand_vec((size_t)u.B * u.C * u.H * u.W, 700 + u.W);
    const std::string params = "B=" + std::to_string(u.B) + " C=" + std::to_string(u.C) + " " +
                               std::to_string(u.H) + "x" + std::to_string(u.W);
    cases.push_back(op_case("upsample_nearest2x", params, kExact, [=](auto& r) {
      const auto* gx = r.in("x", x);
      r.ops().upsample_nearest2x(u.B, u.C, u.H, u.W, gx, r.out("y", 4 * x.size()));
    }));
  }
  return cases;
}

// ---- attention ---------------------------------------------------------------------------------

std::vector<OpCase> attention_cases() {
  struct Shape {
    int B, C;
    int64_t HW;
  };
  // HW 1 (softmax of one score), 16 (the fixture's 4x4), 256 (16x16: a 256 px image's lowest
  // level), and 2304 (48x48), more query rows than the cpu's 16 MiB score tile holds (2048).
  const std::vector<Shape> shapes = {{2, 8, 1}, {2, 24, 16}, {1, 64, 256}, {1, 8, 2304}};
  std::vector<OpCase> cases;
  uint32_t seed = 800;
  for (const Shape& s : shapes) {
    seed += 10;
    const size_t n = (size_t)s.B * s.C * s.HW;
    // Scores up to ~10: peaked softmax rows as well as flat ones.
    const Vec q = rand_vec(n, seed, -2.0f, 2.0f), k = rand_vec(n, seed + 1, -2.0f, 2.0f);
    const Vec v = rand_vec(n, seed + 2);
    const std::string params =
        "B=" + std::to_string(s.B) + " C=" + std::to_string(s.C) + " HW=" + std::to_string(s.HW);
    cases.push_back(op_case("spatial_attention", params, kSum, [=](auto& r) {
      const auto* gq = r.in("q", q);
      const auto* gk = r.in("k", k);
      const auto* gv = r.in("v", v);
      r.ops().spatial_attention(s.B, s.C, s.HW, gq, gk, gv, r.out("out", n));
    }));
  }
  return cases;
}

// ---- l2 normalisation, quantiser, code lookup ----------------------------------------------

// K random unit rows of d values (normalised in double, rounded to float).
Vec unit_rows(int K, int D, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  Vec rows((size_t)K * D);
  for (int e = 0; e < K; e++) {
    std::vector<double> r(D);
    double sq = 0;
    for (double& v : r) {
      v = normal(rng);
      sq += v * v;
    }
    for (int d = 0; d < D; d++) rows[(size_t)e * D + d] = float(r[d] / std::sqrt(sq));
  }
  return rows;
}

// Latents (B, D, HW) with a clear nearest code: each column is a code row plus noise of 1e-3,
// times a scale in [0.2, 3) (the quantiser normalises it). With K <= 16384 unit rows in D = 8
// the second-nearest code is ~0.05 or more further in squared distance, far above float noise.
Vec latents_near_codes(int B, int D, int64_t HW, const Vec& codebook, int K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, K - 1);
  std::uniform_real_distribution<float> noise(-1e-3f, 1e-3f), scale(0.2f, 3.0f);
  Vec z((size_t)B * D * HW);
  for (int b = 0; b < B; b++) {
    for (int64_t i = 0; i < HW; i++) {
      const int e = pick(rng);
      const float sc = scale(rng);
      for (int d = 0; d < D; d++) {
        z[((size_t)b * D + d) * HW + i] = (codebook[(size_t)e * D + d] + noise(rng)) * sc;
      }
    }
  }
  return z;
}

std::vector<OpCase> quantizer_cases() {
  std::vector<OpCase> cases;
  struct Rows {
    int64_t n;
    int d;
  };
  for (const Rows& s : {Rows{1, 1}, Rows{37, 8}, Rows{1000, 13}}) {
    Vec x = rand_vec((size_t)s.n * s.d, 900 + s.d, -3.0f, 3.0f);
    std::fill(x.begin(), x.begin() + s.d, 0.0f);  // a zero row stays zero (max(|x|, 1e-12))
    const std::string params = "n=" + std::to_string(s.n) + " d=" + std::to_string(s.d);
    for (bool in_place : {false, true}) {
      cases.push_back(op_case("l2_normalize_rows", params + (in_place ? " in place" : ""),
                              kTight, [=](auto& r) {
        auto* gy = in_place ? r.inout("y", x) : r.out("y", x.size());
        const auto* gx = in_place ? gy : r.in("x", x);
        r.ops().l2_normalize_rows(s.n, s.d, gx, gy);
      }));
    }
  }
  struct Quant {
    int B, D;
    int64_t HW;
    int K;
  };
  // dist2 is 2 - 2 cos of nearly equal unit vectors (~1e-6): float leaves an absolute error of
  // a few u around 1 there, hence the floor.
  constexpr OpTolerance kDist{1e-5, 1e-4, 1e-2, 1e-6};
  for (const Quant& s : {Quant{1, 8, 1, 1}, Quant{2, 8, 16, 512}, Quant{1, 8, 256, 16384},
                         Quant{3, 5, 37, 33}}) {
    const Vec codebook = unit_rows(s.K, s.D, 1000 + s.K);
    const Vec z = latents_near_codes(s.B, s.D, s.HW, codebook, s.K, 1100 + s.K);
    const size_t n = (size_t)s.B * s.HW;
    const std::string params = "B=" + std::to_string(s.B) + " D=" + std::to_string(s.D) +
                               " HW=" + std::to_string(s.HW) + " K=" + std::to_string(s.K);
    cases.push_back(op_case("quantize_l2", params, kDist, [=](auto& r) {
      const auto* gz = r.in("z", z);
      const auto* gc = r.in("codebook", codebook);
      auto* zq = r.out("zq", n * s.D);
      auto* dist2 = r.out("dist2", n);
      int32_t* index = r.out_index("index", n);
      r.ops().quantize_l2(s.B, s.D, s.HW, gz, gc, s.K, index, zq, dist2);
    }));
    cases.push_back(op_case("quantize_l2", params + " index only", kExact, [=](auto& r) {
      const auto* gz = r.in("z", z);
      const auto* gc = r.in("codebook", codebook);
      int32_t* index = r.out_index("index", n);
      r.ops().quantize_l2(s.B, s.D, s.HW, gz, gc, s.K, index, nullptr, nullptr);
    }));
    std::mt19937 rng(1200 + s.K);
    std::uniform_int_distribution<int> pick(0, s.K - 1);
    Idx codes(n);
    for (int32_t& c : codes) c = pick(rng);
    codes[0] = s.K - 1;  // the last row
    cases.push_back(op_case("embed_codes", params, kExact, [=](auto& r) {
      const int32_t* gi = r.in_index("index", codes);
      const auto* gc = r.in("codebook", codebook);
      r.ops().embed_codes(s.B, s.D, s.HW, gi, gc, s.K, r.out("zq", n * s.D));
    }));
  }
  return cases;
}

const std::vector<std::string> kCpuBackends = {"cpu-ref", "cpu", "cpu-small-scratch"};

// Restores the cpu thread setting when a test ends, also on failure.
struct ThreadSetting {
  ~ThreadSetting() { cb::set_cpu_threads(0); }
};

// The outputs of the reduction-heavy cpu ops on model-like shapes, with `threads` threads.
std::vector<float> cpu_outputs(int threads) {
  cb::set_cpu_threads(threads);
  cb::CpuConvOps cpu;
  std::vector<float> all;
  auto keep = [&](const Vec& v) { all.insert(all.end(), v.begin(), v.end()); };
  const cb::Conv2dShape wide{1, 64, 40, 48, 64, 3, 1, 1, 1}, down{2, 32, 33, 31, 48, 3, 2, 0, 1};
  for (const cb::Conv2dShape& s : {wide, down}) {
    const Vec x = rand_vec((size_t)s.B * s.Cin * s.H * s.W, 2000 + s.Cin);
    const Vec w = rand_vec((size_t)s.Cout * s.Cin * 9, 2001 + s.Cin), b = rand_vec(s.Cout, 2002);
    Vec y((size_t)s.B * s.Cout * s.out_h() * s.out_w());
    cpu.conv2d(s, x.data(), w.data(), b.data(), y.data());
    keep(y);
  }
  const int B = 2, C = 128;
  const int64_t HW = 400;
  Vec x = rand_vec((size_t)B * C * HW, 2010, -3.0f, 5.0f);
  const Vec gamma = rand_vec(C, 2011), beta = rand_vec(C, 2012);
  Vec y(x.size());
  cpu.group_norm_swish(B, C, HW, 32, 1e-6f, x.data(), gamma.data(), beta.data(), y.data());
  keep(y);
  const Vec k = rand_vec(x.size(), 2013), v = rand_vec(x.size(), 2014);
  cpu.spatial_attention(B, C, HW, x.data(), k.data(), v.data(), y.data());
  keep(y);
  const int K = 4096;
  const Vec codebook = unit_rows(K, 8, 2015);
  const Vec z = rand_vec((size_t)B * 8 * HW, 2016);
  std::vector<int32_t> index(B * HW);
  Vec dist2(B * HW);
  cpu.quantize_l2(B, 8, HW, z.data(), codebook.data(), K, index.data(), nullptr, dist2.data());
  keep(dist2);
  for (int32_t i : index) all.push_back((float)i);
  return all;
}

}  // namespace

CB_TEST("conv-ops-cpu", conv2d_matches_oracle) { cbt::run_op_table(conv_cases(), kCpuBackends); }
CB_TEST("conv-ops-cpu", group_norm_matches_oracle) {
  cbt::run_op_table(norm_cases(), kCpuBackends);
}
CB_TEST("conv-ops-cpu", elementwise_ops_match_oracle) {
  cbt::run_op_table(elementwise_cases(), kCpuBackends);
}
CB_TEST("conv-ops-cpu", spatial_attention_matches_oracle) {
  cbt::run_op_table(attention_cases(), kCpuBackends);
}
CB_TEST("conv-ops-cpu", quantizer_matches_oracle) {
  cbt::run_op_table(quantizer_cases(), kCpuBackends);
}

void expect_bitwise(const std::string& what, const std::vector<float>& a,
                    const std::vector<float>& b) {
  EXPECT(a.size() == b.size(), what + ": output sizes differ");
  for (size_t i = 0; i < a.size(); i++) {
    EXPECT(std::memcmp(&a[i], &b[i], sizeof(float)) == 0,
           what + ": value " + std::to_string(i) + " differs (" + number(a[i]) + " vs " +
               number(b[i]) + ")");
  }
}

// Tiles are cut by the scratch bound and every output has one writer, so repeated runs are
// bitwise equal at any thread count. (Across thread counts only the sgemm-free ops are: OpenBLAS
// partitions a product differently with another thread count, which moves last bits.)
CB_TEST("conv-ops-cpu", results_do_not_depend_on_thread_timing) {
  ThreadSetting restore;
  for (int threads : {1, 2, 3}) {
    expect_bitwise(std::to_string(threads) + " threads, second run", cpu_outputs(threads),
                   cpu_outputs(threads));
  }
  const int B = 2, C = 96;
  const int64_t HW = 1000;
  const Vec x = rand_vec((size_t)B * C * HW, 2020, -3.0f, 5.0f);
  const Vec gamma = rand_vec(C, 2021), beta = rand_vec(C, 2022);
  auto norm = [&](int threads) {
    cb::set_cpu_threads(threads);
    cb::CpuConvOps cpu;
    Vec y(x.size());
    cpu.group_norm_swish(B, C, HW, 32, 1e-6f, x.data(), gamma.data(), beta.data(), y.data());
    return y;
  };
  const Vec one = norm(1);
  for (int threads : {2, 3}) {
    expect_bitwise("group_norm_swish, " + std::to_string(threads) + " threads vs 1", norm(threads),
                   one);
  }
}

CB_TEST("cuda", conv_ops_conv2d_matches_oracle) { cbt::run_op_table(conv_cases(), {"cuda"}); }
CB_TEST("cuda", conv_ops_group_norm_matches_oracle) {
  cbt::run_op_table(norm_cases(), {"cuda"});
}
CB_TEST("cuda", conv_ops_elementwise_match_oracle) {
  cbt::run_op_table(elementwise_cases(), {"cuda"});
}
CB_TEST("cuda", conv_ops_spatial_attention_matches_oracle) {
  cbt::run_op_table(attention_cases(), {"cuda"});
}
CB_TEST("cuda", conv_ops_quantizer_matches_oracle) {
  cbt::run_op_table(quantizer_cases(), {"cuda"});
}
