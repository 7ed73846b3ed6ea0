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
#include <type_traits>
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

// Backward ops. The same kind of bound, derived per op; the worst backend is the float reference
// (plain float sums in index order), which each bound below must still admit with margin
// (measured worst |diff| / RMS in brackets: cpu-ref / cpu).
constexpr double kU = 5.9604645e-8;  // 2^-24
// conv2d_backward: dw sums B Ho Wo <= 2310 products (B=2, 35x33), dbias as many values, dx
// Cout k k <= 576; a sum of N terms in another order errs by ~sqrt(N) u = 2.9e-6 of its RMS at
// N = 2310, up to ~4 times that at the worst of thousands of elements: atol 2.5e-5
// [7.6e-6 / 2.3e-6]; nmse ~ N u^2 = 8e-12.
constexpr OpTolerance kConvGrad{2.5e-5, 1e-5, 1e-11, 0};
// GroupNorm's backward: dx = rstd (g - mean(g) - xhat mean(g xhat)) costs ~10 roundings of
// terms of dx's size (and the exp of swish', 2e-7), the means and dgamma, dbeta are sums of
// n <= 1024 values (sqrt(n) u = 1.9e-6 of their size): atol 4e-6 [1.4e-6 / 9.5e-7]. A group of
// one value has dx = 0 exactly (xhat = 0, g = mean(g)); cpu-ref and cpu give exactly 0 there.
constexpr OpTolerance kNormGrad{4e-6, 1e-5, 1e-12, 1e-7};
// With a mean offset of 50-100 a float mean of n = 1024 values is off by ~sqrt(n) u |offset|
// ~ 1e-4 of the group's spread of 1.15, and xhat with it (see the top of the file; cpu keeps the
// mean as two floats and stays at [9.5e-7]): atol 4e-4 [1.0e-4], nmse (1e-4)^2 x 4.
constexpr OpTolerance kOffsetNormGrad{4e-4, 1e-5, 4e-8, 1e-7};
// upsample_nearest2x_backward: three float adds of four values of |dy| <= 1, each rounding by
// at most u of a partial sum <= 4: 12 u absolute against an RMS of 2/sqrt(3), 6.2e-7 of it:
// atol 8e-7 [2.1e-7 / 1.6e-7].
constexpr OpTolerance kSum4{8e-7, 2 * kU, 1e-13, 0};
// swish_backward, x in [-20, 20]: s + x s (1 - s) in float takes 1 - s from a rounded s, an
// absolute error of up to |x| u = 1.2e-6 at |x| = 20, against an RMS of dx of 0.41: 2.9e-6 of
// it; plus the exp's 2e-7: atol 6e-6 [2.4e-6 / 4.7e-7]. cpu computes 1 - s as e s (no loss).
constexpr OpTolerance kSwishGrad{6e-6, 1e-5, 1e-12, 1e-7};
// l2_normalize_rows_backward: sums of d <= 13 products and the projection dy - y (y . dy),
// a few u of |dy| / |x| per element; |x| spans ~[0.3, 10] over the rows, so an element's
// error is up to ~20 u of dx's RMS: atol 2e-6 [5.7e-7 / 2.3e-7]. The clamped zero rows
// (dx = dy 1e12) are one rounding: rtol.
constexpr OpTolerance kL2Grad{2e-6, 1e-5, 1e-12, 1e-7};
// quantize_l2_backward: dz as l2_normalize_rows_backward (D <= 8), dcodebook a start value
// plus 2 codebook_scale (zq - zn) per position, zn off by ~3 u (a float norm and division):
// ~6 u of each term, relative to the element (rtol) rather than the RMS, which the untouched
// rows' small start values set when K = 16384 [3.5e-6 / 7.8e-7 of the RMS there].
constexpr OpTolerance kQuantGrad{1e-6, 1e-5, 1e-12, 2e-7};
// spatial_attention_backward: dv and dq sum HW <= 2304 terms, dk HW as well, in another order
// (sqrt(2304) u = 2.9e-6 of the RMS, ~4x at the worst element), and dS = P (dP - P . dP)
// cancels terms of dP's size: atol 3e-5 [1.3e-5 / 5.2e-6]; nmse ~ HW u^2 = 8e-12. HW = 1 has
// dq = dk = 0 exactly in all backends.
constexpr OpTolerance kAttentionGrad{3e-5, 1e-4, 1e-11, 1e-7};
// pixel_loss's drec = 2 l2 (rec - target) + l1 sign(rec - target): the two terms have the same
// sign, so three roundings (difference, product, sum) err by at most 3 u of |drec| [1.7 u].
constexpr OpTolerance kLossGrad{0, 3 * kU, 1e-13, 0};
// pixel_loss's sums of count positive terms: cpu sums in double (one rounding, u), cpu-ref in
// float in index order, which is biased: once the running sum S is large, every term loses its
// bits below ulp(S) / 2 (the worst-case bound is (count - 1) u). Measured 5.4e-7 at count 1001,
// 3.7e-6 at 70000, 9e-5 at 393216, i.e. up to count u / 260: rtol count u / 50, at least 2u.
OpTolerance loss_sums_tolerance(int64_t count) {
  const double rtol = std::max(2 * kU, (double)count * kU / 50);
  return OpTolerance{0, rtol, rtol * rtol, 0};
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

Vec rand_vec(size_t count, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  return cbt::random_uniform(count, seed, lo, hi);
}

std::string conv_shape_params(const cb::Conv2dShape& s) {
  return "B=" + std::to_string(s.B) + " Cin=" + std::to_string(s.Cin) + " " +
         std::to_string(s.H) + "x" + std::to_string(s.W) + " Cout=" + std::to_string(s.Cout) +
         " k=" + std::to_string(s.k) + " stride=" + std::to_string(s.stride) + " pad=(" +
         std::to_string(s.pad_begin) + "," + std::to_string(s.pad_end) + ")";
}

std::string conv_params(const cb::Conv2dShape& s, bool bias) {
  return conv_shape_params(s) + (bias ? " bias" : " no bias");
}

// ---- conv2d -------------------------------------------------------------------------------

struct ConvShape {
  cb::Conv2dShape s;
  bool bias;
};

// The convs of the forward and backward tables: every path of the forward (conv_ops_cpu_conv.cc)
// and of the backward (conv_ops_cpu_conv_backward.cc: its dx runs as a forward conv of dy with
// Cin and Cout swapped, or through col2im).
const std::vector<ConvShape>& conv_shapes() {
  // {B, Cin, H, W, Cout, k, stride, pad_begin, pad_end}
  static const std::vector<ConvShape> shapes = {
      {{1, 1, 1, 1, 1, 1, 1, 0, 0}, true},      // one value
      {{2, 5, 6, 9, 7, 1, 1, 0, 0}, true},      // 1x1 (nin_shortcut, q/k/v): straight sgemm
      {{1, 64, 8, 8, 33, 1, 1, 0, 0}, false},   // 1x1, Cout no multiple of 8
      {{2, 3, 13, 11, 5, 1, 2, 0, 0}, true},    // 1x1 stride 2 (im2col of a 1x1)
      {{2, 5, 7, 9, 6, 3, 1, 1, 1}, true},      // 3x3 pad 1, odd sizes, B > 1
      {{1, 3, 17, 17, 13, 3, 1, 1, 1}, false},  // conv_in-like: Cin 3
      {{1, 9, 1, 1, 4, 3, 1, 1, 1}, true},      // 3x3 on a 1x1 image: padding only
      {{2, 32, 35, 33, 20, 3, 1, 1, 1}, true},  // wide enough for the per-tap sgemm path
      {{1, 64, 32, 40, 64, 3, 1, 1, 1}, true},  // per-tap path, weights above 64 KiB of scratch
      {{2, 20, 33, 35, 32, 3, 1, 1, 1}, false}, // per-tap path for the backward's dx (Cout 32)
      {{1, 40, 32, 32, 3, 3, 1, 1, 1}, false},  // conv_out-like: Cout 3
      {{1, 6, 16, 16, 7, 3, 2, 0, 1}, true},    // the downsampler: pad (0, 1), stride 2
      {{2, 11, 9, 11, 5, 3, 2, 0, 1}, false},   // downsampler at odd sizes
      {{1, 32, 32, 32, 32, 3, 2, 0, 1}, true},  // downsampler, model-like channels
      {{1, 4, 10, 7, 6, 3, 2, 1, 1}, true},     // stride 2 pad 1/1
      {{1, 7, 12, 12, 9, 3, 1, 0, 0}, true},    // 3x3 no padding
      {{1, 3, 4, 5, 2, 1, 1, 1, 1}, true},      // 1x1 padded: the backward's col2im at stride 1
  };
  return shapes;
}

std::vector<OpCase> conv_cases() {
  std::vector<OpCase> cases;
  uint32_t seed = 100;
  for (const ConvShape& sh : conv_shapes()) {
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

// ---- backward ops --------------------------------------------------------------------------
// Parameter gradients start non-zero (the ops add to them); activation gradients start as NaN
// (the runner's outputs), so an element left unwritten fails.

std::vector<OpCase> conv_backward_cases() {
  std::vector<OpCase> cases;
  uint32_t seed = 3000;
  for (const ConvShape& sh : conv_shapes()) {
    const cb::Conv2dShape s = sh.s;
    seed += 10;
    const Vec x = rand_vec((size_t)s.B * s.Cin * s.H * s.W, seed);
    const Vec w = rand_vec((size_t)s.Cout * s.Cin * s.k * s.k, seed + 1);
    const Vec dy = rand_vec((size_t)s.B * s.Cout * s.out_h() * s.out_w(), seed + 2);
    const Vec dw0 = rand_vec(w.size(), seed + 3), db0 = rand_vec(s.Cout, seed + 4);
    // Each shape twice, with dx and without; dbias in one of the two (with dx where the shape
    // has a bias, without dx otherwise), so every pairing of null dx and null dbias runs.
    for (bool with_dx : {true, false}) {
      const bool with_db = sh.bias == with_dx;
      const std::string params =
          conv_shape_params(s) + (with_dx ? " dx" : " no dx") + (with_db ? " dbias" : "");
      cases.push_back(op_case("conv2d_backward", params, kConvGrad, [=](auto& r) {
        const auto* gx = r.in("x", x);
        const auto* gw = r.in("w", w);
        const auto* gdy = r.in("dy", dy);
        auto* gdx = with_dx ? r.out("dx", x.size()) : nullptr;
        auto* gdw = r.inout("dw", dw0);
        auto* gdb = with_db ? r.inout("dbias", db0) : nullptr;
        r.ops().conv2d_backward(s, gx, gw, gdy, gdx, gdw, gdb);
      }));
    }
  }
  return cases;
}

std::vector<OpCase> norm_backward_cases() {
  struct Shape {
    int B, C;
    int64_t HW;
    int groups;
    float offset;  // added to every x
    bool in_place;  // dx == dy
  };
  const std::vector<Shape> shapes = {
      {2, 64, 37, 32, 0.0f, false},    // 2 channels per group, odd HW
      {1, 32, 1, 32, 0.0f, false},     // one value per group: xhat 0, dx 0 in exact arithmetic
      {1, 96, 64, 32, 0.0f, true},     // 3 channels per group, in place
      {2, 64, 64, 32, 100.0f, false},  // a large mean (GroupNorm with an offset)
      {2, 128, 256, 32, -50.0f, true}, // model-like, B > 1, negative offset, in place
      {3, 40, 5, 8, 0.5f, false},      // another group count
  };
  std::vector<OpCase> cases;
  uint32_t seed = 3500;
  for (const Shape& s : shapes) {
    for (bool with_swish : {false, true}) {
      seed += 10;
      const size_t count = (size_t)s.B * s.C * s.HW;
      Vec x = rand_vec(count, seed, -2.0f, 2.0f);
      for (float& v : x) v += s.offset;
      const Vec gamma = rand_vec(s.C, seed + 1, 0.5f, 1.5f);
      const Vec beta = rand_vec(s.C, seed + 2, -0.3f, 0.3f);
      const Vec dy = rand_vec(count, seed + 3);
      const Vec dgamma0 = rand_vec(s.C, seed + 4), dbeta0 = rand_vec(s.C, seed + 5);
      const std::string params = "B=" + std::to_string(s.B) + " C=" + std::to_string(s.C) +
                                 " HW=" + std::to_string(s.HW) + " groups=" +
                                 std::to_string(s.groups) + " offset=" + number(s.offset) +
                                 (s.in_place ? " in place" : "");
      const OpTolerance tol = std::fabs(s.offset) > 1.0f ? kOffsetNormGrad : kNormGrad;
      cases.push_back(op_case(with_swish ? "group_norm_swish_backward" : "group_norm_backward",
                              params, tol, [=](auto& r) {
        const auto* gx = r.in("x", x);
        const auto* gg = r.in("gamma", gamma);
        const auto* gb = r.in("beta", beta);
        auto* gdx = s.in_place ? r.inout("dx", dy) : r.out("dx", count);
        const auto* gdy = s.in_place ? gdx : r.in("dy", dy);
        auto* gdg = r.inout("dgamma", dgamma0);
        auto* gdb = r.inout("dbeta", dbeta0);
        if (with_swish) {
          r.ops().group_norm_swish_backward(s.B, s.C, s.HW, s.groups, 1e-6f, gx, gg, gb, gdy,
                                            gdx, gdg, gdb);
        } else {
          r.ops().group_norm_backward(s.B, s.C, s.HW, s.groups, 1e-6f, gx, gg, gb, gdy, gdx,
                                      gdg, gdb);
        }
      }));
    }
  }
  return cases;
}

std::vector<OpCase> elementwise_backward_cases() {
  std::vector<OpCase> cases;
  for (int64_t n : {int64_t(1), int64_t(1001), int64_t(70000)}) {
    const Vec x = rand_vec(n, 3700 + (uint32_t)n, -20.0f, 20.0f);  // both tails of sigmoid
    const Vec dy = rand_vec(n, 3800 + (uint32_t)n);
    const std::string params = "count=" + std::to_string(n);
    cases.push_back(op_case("swish_backward", params, kSwishGrad, [=](auto& r) {
      const auto* gx = r.in("x", x);
      const auto* gdy = r.in("dy", dy);
      r.ops().swish_backward(n, gx, gdy, r.out("dx", n));
    }));
    cases.push_back(op_case("swish_backward", params + " in place", kSwishGrad, [=](auto& r) {
      const auto* gx = r.in("x", x);
      auto* gdx = r.inout("dx", dy);
      r.ops().swish_backward(n, gx, gdx, gdx);
    }));
  }
  struct Up {
    int B, C, H, W;
  };
  for (const Up& u : {Up{1, 1, 1, 1}, Up{2, 3, 5, 7}, Up{1, 16, 16, 16}}) {
    const size_t count = (size_t)u.B * u.C * u.H * u.W;
    const Vec dy = rand_vec(4 * count, 3900 + u.W);
    const std::string params = "B=" + std::to_string(u.B) + " C=" + std::to_string(u.C) + " " +
                               std::to_string(u.H) + "x" + std::to_string(u.W);
    cases.push_back(op_case("upsample_nearest2x_backward", params, kSum4, [=](auto& r) {
      const auto* gdy = r.in("dy", dy);
      r.ops().upsample_nearest2x_backward(u.B, u.C, u.H, u.W, gdy, r.out("dx", count));
    }));
  }
  struct Rows {
    int64_t n;
    int d;
    bool zero;  // every row zero: dx = dy / 1e-12 (the clamp)
  };
  for (const Rows& s : {Rows{1, 1, false}, Rows{37, 8, false}, Rows{1000, 13, false},
                        Rows{16384, 8, false}, Rows{3, 4, true}}) {
    Vec x = rand_vec((size_t)s.n * s.d, 4000 + s.d, -3.0f, 3.0f);
    if (s.zero) std::fill(x.begin(), x.end(), 0.0f);
    const Vec dy = rand_vec(x.size(), 4100 + s.d);
    const std::string params =
        "n=" + std::to_string(s.n) + " d=" + std::to_string(s.d) + (s.zero ? " zero rows" : "");
    cases.push_back(op_case("l2_normalize_rows_backward", params, kL2Grad, [=](auto& r) {
      const auto* gx = r.in("x", x);
      const auto* gdy = r.in("dy", dy);
      r.ops().l2_normalize_rows_backward(s.n, s.d, gx, gdy, r.out("dx", x.size()));
    }));
  }
  struct Loss {
    int64_t count;
    float l2, l1;
  };
  // 393216 = 2 x 3 x 256 x 256: more blocks than one thread's share.
  for (const Loss& s : {Loss{1, 0.5f, 0.0f}, Loss{1001, 1.0f, 0.0f}, Loss{1001, 0.25f, 1.0f},
                        Loss{70000, 1.0f / 70000, 0.0f}, Loss{393216, 1.0f, 0.1f}}) {
    const Vec rec = rand_vec(s.count, 4200 + (uint32_t)s.count);
    Vec target = rand_vec(s.count, 4300 + (uint32_t)s.count);
    for (int64_t i = 0; i < s.count; i += 7) target[i] = rec[i];  // sign(0) = 0
    const std::string params = "count=" + std::to_string(s.count) + " l2=" + number(s.l2) +
                               " l1=" + number(s.l1);
    // Two cases, as drec and the sums have different tolerances: each leaves the other output
    // in a buffer the runner uploads but does not compare (its guards are still checked).
    for (bool check_sums : {false, true}) {
      const OpTolerance tol = check_sums ? loss_sums_tolerance(s.count) : kLossGrad;
      cases.push_back(op_case("pixel_loss", params + (check_sums ? " sums" : " drec"), tol,
                              [=](auto& r) {
        using Real = std::remove_pointer_t<decltype(r.out("", 0))>;  // float or double
        const auto* grec = r.in("rec", rec);
        const auto* gt = r.in("target", target);
        Real* drec = check_sums ? const_cast<Real*>(r.in("drec (unchecked)", Vec(s.count)))
                                : r.out("drec", s.count);
        Real* sums = check_sums ? r.out("sums", 2)
                                : const_cast<Real*>(r.in("sums (unchecked)", Vec(2)));
        r.ops().pixel_loss(s.count, grec, gt, s.l2, s.l1, drec, sums);
      }));
    }
  }
  return cases;
}

std::vector<OpCase> attention_backward_cases() {
  struct Shape {
    int B, C;
    int64_t HW;
  };
  // HW 1 (dq = dk = 0: the softmax of one score is constant), 37 (odd), 256 (16x16; many tiles
  // with 64 KiB of scratch) and 2304 (48x48: tiles with the default scratch too).
  const std::vector<Shape> shapes = {{2, 8, 1}, {2, 24, 37}, {1, 64, 256}, {1, 8, 2304}};
  std::vector<OpCase> cases;
  uint32_t seed = 4400;
  for (const Shape& s : shapes) {
    seed += 10;
    const size_t n = (size_t)s.B * s.C * s.HW;
    const Vec q = rand_vec(n, seed, -2.0f, 2.0f), k = rand_vec(n, seed + 1, -2.0f, 2.0f);
    const Vec v = rand_vec(n, seed + 2), dout = rand_vec(n, seed + 3);
    const std::string params =
        "B=" + std::to_string(s.B) + " C=" + std::to_string(s.C) + " HW=" + std::to_string(s.HW);
    cases.push_back(op_case("spatial_attention_backward", params, kAttentionGrad, [=](auto& r) {
      const auto* gq = r.in("q", q);
      const auto* gk = r.in("k", k);
      const auto* gv = r.in("v", v);
      const auto* gd = r.in("dout", dout);
      auto* dq = r.out("dq", n);
      auto* dk = r.out("dk", n);
      auto* dv = r.out("dv", n);
      r.ops().spatial_attention_backward(s.B, s.C, s.HW, gq, gk, gv, gd, dq, dk, dv);
    }));
  }
  return cases;
}

std::vector<OpCase> quantizer_backward_cases() {
  struct Quant {
    int B, D;
    int64_t HW;
    int K;
    bool means;  // LlamaGen's scales (1 / (B D HW), beta 0.25 of it), else 1 and 0.25
    bool zero;   // every latent column zero (the normalisation's clamp)
  };
  std::vector<OpCase> cases;
  // The large codebook's case is smaller under the emulation (still several blocks of rows).
  const Quant large = cbt::emulated_cuda() ? Quant{1, 8, 32, 1024, false, false}
                                           : Quant{1, 8, 256, 16384, false, false};
  for (const Quant& s : {Quant{1, 8, 1, 1, false, false}, Quant{2, 8, 16, 512, true, false}, large,
                         Quant{3, 5, 37, 33, false, false}, Quant{2, 8, 64, 4, true, false},
                         Quant{1, 4, 3, 2, false, true}}) {
    const uint32_t seed = 4500 + (uint32_t)s.K + (s.zero ? 7 : 0);
    const Vec codebook = unit_rows(s.K, s.D, seed);
    const size_t n = (size_t)s.B * s.HW, count = n * s.D;
    // Any index will do (the backward takes it as given): random rows, each latent column its
    // row plus noise of 0.3 (so zn - zq is not small), times a scale in [0.2, 3).
    std::mt19937 rng(seed + 1);
    std::uniform_int_distribution<int> pick(0, s.K - 1);
    std::uniform_real_distribution<float> noise(-0.3f, 0.3f), scale(0.2f, 3.0f);
    Idx index(n);
    Vec z(count, 0.0f);
    for (int b = 0; b < s.B; b++) {
      for (int64_t i = 0; i < s.HW; i++) {
        const int e = pick(rng);
        index[(size_t)b * s.HW + i] = e;
        const float sc = scale(rng);
        for (int d = 0; d < s.D && !s.zero; d++) {
          z[((size_t)b * s.D + d) * s.HW + i] = (codebook[(size_t)e * s.D + d] + noise(rng)) * sc;
        }
      }
    }
    const Vec dzq = rand_vec(count, seed + 2);
    const Vec dcodebook0 = rand_vec(codebook.size(), seed + 3, -0.1f, 0.1f);
    const float cs = s.means ? 1.0f / (float)count : 1.0f, commit = 0.25f * cs;
    const std::string params = "B=" + std::to_string(s.B) + " D=" + std::to_string(s.D) +
                               " HW=" + std::to_string(s.HW) + " K=" + std::to_string(s.K) +
                               (s.means ? " mean scales" : "") + (s.zero ? " zero latents" : "");
    cases.push_back(op_case("quantize_l2_backward", params, kQuantGrad, [=](auto& r) {
      const auto* gz = r.in("z", z);
      const auto* gc = r.in("codebook", codebook);
      const int32_t* gi = r.in_index("index", index);
      const auto* gdzq = r.in("dzq", dzq);
      auto* dz = r.out("dz", count);
      auto* dcb = r.inout("dcodebook", dcodebook0);
      r.ops().quantize_l2_backward(s.B, s.D, s.HW, gz, gc, s.K, gi, gdzq, cs, commit, dz, dcb);
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

// The backward ops' outputs on model-like shapes with `threads` threads: with sgemm (conv2d,
// attention) when `with_sgemm`, else the sgemm-free ones, which must not depend on the thread
// count at all. The sizes are above the ops' grains, so each splits over 2 and 3 threads.
std::vector<float> cpu_backward_outputs(int threads, bool with_sgemm) {
  cb::set_cpu_threads(threads);
  cb::CpuConvOps cpu;
  std::vector<float> all;
  auto keep = [&](const Vec& v) { all.insert(all.end(), v.begin(), v.end()); };
  if (with_sgemm) {
    const cb::Conv2dShape wide{2, 64, 40, 48, 64, 3, 1, 1, 1}, down{2, 32, 33, 31, 48, 3, 2, 0, 1};
    for (const cb::Conv2dShape& s : {wide, down}) {
      const Vec x = rand_vec((size_t)s.B * s.Cin * s.H * s.W, 5000 + s.Cin);
      const Vec w = rand_vec((size_t)s.Cout * s.Cin * 9, 5001 + s.Cin);
      const Vec dy = rand_vec((size_t)s.B * s.Cout * s.out_h() * s.out_w(), 5002 + s.Cin);
      Vec dx(x.size()), dw = rand_vec(w.size(), 5003), db = rand_vec(s.Cout, 5004);
      cpu.conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
      keep(dx);
      keep(dw);
      keep(db);
    }
    const int B = 2, C = 64;
    const int64_t HW = 400;
    const size_t n = (size_t)B * C * HW;
    const Vec q = rand_vec(n, 5010), k = rand_vec(n, 5011), v = rand_vec(n, 5012);
    const Vec dout = rand_vec(n, 5013);
    Vec dq(n), dk(n), dv(n);
    cpu.spatial_attention_backward(B, C, HW, q.data(), k.data(), v.data(), dout.data(),
                                   dq.data(), dk.data(), dv.data());
    keep(dq);
    keep(dk);
    keep(dv);
    return all;
  }
  {
    const int B = 4, C = 128, groups = 32;
    const int64_t HW = 1024;  // 4 channels x 1024 per group: 128 groups of 4096 values
    const Vec x = rand_vec((size_t)B * C * HW, 5020, -3.0f, 5.0f);
    const Vec gamma = rand_vec(C, 5021), beta = rand_vec(C, 5022);
    Vec dx = rand_vec(x.size(), 5023);  // dy, in place
    Vec dgamma = rand_vec(C, 5024), dbeta = rand_vec(C, 5025);
    cpu.group_norm_swish_backward(B, C, HW, groups, 1e-6f, x.data(), gamma.data(), beta.data(),
                                  dx.data(), dx.data(), dgamma.data(), dbeta.data());
    keep(dx);
    keep(dgamma);
    keep(dbeta);
    Vec dxs(x.size());
    cpu.swish_backward((int64_t)x.size(), x.data(), dx.data(), dxs.data());
    keep(dxs);
    Vec dup(x.size() / 4);
    cpu.upsample_nearest2x_backward(B, C, 16, 16, x.data(), dup.data());
    keep(dup);
  }
  {
    const int64_t count = 393216;  // 96 blocks of pixel_loss
    const Vec rec = rand_vec(count, 5030), target = rand_vec(count, 5031);
    Vec drec(count), sums(2);
    cpu.pixel_loss(count, rec.data(), target.data(), 1.0f, 0.1f, drec.data(), sums.data());
    keep(drec);
    keep(sums);
  }
  {
    const int B = 2, D = 8, K = 4096;
    const int64_t HW = 4096;
    const Vec codebook = unit_rows(K, D, 5040);
    const Vec z = rand_vec((size_t)B * D * HW, 5041), dzq = rand_vec(z.size(), 5042);
    Idx index((size_t)B * HW);
    for (size_t i = 0; i < index.size(); i++) index[i] = (int32_t)((i * 7919) % 64);  // repeats
    Vec dz(z.size()), dcodebook = rand_vec(codebook.size(), 5043);
    cpu.quantize_l2_backward(B, D, HW, z.data(), codebook.data(), K, index.data(), dzq.data(),
                             1.0f, 0.25f, dz.data(), dcodebook.data());
    keep(dz);
    keep(dcodebook);
    Vec dx(codebook.size());
    cpu.l2_normalize_rows_backward(K, D, z.data(), dzq.data(), dx.data());
    keep(dx);
  }
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

CB_TEST("conv-ops-cpu", conv2d_backward_matches_oracle) {
  cbt::run_op_table(conv_backward_cases(), kCpuBackends);
}
CB_TEST("conv-ops-cpu", group_norm_backward_matches_oracle) {
  cbt::run_op_table(norm_backward_cases(), kCpuBackends);
}
CB_TEST("conv-ops-cpu", elementwise_backward_ops_match_oracle) {
  cbt::run_op_table(elementwise_backward_cases(), kCpuBackends);
}
CB_TEST("conv-ops-cpu", spatial_attention_backward_matches_oracle) {
  cbt::run_op_table(attention_backward_cases(), kCpuBackends);
}
CB_TEST("conv-ops-cpu", quantizer_backward_matches_oracle) {
  cbt::run_op_table(quantizer_backward_cases(), kCpuBackends);
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

// As above for the backward ops: repeated runs are bitwise equal at any thread count, and the
// sgemm-free ones (their parameter gradients included) equal across thread counts.
CB_TEST("conv-ops-cpu", backward_results_do_not_depend_on_thread_timing) {
  ThreadSetting restore;
  for (int threads : {1, 2, 3}) {
    for (bool with_sgemm : {true, false}) {
      expect_bitwise(std::to_string(threads) + " threads, second run" +
                         (with_sgemm ? "" : " (sgemm-free ops)"),
                     cpu_backward_outputs(threads, with_sgemm),
                     cpu_backward_outputs(threads, with_sgemm));
    }
  }
  const Vec one = cpu_backward_outputs(1, false);
  for (int threads : {2, 3}) {
    expect_bitwise("sgemm-free backward ops, " + std::to_string(threads) + " threads vs 1",
                   cpu_backward_outputs(threads, false), one);
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
CB_TEST("cuda", conv_ops_conv2d_backward_matches_oracle) {
  cbt::run_op_table(conv_backward_cases(), {"cuda"});
}
CB_TEST("cuda", conv_ops_group_norm_backward_matches_oracle) {
  cbt::run_op_table(norm_backward_cases(), {"cuda"});
}
CB_TEST("cuda", conv_ops_elementwise_backward_match_oracle) {
  cbt::run_op_table(elementwise_backward_cases(), {"cuda"});
}
CB_TEST("cuda", conv_ops_spatial_attention_backward_matches_oracle) {
  cbt::run_op_table(attention_backward_cases(), {"cuda"});
}
CB_TEST("cuda", conv_ops_quantizer_backward_matches_oracle) {
  cbt::run_op_table(quantizer_backward_cases(), {"cuda"});
}
