// Op-by-op parity of the cpu model ops (CpuModelOps) against cpu-ref (RefModelOps<float>), on
// random inputs at odd sizes, edge shapes (single rows, single-slot blocks, a class-token slot)
// and sizes that take the threaded and sgemm paths; plus run-to-run bitwise determinism.
//
// Every output is checked in three steps: no NaN or Inf, then the normalised MSE
// sum (a - b)^2 / sum b^2 <= 1e-9, then elementwise |a - b| <= atol * rms(ref) + rtol |ref|.
// Both sides compute in float and differ only in summation order (and sgemm's blocking), so
// the error of an output summed from N terms of size s is about sqrt(N) u s (u = 2^-24); with
// N <= 10^4 that is below 1e-5 s, an nmse around 1e-12 and far under 1e-9. The elementwise atol
// is relative to the output's RMS because cancellation leaves an absolute error of the terms'
// size on results near zero; each test states why its atol and rtol are what they are.
// Outputs the op must overwrite start as NaN, so an unwritten element fails the finite check.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compare.h"
#include "cpu/model_ops_cpu.h"
#include "cpu/model_ops_ref.h"
#include "harness.h"
#include "op_table.h"

namespace {

using Vec = std::vector<float>;
using Idx = std::vector<int32_t>;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Tol {
  double atol;  // times the reference's RMS
  double rtol;
  double nmse = 1e-9;
};
// One rounding per element or a short sum (<= ~100 terms): a few ulps.
constexpr Tol kTight{1e-6, 1e-5};
// Sums of up to ~10^4 terms in a different order (sgemm blocking, partial sums), exp/log.
constexpr Tol kSum{1e-5, 1e-4};

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void expect_close(const std::string& what, const float* got, const float* want, size_t count,
                  Tol tol) {
  for (size_t i = 0; i < count; i++) {
    EXPECT(std::isfinite(want[i]), what + ": the reference is not finite at " + std::to_string(i));
    EXPECT(std::isfinite(got[i]), what + ": NaN or Inf at " + std::to_string(i));
  }
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < count; i++) {
    err2 += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    ref2 += double(want[i]) * want[i];
  }
  const double nmse = ref2 > 0 ? err2 / ref2 : err2;
  EXPECT(nmse <= tol.nmse, what + ": nmse " + fmt(nmse) + " > " + fmt(tol.nmse));
  const double rms = count > 0 ? std::sqrt(ref2 / count) : 0.0;
  for (size_t i = 0; i < count; i++) {
    const double diff = std::fabs(double(got[i]) - want[i]);
    const double bound = tol.atol * rms + tol.rtol * std::fabs(want[i]);
    EXPECT(diff <= bound, what + ": at " + std::to_string(i) + " got " + fmt(got[i]) +
                              ", reference " + fmt(want[i]) + " (|diff| " + fmt(diff) + " > " +
                              fmt(bound) + "; nmse " + fmt(nmse) + ")");
  }
}
void expect_close(const std::string& what, const Vec& got, const Vec& want, Tol tol) {
  EXPECT(got.size() == want.size(), what + ": size mismatch");
  expect_close(what, got.data(), want.data(), got.size(), tol);
}

void expect_bitwise(const std::string& what, const Vec& a, const Vec& b) {
  EXPECT(a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0,
         what + ": two runs on the same inputs differ");
}

Vec rand_vec(size_t count, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  return cbt::random_uniform(count, seed, lo, hi);
}

Idx rand_idx(size_t count, uint32_t seed, int lo, int hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  Idx x(count);
  for (auto& v : x) v = dist(rng);
  return x;
}

std::string shape(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + ")";
}

// visible_end of blocks of the given sizes (the end of each slot's block).
Idx blocks_visible_end(const std::vector<int>& sizes) {
  Idx ve;
  int end = 0;
  for (int s : sizes) {
    end += s;
    for (int i = 0; i < s; i++) ve.push_back(end);
  }
  return ve;
}

// ---- dense ------------------------------------------------------------------------------------

struct LinearShape {
  int64_t n;
  int in, out;
};
// Odd sizes, a single row, and sizes past the threading grain (n * out > 2^16).
const std::vector<LinearShape> kLinearShapes = {
    {1, 1, 1}, {7, 5, 3}, {37, 33, 65}, {2, 130, 17}, {513, 96, 160}, {1000, 64, 300}};

void check_linear(const LinearShape& s, bool bias, bool want_dx, uint32_t seed) {
  cb::CpuModelOps cpu;
  cb::RefModelOps<float> ref;
  const std::string what = "linear " + shape({s.n, s.in, s.out}) + (bias ? " bias" : "") +
                           (want_dx ? "" : " no dx");
  const Vec x = rand_vec(s.n * s.in, seed), w = rand_vec((size_t)s.out * s.in, seed + 1);
  const Vec b = rand_vec(s.out, seed + 2), dy = rand_vec(s.n * s.out, seed + 3);
  Vec y_cpu(s.n * s.out, kNaN), y_ref(s.n * s.out, kNaN);
  cpu.linear(s.n, s.in, s.out, x.data(), w.data(), bias ? b.data() : nullptr, y_cpu.data());
  ref.linear(s.n, s.in, s.out, x.data(), w.data(), bias ? b.data() : nullptr, y_ref.data());
  // y sums `in` products of values in [-1, 1].
  expect_close(what + ": y", y_cpu, y_ref, kSum);
  // The fused y = gelu(x w^T + b) (oneDNN's GELU post-op from 16 rows on) against cpu-ref's
  // linear then gelu: GELU's slope is at most 1.13, so the sum's error bound holds scaled.
  if (bias) {
    Vec g_cpu(s.n * s.out, kNaN), g_ref(s.n * s.out, kNaN);
    cpu.linear_gelu(s.n, s.in, s.out, x.data(), w.data(), b.data(), g_cpu.data());
    ref.linear(s.n, s.in, s.out, x.data(), w.data(), b.data(), g_ref.data());
    ref.gelu(s.n * s.out, g_ref.data(), g_ref.data());
    expect_close(what + ": linear_gelu", g_cpu, g_ref, kSum);
  }

  // dw and db accumulate: start both from the same non-zero values.
  Vec dx_cpu(s.n * s.in, kNaN), dx_ref(s.n * s.in, kNaN);
  Vec dw_cpu = rand_vec((size_t)s.out * s.in, seed + 4), dw_ref = dw_cpu;
  Vec db_cpu = rand_vec(s.out, seed + 5), db_ref = db_cpu;
  cpu.linear_backward(s.n, s.in, s.out, x.data(), w.data(), dy.data(),
                      want_dx ? dx_cpu.data() : nullptr, dw_cpu.data(),
                      bias ? db_cpu.data() : nullptr);
  ref.linear_backward(s.n, s.in, s.out, x.data(), w.data(), dy.data(),
                      want_dx ? dx_ref.data() : nullptr, dw_ref.data(),
                      bias ? db_ref.data() : nullptr);
  if (want_dx) expect_close(what + ": dx", dx_cpu, dx_ref, kSum);
  expect_close(what + ": dw", dw_cpu, dw_ref, kSum);  // n terms
  expect_close(what + ": db", db_cpu, db_ref, kSum);  // n terms
}

// ---- attention --------------------------------------------------------------------------------

struct AttentionCase {
  int B, T, H, hd;
  Idx visible_end;
  std::string name;
};

std::vector<AttentionCase> attention_cases() {
  std::vector<AttentionCase> cases;
  cases.push_back({1, 1, 1, 1, {1}, "one slot"});
  // Steps of 1: plain causal attention, every run a single slot.
  Idx causal(9);
  for (int t = 0; t < 9; t++) causal[t] = t + 1;
  cases.push_back({2, 9, 3, 5, causal, "causal, single-slot blocks"});
  // A class token (visible_end[0] = 1), then blocks of growing scales.
  cases.push_back({3, 23, 2, 8, blocks_visible_end({1, 1, 4, 8, 9}), "class token + blocks"});
  // Everything visible: one run, cut into several row tiles.
  cases.push_back({1, 150, 2, 16, Idx(150, 150), "full visibility"});
  // Large enough for threads and multi-tile runs (a 100-slot block), odd head size.
  cases.push_back({2, 171, 4, 24, blocks_visible_end({1, 1, 4, 16, 20, 29, 100}),
                   "threaded, long block"});
  cases.push_back({4, 86, 4, 64, blocks_visible_end({1, 1, 4, 8, 8, 16, 16, 16, 16}),
                   "preset-like"});
  // The S preset's head size, and the largest one with a register-blocked kernel.
  cases.push_back({2, 86, 3, 32, blocks_visible_end({1, 1, 4, 8, 8, 16, 16, 16, 16}),
                   "S head size"});
  cases.push_back({1, 40, 2, 128, blocks_visible_end({1, 1, 4, 16, 18}), "head size 128"});
  return cases;
}

struct AttentionResult {
  Vec out, lse, dq, dk, dv;
};

// Forward on both backends; the backward of each runs on cpu-ref's out and lse so that the two
// backwards see identical inputs.
void run_attention(cb::ModelOps<float>& ops, const AttentionCase& c, const Vec& q, const Vec& k,
                   const Vec& v, const Vec& dout, const Vec* out_in, const Vec* lse_in,
                   AttentionResult& r) {
  const size_t N = (size_t)c.B * c.T * c.H * c.hd;
  r.out.assign(N, kNaN);
  r.lse.assign((size_t)c.B * c.H * c.T, kNaN);
  ops.attention(c.B, c.T, c.H, c.hd, q.data(), k.data(), v.data(), c.visible_end.data(),
                r.out.data(), r.lse.data());
  r.dq.assign(N, kNaN);
  r.dk.assign(N, kNaN);
  r.dv.assign(N, kNaN);
  ops.attention_backward(c.B, c.T, c.H, c.hd, q.data(), k.data(), v.data(),
                         c.visible_end.data(), out_in ? out_in->data() : r.out.data(),
                         lse_in ? lse_in->data() : r.lse.data(), dout.data(), r.dq.data(),
                         r.dk.data(), r.dv.data());
}

// ---- rope -------------------------------------------------------------------------------------

struct RopeCase {
  int64_t n;
  int H, hd, ld_extra, positions;
};
// One pair; odd heads and padding; fewer rows than positions (angles looked up by row); a
// partial pair block; the threaded path (4 pair blocks) at qkv's row stride; many rows per
// position (long dangles sums).
const std::vector<RopeCase> kRopeCases = {{1, 1, 2, 0, 1},
                                          {5, 3, 6, 7, 4},
                                          {6, 2, 8, 3, 341},
                                          {33, 2, 18, 0, 3},
                                          {700, 4, 64, 512, 341},
                                          {300, 16, 32, 0, 5}};

}  // namespace

// =============================================================================================

CB_TEST("model-ops-cpu", linear_matches_ref) {
  uint32_t seed = 1;
  for (const LinearShape& s : kLinearShapes) {
    for (int variant = 0; variant < 3; variant++) {
      check_linear(s, variant != 1, variant != 2, seed += 10);
    }
  }
}

// On the op table (op_table.h): cpu-ref in float and cpu, each against RefModelOps<double>.
CB_TEST("model-ops-cpu", elementwise_ops_match_ref) {
  // One tanh or exp per element and a few roundings: ulps of the result.
  constexpr cbt::OpTolerance kUlps{1e-6, 1e-5, 1e-9, 0};
  // One float add, correctly rounded: within 2^-24 of the exact sum, as the float reference.
  constexpr cbt::OpTolerance kOneRounding{0, 5.9604645e-8 * (1 + 1e-9), 1e-14, 0};
  std::vector<cbt::ModelOpCase> cases;
  uint32_t seed = 100;
  for (int64_t count : {int64_t(1), int64_t(7), int64_t(1000), int64_t(200003)}) {
    const std::string n = "count=" + std::to_string(count);
    const Vec x = rand_vec(count, seed++, -4.0f, 4.0f), dy = rand_vec(count, seed++);
    cases.push_back(cbt::model_op_case("gelu", n, kUlps, [=](auto& r) {
      const auto* gx = r.in("x", x);
      r.ops().gelu(count, gx, r.out("y", count));
    }));
    cases.push_back(cbt::model_op_case("gelu_backward", n, kUlps, [=](auto& r) {
      const auto* gx = r.in("x", x);
      const auto* gdy = r.in("dy", dy);
      r.ops().gelu_backward(count, gx, gdy, r.out("dx", count));
    }));
    cases.push_back(cbt::model_op_case("silu", n, kUlps, [=](auto& r) {
      const auto* gx = r.in("x", x);
      r.ops().silu(count, gx, r.out("y", count));
    }));
    cases.push_back(cbt::model_op_case("silu_backward", n, kUlps, [=](auto& r) {
      const auto* gx = r.in("x", x);
      const auto* gdy = r.in("dy", dy);
      r.ops().silu_backward(count, gx, gdy, r.out("dx", count));
    }));
    cases.push_back(cbt::model_op_case("add_inplace", n, kOneRounding, [=](auto& r) {
      const auto* gdy = r.in("dy", dy);
      r.ops().add_inplace(count, r.inout("y", x), gdy);
    }));
  }
  cbt::run_op_table(cases, {"cpu-ref", "cpu"});
}

CB_TEST("model-ops-cpu", strided_copies_match_ref) {
  cb::CpuModelOps cpu;
  cb::RefModelOps<float> ref;
  uint32_t seed = 200;
  struct S {
    int64_t rows;
    int cols, src_pad, dst_pad;
  };
  for (S s : {S{1, 1, 0, 0}, S{5, 3, 2, 7}, S{700, 256, 768, 0}, S{3000, 64, 0, 192}}) {
    const int64_t src_ld = s.cols + s.src_pad, dst_ld = s.cols + s.dst_pad;
    const std::string what = " " + shape({s.rows, s.cols, src_ld, dst_ld});
    const Vec src = rand_vec(s.rows * src_ld, seed++);
    const Vec dst0 = rand_vec(s.rows * dst_ld, seed++);
    for (bool acc : {false, true}) {
      Vec a = dst0, b = dst0;
      cpu.copy_strided(s.rows, s.cols, src.data(), src_ld, a.data(), dst_ld, acc);
      ref.copy_strided(s.rows, s.cols, src.data(), src_ld, b.data(), dst_ld, acc);
      // Padding included: it must be left as it was.
      expect_close(std::string("copy_strided") + (acc ? " accumulate" : "") + what, a, b, {0, 0});
    }
    Vec a = dst0, b = dst0;
    cpu.zero_strided(s.rows, s.cols, a.data(), dst_ld);
    ref.zero_strided(s.rows, s.cols, b.data(), dst_ld);
    EXPECT(a == b, "zero_strided" + what + " differs from cpu-ref");
  }
}

CB_TEST("model-ops-cpu", layernorm_matches_ref) {
  cb::CpuModelOps cpu;
  cb::RefModelOps<float> ref;
  uint32_t seed = 300;
  struct S {
    int64_t n;
    int c;
  };
  for (S s : {S{1, 1}, S{1, 7}, S{5, 33}, S{300, 257}, S{1000, 512}}) {
    const std::string what = " " + shape({s.n, s.c});
    // An offset mean and a spread scale, as residual streams have.
    Vec x = rand_vec(s.n * s.c, seed++, -3.0f, 5.0f);
    const Vec dy = rand_vec(s.n * s.c, seed++);
    Vec y_a(s.n * s.c, kNaN), y_b(s.n * s.c, kNaN), m_a(s.n, kNaN), m_b(s.n, kNaN);
    Vec r_a(s.n, kNaN), r_b(s.n, kNaN);
    cpu.layernorm(s.n, s.c, x.data(), y_a.data(), m_a.data(), r_a.data());
    ref.layernorm(s.n, s.c, x.data(), y_b.data(), m_b.data(), r_b.data());
    // Sums of c <= 512 terms; y = (x - mean) rstd inherits the relative error of rstd.
    expect_close("layernorm y" + what, y_a, y_b, kSum);
    expect_close("layernorm mean" + what, m_a, m_b, kSum);
    expect_close("layernorm rstd" + what, r_a, r_b, kSum);
    Vec dx_a(s.n * s.c, kNaN), dx_b(s.n * s.c, kNaN);
    cpu.layernorm_backward(s.n, s.c, x.data(), m_b.data(), r_b.data(), dy.data(), dx_a.data());
    ref.layernorm_backward(s.n, s.c, x.data(), m_b.data(), r_b.data(), dy.data(), dx_b.data());
    // dx subtracts two row means from dy: cancellation, hence the RMS-relative atol.
    expect_close("layernorm_backward" + what, dx_a, dx_b, kSum);
  }
}

CB_TEST("model-ops-cpu", adaln_ops_match_ref) {
  cb::CpuModelOps cpu;
  cb::RefModelOps<float> ref;
  uint32_t seed = 400;
  struct S {
    int B, T, c, ld;
  };
  // ld > c: the shift/scale/gate rows are chunks of a wider AdaLN output.
  for (S s : {S{1, 1, 1, 1}, S{2, 3, 5, 15}, S{3, 23, 70, 6 * 70}, S{4, 342, 256, 6 * 256}}) {
    const std::string what = " " + shape({s.B, s.T, s.c, s.ld});
    const size_t n = (size_t)s.B * s.T * s.c;
    const Vec xn = rand_vec(n, seed++), h = rand_vec(n, seed++), dy = rand_vec(n, seed++);
    const Vec ada = rand_vec((size_t)s.B * s.ld, seed++);
    const float* shift = ada.data();
    const float* scale = ada.data() + (s.ld >= 2 * s.c ? s.c : 0);
    Vec y_a(n, kNaN), y_b(n, kNaN);
    cpu.modulate(s.B, s.T, s.c, xn.data(), shift, scale, s.ld, y_a.data());
    ref.modulate(s.B, s.T, s.c, xn.data(), shift, scale, s.ld, y_b.data());
    expect_close("modulate" + what, y_a, y_b, kTight);

    // The (B, ld) gradient rows accumulate: start from the same random values.
    Vec dxn_a(n, kNaN), dxn_b(n, kNaN);
    Vec dada_a = rand_vec((size_t)s.B * s.ld, seed++), dada_b = dada_a;
    const int shift_off = 0, scale_off = s.ld >= 2 * s.c ? s.c : 0;
    if (scale_off != shift_off) {
      cpu.modulate_backward(s.B, s.T, s.c, xn.data(), scale, s.ld, dy.data(), dxn_a.data(),
                            dada_a.data() + shift_off, dada_a.data() + scale_off);
      ref.modulate_backward(s.B, s.T, s.c, xn.data(), scale, s.ld, dy.data(), dxn_b.data(),
                            dada_b.data() + shift_off, dada_b.data() + scale_off);
      expect_close("modulate_backward dxn" + what, dxn_a, dxn_b, kTight);
      expect_close("modulate_backward dshift, dscale" + what, dada_a, dada_b, kSum);  // T terms
    }

    Vec x_a = xn, x_b = xn;
    cpu.gated_residual(s.B, s.T, s.c, x_a.data(), ada.data(), s.ld, h.data());
    ref.gated_residual(s.B, s.T, s.c, x_b.data(), ada.data(), s.ld, h.data());
    expect_close("gated_residual" + what, x_a, x_b, kTight);
    Vec dh_a(n, kNaN), dh_b(n, kNaN);
    Vec dgate_a = rand_vec((size_t)s.B * s.ld, seed++), dgate_b = dgate_a;
    cpu.gated_residual_backward(s.B, s.T, s.c, dy.data(), ada.data(), s.ld, h.data(), dh_a.data(),
                                dgate_a.data());
    ref.gated_residual_backward(s.B, s.T, s.c, dy.data(), ada.data(), s.ld, h.data(), dh_b.data(),
                                dgate_b.data());
    expect_close("gated_residual_backward dh" + what, dh_a, dh_b, kTight);
    expect_close("gated_residual_backward dgate" + what, dgate_a, dgate_b, kSum);
  }
}

CB_TEST("model-ops-cpu", row_ops_match_ref_with_repeated_indices) {
  cb::CpuModelOps cpu;
  cb::RefModelOps<float> ref;
  uint32_t seed = 500;
  struct S {
    int64_t n;
    int c, rows;
  };
  // Few table rows for many indices: every row is hit repeatedly (and some not at all).
  for (S s : {S{1, 1, 1}, S{9, 5, 3}, S{700, 130, 11}, S{5000, 200, 7}}) {
    const std::string what = " " + shape({s.n, s.c}) + " table rows " + std::to_string(s.rows);
    const Vec table = rand_vec((size_t)s.rows * s.c, seed++);
    const Idx index = rand_idx(s.n, seed++, 0, s.rows - 1);
    Vec a(s.n * s.c, kNaN), b(s.n * s.c, kNaN);
    cpu.gather_rows(s.n, s.c, table.data(), index.data(), a.data());
    ref.gather_rows(s.n, s.c, table.data(), index.data(), b.data());
    expect_close("gather_rows" + what, a, b, {0, 0});

    const Vec dout = rand_vec(s.n * s.c, seed++);
    Vec dt_a = rand_vec((size_t)s.rows * s.c, seed++), dt_b = dt_a;
    cpu.scatter_add_rows(s.n, s.c, dout.data(), index.data(), dt_a.data());
    ref.scatter_add_rows(s.n, s.c, dout.data(), index.data(), dt_b.data());
    expect_close("scatter_add_rows" + what, dt_a, dt_b, kSum);  // n / rows terms per entry

    std::vector<uint8_t> mask(s.n);
    const Idx bits = rand_idx(s.n, seed++, 0, 2);
    for (int64_t i = 0; i < s.n; i++) mask[i] = (uint8_t)(bits[i] == 0 ? 0 : bits[i] * 3);
    const Vec vec = rand_vec(s.c, seed++);
    Vec x_a = dout, x_b = dout;
    cpu.fill_masked_rows(s.n, s.c, mask.data(), vec.data(), x_a.data());
    ref.fill_masked_rows(s.n, s.c, mask.data(), vec.data(), x_b.data());
    expect_close("fill_masked_rows" + what, x_a, x_b, {0, 0});
    Vec dv_a = rand_vec(s.c, seed++), dv_b = dv_a;
    x_a = dout;
    x_b = dout;
    cpu.fill_masked_rows_backward(s.n, s.c, mask.data(), x_a.data(), dv_a.data());
    ref.fill_masked_rows_backward(s.n, s.c, mask.data(), x_b.data(), dv_b.data());
    expect_close("fill_masked_rows_backward dx" + what, x_a, x_b, {0, 0});
    expect_close("fill_masked_rows_backward dvec" + what, dv_a, dv_b, kSum);
  }
}

CB_TEST("model-ops-cpu", rope_matches_ref) {
  cb::CpuModelOps cpu;
  cb::RefModelOps<float> ref;
  uint32_t seed = 600;
  for (const RopeCase& rc : kRopeCases) {
    for (bool mixed : {false, true}) {
      const int C = rc.H * rc.hd, ld = C + rc.ld_extra;
      const std::string what = std::string(mixed ? "rope (mixed) " : "rope ") +
                               shape({rc.n, rc.H, rc.hd, ld}) + " positions " +
                               std::to_string(rc.positions);
      const Vec x = rand_vec(rc.n * ld, seed++);
      const Vec angles = rand_vec((size_t)rc.positions * rc.hd / 2, seed++, -6.0f, 6.0f);
      const Idx pos_p = rand_idx(rc.n, seed++, 0, rc.positions - 1);
      const Idx pos_q = rand_idx(rc.n, seed++, 0, rc.positions - 1);
      const Vec mix = rand_vec(rc.H, seed++, -2.0f, 2.0f);
      const float* mix_ptr = mixed ? mix.data() : nullptr;
      Vec y_a(rc.n * C, kNaN), y_b(rc.n * C, kNaN);
      cpu.rope(rc.n, rc.H, rc.hd, x.data(), ld, angles.data(), pos_p.data(), pos_q.data(),
               mix_ptr, y_a.data());
      ref.rope(rc.n, rc.H, rc.hd, x.data(), ld, angles.data(), pos_p.data(), pos_q.data(),
               mix_ptr, y_b.data());
      expect_close(what + ": y", y_a, y_b, kTight);

      const Vec dy = rand_vec(rc.n * C, seed++);
      // dx: only the H*hd columns of each ld-wide row are written; the rest must stay.
      Vec dx_a = rand_vec(rc.n * ld, seed++), dx_b = dx_a;
      for (int64_t i = 0; i < rc.n; i++) {
        std::fill(dx_a.begin() + i * ld, dx_a.begin() + i * ld + C, kNaN);
        std::fill(dx_b.begin() + i * ld, dx_b.begin() + i * ld + C, kNaN);
      }
      Vec da_a = rand_vec(angles.size(), seed++), da_b = da_a;
      Vec dm_a = rand_vec(rc.H, seed++), dm_b = dm_a;
      cpu.rope_backward(rc.n, rc.H, rc.hd, x.data(), ld, angles.data(), pos_p.data(),
                        pos_q.data(), mix_ptr, dy.data(), dx_a.data(), da_a.data(),
                        mixed ? dm_a.data() : nullptr);
      ref.rope_backward(rc.n, rc.H, rc.hd, x.data(), ld, angles.data(), pos_p.data(),
                        pos_q.data(), mix_ptr, dy.data(), dx_b.data(), da_b.data(),
                        mixed ? dm_b.data() : nullptr);
      expect_close(what + ": dx", dx_a, dx_b, kTight);
      // dangles sums n H / positions terms per entry; dmix sums n hd / 2 terms per head.
      expect_close(what + ": dangles", da_a, da_b, kSum);
      expect_close(what + ": dmix_logit", dm_a, dm_b, kSum);
    }
  }
}

CB_TEST("model-ops-cpu", attention_matches_ref) {
  cb::CpuModelOps cpu;
  cb::RefModelOps<float> ref;
  uint32_t seed = 700;
  for (const AttentionCase& c : attention_cases()) {
    const std::string what = "attention " + c.name + " " + shape({c.B, c.T, c.H, c.hd});
    const size_t N = (size_t)c.B * c.T * c.H * c.hd;
    // Scores of a few units (|q.k| / sqrt(hd) up to ~3): peaked but not one-hot softmaxes.
    const Vec q = rand_vec(N, seed++, -1.5f, 1.5f), k = rand_vec(N, seed++, -1.5f, 1.5f);
    const Vec v = rand_vec(N, seed++), dout = rand_vec(N, seed++);
    AttentionResult r_ref, r_cpu;
    run_attention(ref, c, q, k, v, dout, nullptr, nullptr, r_ref);
    run_attention(cpu, c, q, k, v, dout, &r_ref.out, &r_ref.lse, r_cpu);
    // Sums over hd and over up to T visible keys of probabilities times values.
    expect_close(what + ": out", r_cpu.out, r_ref.out, kSum);
    expect_close(what + ": lse", r_cpu.lse, r_ref.lse, kSum);
    expect_close(what + ": dq", r_cpu.dq, r_ref.dq, kSum);
    expect_close(what + ": dk", r_cpu.dk, r_ref.dk, kSum);
    expect_close(what + ": dv", r_cpu.dv, r_ref.dv, kSum);
  }
}

CB_TEST("model-ops-cpu", softmax_cross_entropy_matches_ref) {
  cb::CpuModelOps cpu;
  cb::RefModelOps<float> ref;
  uint32_t seed = 800;
  struct S {
    int64_t n;
    int K;
  };
  for (S s : {S{1, 1}, S{3, 5}, S{37, 257}, S{700, 4096}}) {
    const std::string what = " " + shape({s.n, s.K});
    const Vec logits = rand_vec(s.n * s.K, seed++, -8.0f, 8.0f);
    // About a quarter of the rows are ignored (target -1), the first row never is.
    Idx target = rand_idx(s.n, seed++, -(s.K / 3 + 1), s.K - 1);
    for (auto& t : target) t = std::max(t, -1);
    target[0] = std::max(target[0], 0);
    int64_t counted = 0;
    for (int32_t t : target) counted += t >= 0;
    const float grad_scale = 1.0f / (float)counted;
    for (bool with_grad : {true, false}) {
      Vec l_a(s.n, kNaN), l_b(s.n, kNaN), d_a(s.n * s.K, kNaN), d_b(s.n * s.K, kNaN);
      cpu.softmax_cross_entropy(s.n, s.K, logits.data(), target.data(), l_a.data(),
                                with_grad ? d_a.data() : nullptr, grad_scale);
      ref.softmax_cross_entropy(s.n, s.K, logits.data(), target.data(), l_b.data(),
                                with_grad ? d_b.data() : nullptr, grad_scale);
      // A log of a sum of K exponentials.
      expect_close("softmax_cross_entropy loss" + what, l_a, l_b, kSum);
      if (with_grad) expect_close("softmax_cross_entropy dlogits" + what, d_a, d_b, kSum);
    }
  }
}

CB_TEST("model-ops-cpu", adamw_matches_ref) {
  cb::CpuModelOps cpu;
  cb::RefModelOps<float> ref;
  uint32_t seed = 900;
  for (int64_t count : {int64_t(1), int64_t(7), int64_t(200003)}) {
    for (int64_t t : {int64_t(1), int64_t(3), int64_t(1000)}) {
      for (float wd : {0.0f, 0.1f}) {
        const std::string what = "adamw count " + std::to_string(count) + " t " +
                                 std::to_string(t) + " wd " + fmt(wd);
        const Vec p0 = rand_vec(count, seed++), g = rand_vec(count, seed++, -0.1f, 0.1f);
        const Vec m0 = rand_vec(count, seed++, -0.01f, 0.01f);
        const Vec v0 = rand_vec(count, seed++, 0.0f, 1e-3f);
        Vec p_a = p0, p_b = p0, m_a = m0, m_b = m0, v_a = v0, v_b = v0;
        cpu.adamw(count, p_a.data(), g.data(), m_a.data(), v_a.data(), 1e-3f, 0.9f, 0.95f, 1e-8f,
                  wd, t);
        ref.adamw(count, p_b.data(), g.data(), m_b.data(), v_b.data(), 1e-3f, 0.9f, 0.95f, 1e-8f,
                  wd, t);
        // A handful of roundings per element; the bias corrections may round differently.
        expect_close(what + ": m", m_a, m_b, kTight);
        expect_close(what + ": v", v_a, v_b, kTight);
        expect_close(what + ": param", p_a, p_b, kTight);
      }
    }
  }
}

// Same inputs twice: bitwise equal outputs, for every op that reduces across rows or threads.
CB_TEST("model-ops-cpu", reductions_and_attention_are_deterministic) {
  cb::CpuModelOps cpu;
  uint32_t seed = 1000;
  auto twice = [](const std::string& what, auto fn) {
    Vec a = fn(), b = fn();
    expect_bitwise(what, a, b);
  };
  {
    const int64_t n = 3000;
    const int in = 96, out = 200;
    const Vec x = rand_vec(n * in, seed++), w = rand_vec((size_t)out * in, seed++);
    const Vec dy = rand_vec(n * out, seed++);
    twice("linear_backward", [&] {
      Vec r((size_t)out * in + out + n * in, 0.0f);
      cpu.linear_backward(n, in, out, x.data(), w.data(), dy.data(), r.data() + out * in + out,
                          r.data(), r.data() + out * in);
      return r;
    });
  }
  {
    const int B = 4, T = 342, c = 256, ld = 6 * c;
    const size_t n = (size_t)B * T * c;
    const Vec xn = rand_vec(n, seed++), dy = rand_vec(n, seed++), ada = rand_vec(B * ld, seed++);
    twice("modulate_backward", [&] {
      Vec r(n + (size_t)B * ld, 0.0f);
      cpu.modulate_backward(B, T, c, xn.data(), ada.data() + c, ld, dy.data(), r.data(),
                            r.data() + n, r.data() + n + c);
      return r;
    });
    twice("gated_residual_backward", [&] {
      Vec r(n + (size_t)B * ld, 0.0f);
      cpu.gated_residual_backward(B, T, c, dy.data(), ada.data(), ld, xn.data(), r.data(),
                                  r.data() + n);
      return r;
    });
    twice("layernorm", [&] {
      Vec r(n + 2 * (size_t)B * T, 0.0f);
      cpu.layernorm((int64_t)B * T, c, xn.data(), r.data(), r.data() + n, r.data() + n + B * T);
      return r;
    });
  }
  {
    const int64_t n = 5000;
    const int c = 200, rows = 7;
    const Vec dout = rand_vec(n * c, seed++);
    const Idx index = rand_idx(n, seed++, 0, rows - 1);
    std::vector<uint8_t> mask(n);
    for (int64_t i = 0; i < n; i++) mask[i] = (uint8_t)(index[i] & 1);
    twice("scatter_add_rows", [&] {
      Vec r((size_t)rows * c, 0.0f);
      cpu.scatter_add_rows(n, c, dout.data(), index.data(), r.data());
      return r;
    });
    twice("fill_masked_rows_backward", [&] {
      Vec r = dout;
      r.resize(r.size() + c, 0.0f);
      cpu.fill_masked_rows_backward(n, c, mask.data(), r.data(), r.data() + n * c);
      return r;
    });
  }
  {
    const int64_t n = 2000;
    const int H = 4, hd = 64, ld = 3 * H * hd, P = 341;
    const Vec x = rand_vec(n * ld, seed++), dy = rand_vec(n * H * hd, seed++);
    const Vec angles = rand_vec((size_t)P * hd / 2, seed++), mix = rand_vec(H, seed++);
    const Idx pp = rand_idx(n, seed++, 0, P - 1), pq = rand_idx(n, seed++, 0, P - 1);
    twice("rope_backward", [&] {
      Vec r(n * ld + angles.size() + H, 0.0f);
      cpu.rope_backward(n, H, hd, x.data(), ld, angles.data(), pp.data(), pq.data(), mix.data(),
                        dy.data(), r.data(), r.data() + n * ld, r.data() + n * ld + angles.size());
      return r;
    });
  }
  {
    const AttentionCase c{4, 342, 8, 64,
                          blocks_visible_end({1, 1, 4, 8, 8, 16, 16, 16, 16, 64, 64, 64, 64}),
                          "preset"};
    const size_t N = (size_t)c.B * c.T * c.H * c.hd;
    const Vec q = rand_vec(N, seed++), k = rand_vec(N, seed++), v = rand_vec(N, seed++);
    const Vec dout = rand_vec(N, seed++);
    twice("attention and attention_backward", [&] {
      AttentionResult r;
      run_attention(cpu, c, q, k, v, dout, nullptr, nullptr, r);
      Vec all;
      for (const Vec* part : {&r.out, &r.lse, &r.dq, &r.dk, &r.dv}) {
        all.insert(all.end(), part->begin(), part->end());
      }
      return all;
    });
  }
}
