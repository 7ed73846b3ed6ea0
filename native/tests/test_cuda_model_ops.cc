// GPU parity of the model ops (group `cuda`; it prints one `SKIP cuda: <reason>` line and runs
// nothing where no GPU is usable): every op of model/model_ops.h on the cuda backend with fp32
// matmuls ("cuda-fp32"), and linear and the mixed-precision ops (model/mixed_ops.h) also with
// bf16 tensor-core matmuls ("cuda"), against RefModelOps<double> on the same float inputs, at
// odd sizes, single rows, single-slot blocks and model-sized shapes.
//
// Each output is checked in three steps: no NaN or Inf, the normalised MSE
// sum (a - b)^2 / sum b^2 <= nmse, then elementwise |a - b| <= atol * rms(ref) + rtol |ref|.
// The reference is exact up to double rounding, so the differences are the GPU's float
// arithmetic alone: a few ulps (u = 2^-24 ~ 6e-8) per element for elementwise ops, about
// sqrt(N) u times the terms' size for a sum of N terms in another order (N <= ~10^4 here: under
// 1e-5 of the terms' size). atol is relative to the output's RMS because cancellation leaves an
// absolute error of the terms' size on results near zero.
//
// Every GPU buffer has guard regions before and after it (guarded_buffer.h): an op that writes
// out of bounds fails naming the buffer. Outputs start as NaN, so an element an op forgets to
// write fails the finite check; accumulating outputs start from random values. Each op also
// runs on pointers one float past an aligned address (the model's parameter offsets have no
// alignment), reported as "(misaligned)".
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "compare.h"
#include "cpu/model_ops_ref.h"
#include "guarded_buffer.h"
#include "harness.h"
#include "model/backends.h"

// Each value rounded to bf16 (defined with the mixed-precision tests below).
std::vector<float> rounded(const std::vector<float>& v);

namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;
using Idx = std::vector<int32_t>;
using Ops = cb::ModelOps<float>;
using Ref = cb::RefModelOps<double>;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr const char* kFp32 = "cuda-fp32";  // fp32 SIMT matmuls: the parity backend
constexpr const char* kBf16 = "cuda";       // bf16 tensor-core matmuls
// Byte offsets of the data from an aligned address: aligned, then one float past it.
constexpr size_t kAlignments[] = {0, 4};

struct Tol {
  double atol;  // times the reference's RMS
  double rtol;
  double nmse;
  // An absolute floor: an output that is zero in exact arithmetic (attention over one key
  // gives dq = 0) comes out of float as a few ulps of its terms, with no RMS to scale by.
  double floor;
};
// Data movement: bit-equal.
constexpr Tol kExact{0, 0, 0, 0};
// One float rounding of an exact result (a float add): at most half an ulp, <= 2^-24 |ref|;
// the bound allows one ulp (2^-23 ~ 1.2e-7).
constexpr Tol kRounded{0, 1.2e-7, 1e-14, 0};
// A few roundings and transcendental functions per element (or a short sum): tens of ulps.
constexpr Tol kTight{1e-6, 1e-5, 1e-9, 1e-7};
// Sums of up to ~10^4 terms in another order, exp/log of sums.
constexpr Tol kSum{1e-5, 1e-4, 1e-9, 1e-6};
// bf16 operands (8 significant bits, relative rounding error up to 2^-9, RMS about 1.1e-3 per
// operand), fp32 accumulation: each product is off by about 1.6e-3 of its size (RMS), random in
// sign, so the output's error is about 1.6e-3 of its RMS (nmse ~ 3e-6); the elementwise bound
// 4e-2 RMS is ~25 standard deviations, while a wrong element is off by the RMS itself.
constexpr Tol kBf16Tol{4e-2, 1e-2, 1e-4, 1e-4};

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string shape(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + ")";
}

std::string aligned_label(size_t misalign) { return misalign ? " (misaligned)" : ""; }

// The worst nmse and the worst |diff| / bound of a test, printed at its end.
struct Worst {
  double nmse = 0, ratio = 0;
  std::string nmse_what, ratio_what;
};
Worst g_worst;

void begin_report() { g_worst = Worst{}; }
void print_report() {
  std::printf("     worst nmse %s (%s); worst |diff|/bound %s (%s)\n", fmt(g_worst.nmse).c_str(),
              g_worst.nmse_what.c_str(), fmt(g_worst.ratio).c_str(),
              g_worst.ratio_what.c_str());
}

void expect_close(const std::string& what, const Vec& got, const DVec& want, Tol tol) {
  EXPECT(got.size() == want.size(), what + ": " + std::to_string(got.size()) + " values, the " +
                                        "reference has " + std::to_string(want.size()));
  const size_t count = got.size();
  for (size_t i = 0; i < count; i++) {
    EXPECT(std::isfinite(want[i]), what + ": the reference is not finite at " + std::to_string(i));
    EXPECT(std::isfinite(got[i]), what + ": NaN or Inf at " + std::to_string(i) +
                                      " (an unwritten output starts as NaN)");
  }
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < count; i++) {
    err2 += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    ref2 += want[i] * want[i];
  }
  const double nmse = ref2 > 0 ? err2 / ref2 : err2;
  EXPECT(nmse <= tol.nmse, what + ": nmse " + fmt(nmse) + " > " + fmt(tol.nmse));
  const double rms = count > 0 ? std::sqrt(ref2 / double(count)) : 0.0;
  double worst_ratio = 0;
  for (size_t i = 0; i < count; i++) {
    const double diff = std::fabs(double(got[i]) - want[i]);
    const double bound = tol.atol * rms + tol.rtol * std::fabs(want[i]) + tol.floor;
    EXPECT(diff <= bound, what + ": at " + std::to_string(i) + " got " + fmt(got[i]) +
                              ", reference " + fmt(want[i]) + " (|diff| " + fmt(diff) + " > " +
                              fmt(bound) + "; nmse " + fmt(nmse) + ")");
    if (bound > 0) worst_ratio = std::max(worst_ratio, diff / bound);
  }
  if (nmse >= g_worst.nmse) g_worst.nmse = nmse, g_worst.nmse_what = what;
  if (worst_ratio >= g_worst.ratio) g_worst.ratio = worst_ratio, g_worst.ratio_what = what;
}

DVec D(const Vec& v) { return DVec(v.begin(), v.end()); }

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

// The S/L sequence at P = 4 (scales 1, 2, 4, 8, 16): the class token, four single-slot blocks
// of scale 2, then blocks of 4, 16 and 64 slots. T = 342.
Idx preset_visible_end() {
  std::vector<int> sizes = {1, 1};
  for (int size : {1, 4, 16, 64}) {
    for (int i = 0; i < 4; i++) sizes.push_back(size);
  }
  return blocks_visible_end(sizes);
}

// The backend under test, checked to be the one asked for.
std::unique_ptr<Ops> gpu_ops(const char* name) {
  std::unique_ptr<Ops> ops = cb::make_model_ops<float>(name);
  EXPECT(std::string(ops->name()) == name,
         std::string("asked for backend ") + name + ", got " + ops->name());
  return ops;
}

// ---- dense ------------------------------------------------------------------------------------

struct LinearShape {
  int64_t n;
  int in, out;
};
// Odd sizes, single rows and columns, sizes that are no multiple of any tile, a long reduction
// and model-like shapes.
const std::vector<LinearShape> kLinearShapes = {
    {1, 1, 1},      {7, 5, 3},        {37, 33, 65},     {2, 130, 17},
    {513, 96, 160}, {1000, 64, 300},  {129, 512, 1536}, {64, 2048, 129},
    {342, 8, 512},  {256, 1024, 256}};

// rounded_operands: the backend multiplies bf16 roundings of x, w and dy (tensor cores), so the
// reference does too; an unrounded reference held a dw accumulated onto dw0 to a relative bound
// that cancellation breaks (one (1, 1, 1) product on the H200: nmse 2.7e-4).
void check_linear(Ops& gpu, const LinearShape& s, bool bias, bool want_dx, uint32_t seed,
                  Tol tol, bool rounded_operands) {
  const std::string what = std::string(gpu.name()) + " linear " + shape({s.n, s.in, s.out}) +
                           (bias ? " bias" : "") + (want_dx ? "" : " no dx");
  const Vec x = rand_vec(s.n * s.in, seed), w = rand_vec((size_t)s.out * s.in, seed + 1);
  const Vec b = rand_vec(s.out, seed + 2), dy = rand_vec(s.n * s.out, seed + 3);
  // dw and db accumulate: both start from random values.
  const Vec dw0 = rand_vec((size_t)s.out * s.in, seed + 4), db0 = rand_vec(s.out, seed + 5);
  Ref ref;
  DVec y_ref(s.n * s.out), dx_ref(s.n * s.in), dw_ref = D(dw0), db_ref = D(db0);
  const Vec xm = rounded_operands ? rounded(x) : x, wm = rounded_operands ? rounded(w) : w;
  const Vec dym = rounded_operands ? rounded(dy) : dy;
  ref.linear(s.n, s.in, s.out, D(xm).data(), D(wm).data(), bias ? D(b).data() : nullptr,
             y_ref.data());
  ref.linear_backward(s.n, s.in, s.out, D(xm).data(), D(wm).data(), D(dym).data(),
                      want_dx ? dx_ref.data() : nullptr, dw_ref.data(), nullptr);
  // db sums dy itself (fp32 column sums).
  if (bias) {
    ref.linear_backward(s.n, s.in, s.out, D(x).data(), D(w).data(), D(dy).data(), nullptr,
                        nullptr, db_ref.data());
  }
  for (size_t misalign : kAlignments) {
    const std::string w_what = what + aligned_label(misalign);
    cbt::DeviceBuffers d(gpu.memory(), misalign);
    const float* gx = d.upload("x", x);
    const float* gw = d.upload("w", w);
    const float* gb = bias ? d.upload("b", b) : nullptr;
    const float* gdy = d.upload("dy", dy);
    float* gy = d.output<float>("y", y_ref.size());
    float* gdx = want_dx ? d.output<float>("dx", dx_ref.size()) : nullptr;
    float* gdw = d.upload("dw", dw0);
    float* gdb = bias ? d.upload("db", db0) : nullptr;
    gpu.linear(s.n, s.in, s.out, gx, gw, gb, gy);
    gpu.linear_backward(s.n, s.in, s.out, gx, gw, gdy, gdx, gdw, gdb);
    d.check_guards();
    expect_close(w_what + ": y", d.download(gy), y_ref, tol);
    if (want_dx) expect_close(w_what + ": dx", d.download(gdx), dx_ref, tol);
    expect_close(w_what + ": dw", d.download(gdw), dw_ref, tol);
    if (bias) expect_close(w_what + ": db", d.download(gdb), db_ref, tol);
  }
}

void linear_suite(const char* backend, Tol tol, bool rounded_operands) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(backend);
  uint32_t seed = 1;
  for (const LinearShape& s : kLinearShapes) {
    // The emulation leaves out the two largest (the others hold every kernel path: tails,
    // split-k, both GEMM kernels).
    if (cbt::emulated_cuda() && int64_t(s.n) * s.in * s.out > 50000000) continue;
    for (int variant = 0; variant < 3; variant++) {
      check_linear(*gpu, s, variant != 1, variant != 2, seed += 10, tol, rounded_operands);
    }
  }
  print_report();
}

// ---- attention --------------------------------------------------------------------------------

struct AttentionCase {
  int B, T, H, hd;
  Idx visible_end;
  std::string name;
};

std::vector<AttentionCase> attention_cases() {
  std::vector<AttentionCase> cases;
  cases.push_back({1, 1, 1, 2, {1}, "one slot"});
  Idx causal(9);  // steps of 1: every block a single slot
  for (int t = 0; t < 9; t++) causal[t] = t + 1;
  cases.push_back({2, 9, 3, 6, causal, "causal, single-slot blocks"});
  cases.push_back({3, 23, 2, 8, blocks_visible_end({1, 1, 4, 8, 9}), "class token + blocks"});
  cases.push_back({1, 150, 2, 16, Idx(150, 150), "full visibility"});
  cases.push_back({2, 171, 4, 24, blocks_visible_end({1, 1, 4, 16, 20, 29, 100}),
                   "long block, head size 24"});
  cases.push_back({2, 342, 16, 32, preset_visible_end(), "S-like (head size 32)"});
  cases.push_back({1, 342, 4, 64, preset_visible_end(), "L-like (head size 64)"});
  cases.push_back({2, 85, 2, 128, blocks_visible_end({1, 1, 1, 1, 1, 16, 16, 16, 16, 16}),
                   "head size 128"});
  return cases;
}

// ---- rope -------------------------------------------------------------------------------------

struct RopeCase {
  int64_t n;
  int H, hd, ld_extra, positions;
};
// One pair; odd heads and padding; fewer rows than positions; a partial pair block; qkv's row
// stride; many rows per position (long dangles sums).
const std::vector<RopeCase> kRopeCases = {{1, 1, 2, 0, 1},        {5, 3, 6, 7, 4},
                                          {6, 2, 8, 3, 341},      {33, 2, 18, 0, 3},
                                          {700, 4, 64, 512, 341}, {300, 16, 32, 0, 5},
                                          {684, 16, 32, 1024, 343}};

}  // namespace

// =============================================================================================

CB_TEST("cuda", linear_fp32_matches_ref) { linear_suite(kFp32, kSum, false); }

CB_TEST("cuda", linear_bf16_matches_ref_within_bf16_rounding) {
  linear_suite(kBf16, kBf16Tol, true);
}

CB_TEST("cuda", elementwise_ops_match_ref) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 100;
  for (int64_t count : {int64_t(1), int64_t(7), int64_t(1000), int64_t(200003)}) {
    const std::string n = " count " + std::to_string(count);
    // Past the saturation of tanh and the sigmoid on both sides.
    const Vec x = rand_vec(count, seed++, -6.0f, 6.0f), dy = rand_vec(count, seed++);
    DVec gelu(count), gelu_dx(count), silu(count), silu_dx(count), sum = D(x);
    ref.gelu(count, D(x).data(), gelu.data());
    ref.gelu_backward(count, D(x).data(), D(dy).data(), gelu_dx.data());
    ref.silu(count, D(x).data(), silu.data());
    ref.silu_backward(count, D(x).data(), D(dy).data(), silu_dx.data());
    ref.add_inplace(count, sum.data(), D(dy).data());
    for (size_t misalign : kAlignments) {
      const std::string a = n + aligned_label(misalign);
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gx = d.upload("x", x);
      const float* gdy = d.upload("dy", dy);
      float* g1 = d.output<float>("gelu", count);
      float* g2 = d.output<float>("gelu dx", count);
      float* g3 = d.output<float>("silu", count);
      float* g4 = d.output<float>("silu dx", count);
      float* g5 = d.upload("y", x);
      gpu->gelu(count, gx, g1);
      gpu->gelu_backward(count, gx, gdy, g2);
      gpu->silu(count, gx, g3);
      gpu->silu_backward(count, gx, gdy, g4);
      gpu->add_inplace(count, g5, gdy);
      d.check_guards();
      expect_close("gelu" + a, d.download(g1), gelu, kTight);
      expect_close("gelu_backward" + a, d.download(g2), gelu_dx, kTight);
      expect_close("silu" + a, d.download(g3), silu, kTight);
      expect_close("silu_backward" + a, d.download(g4), silu_dx, kTight);
      expect_close("add_inplace" + a, d.download(g5), sum, kRounded);
    }
  }
  print_report();
}

CB_TEST("cuda", strided_copies_match_ref) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 200;
  struct S {
    int64_t rows;
    int cols, src_pad, dst_pad;
  };
  for (S s : {S{1, 1, 0, 0}, S{5, 3, 2, 7}, S{700, 256, 768, 0}, S{3000, 64, 0, 192},
              S{342, 1, 4, 3}, S{17, 1031, 5, 0}}) {
    const int64_t src_ld = s.cols + s.src_pad, dst_ld = s.cols + s.dst_pad;
    const std::string what = " " + shape({s.rows, s.cols, src_ld, dst_ld});
    const Vec src = rand_vec(s.rows * src_ld, seed++);
    const Vec dst0 = rand_vec(s.rows * dst_ld, seed++);
    for (bool acc : {false, true}) {
      DVec want = D(dst0);
      ref.copy_strided(s.rows, s.cols, D(src).data(), src_ld, want.data(), dst_ld, acc);
      for (size_t misalign : kAlignments) {
        cbt::DeviceBuffers d(gpu->memory(), misalign);
        const float* gs = d.upload("src", src);
        float* gd = d.upload("dst", dst0);
        gpu->copy_strided(s.rows, s.cols, gs, src_ld, gd, dst_ld, acc);
        d.check_guards();
        // The padding between rows included: it must stay as it was.
        expect_close(std::string("copy_strided") + (acc ? " accumulate" : "") + what +
                         aligned_label(misalign),
                     d.download(gd), want, acc ? kRounded : kExact);
      }
    }
    DVec want = D(dst0);
    ref.zero_strided(s.rows, s.cols, want.data(), dst_ld);
    for (size_t misalign : kAlignments) {
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      float* gd = d.upload("dst", dst0);
      gpu->zero_strided(s.rows, s.cols, gd, dst_ld);
      d.check_guards();
      expect_close("zero_strided" + what + aligned_label(misalign), d.download(gd), want, kExact);
    }
  }
  print_report();
}

CB_TEST("cuda", layernorm_matches_ref) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 300;
  struct S {
    int64_t n;
    int c;
  };
  for (S s : {S{1, 1}, S{1, 7}, S{5, 33}, S{300, 257}, S{1000, 512}, S{64, 1024}, S{3, 4100}}) {
    const std::string what = " " + shape({s.n, s.c});
    // An offset mean and a spread scale, as residual streams have.
    const Vec x = rand_vec(s.n * s.c, seed++, -3.0f, 5.0f), dy = rand_vec(s.n * s.c, seed++);
    DVec y(s.n * s.c), mean(s.n), rstd(s.n), dx(s.n * s.c);
    ref.layernorm(s.n, s.c, D(x).data(), y.data(), mean.data(), rstd.data());
    // The backward runs on the reference's saved statistics (as floats) on both sides.
    const Vec mean_f(mean.begin(), mean.end()), rstd_f(rstd.begin(), rstd.end());
    ref.layernorm_backward(s.n, s.c, D(x).data(), D(mean_f).data(), D(rstd_f).data(),
                           D(dy).data(), dx.data());
    for (size_t misalign : kAlignments) {
      const std::string a = what + aligned_label(misalign);
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gx = d.upload("x", x);
      const float* gdy = d.upload("dy", dy);
      const float* gm_in = d.upload("mean in", mean_f);
      const float* gr_in = d.upload("rstd in", rstd_f);
      float* gy = d.output<float>("y", y.size());
      float* gm = d.output<float>("mean", s.n);
      float* gr = d.output<float>("rstd", s.n);
      float* gdx = d.output<float>("dx", dx.size());
      gpu->layernorm(s.n, s.c, gx, gy, gm, gr);
      gpu->layernorm_backward(s.n, s.c, gx, gm_in, gr_in, gdy, gdx);
      d.check_guards();
      // Sums of c terms; y = (x - mean) rstd inherits rstd's relative error.
      expect_close("layernorm y" + a, d.download(gy), y, kSum);
      expect_close("layernorm mean" + a, d.download(gm), mean, kSum);
      expect_close("layernorm rstd" + a, d.download(gr), rstd, kSum);
      // dx subtracts two row means from dy: cancellation, hence the RMS-relative atol.
      expect_close("layernorm_backward" + a, d.download(gdx), dx, kSum);
    }
  }
  print_report();
}

CB_TEST("cuda", adaln_ops_match_ref) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 400;
  struct S {
    int B, T, c, ld;
  };
  // ld > c: shift, scale and gate are chunks of a wider AdaLN output; T = 1 is a sampling step.
  for (S s : {S{1, 1, 1, 2}, S{2, 3, 5, 15}, S{3, 23, 70, 6 * 70}, S{4, 342, 256, 6 * 256},
              S{5, 1, 512, 6 * 512}, S{2, 65, 1024, 2 * 1024}}) {
    const std::string what = " " + shape({s.B, s.T, s.c, s.ld});
    const size_t n = (size_t)s.B * s.T * s.c;
    const Vec xn = rand_vec(n, seed++), h = rand_vec(n, seed++), dy = rand_vec(n, seed++);
    const Vec ada = rand_vec((size_t)s.B * s.ld, seed++);
    const Vec dada0 = rand_vec((size_t)s.B * s.ld, seed++);  // accumulated into
    const int scale_off = s.c;                                // shift at 0, scale at c
    DVec y(n), dxn(n), dada = D(dada0), x = D(xn), dh(n), dgate = D(dada0);
    ref.modulate(s.B, s.T, s.c, D(xn).data(), D(ada).data(), D(ada).data() + scale_off, s.ld,
                 y.data());
    ref.modulate_backward(s.B, s.T, s.c, D(xn).data(), D(ada).data() + scale_off, s.ld,
                          D(dy).data(), dxn.data(), dada.data(), dada.data() + scale_off);
    ref.gated_residual(s.B, s.T, s.c, x.data(), D(ada).data(), s.ld, D(h).data());
    ref.gated_residual_backward(s.B, s.T, s.c, D(dy).data(), D(ada).data(), s.ld, D(h).data(),
                                dh.data(), dgate.data());
    for (size_t misalign : kAlignments) {
      const std::string a = what + aligned_label(misalign);
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gxn = d.upload("xn", xn);
      const float* gh = d.upload("h", h);
      const float* gdy = d.upload("dy", dy);
      const float* gada = d.upload("ada", ada);
      float* gy = d.output<float>("y", n);
      float* gdxn = d.output<float>("dxn", n);
      float* gdada = d.upload("dada", dada0);
      float* gx = d.upload("x", xn);
      float* gdh = d.output<float>("dh", n);
      float* gdgate = d.upload("dgate", dada0);
      gpu->modulate(s.B, s.T, s.c, gxn, gada, gada + scale_off, s.ld, gy);
      gpu->modulate_backward(s.B, s.T, s.c, gxn, gada + scale_off, s.ld, gdy, gdxn, gdada,
                             gdada + scale_off);
      gpu->gated_residual(s.B, s.T, s.c, gx, gada, s.ld, gh);
      gpu->gated_residual_backward(s.B, s.T, s.c, gdy, gada, s.ld, gh, gdh, gdgate);
      d.check_guards();
      expect_close("modulate" + a, d.download(gy), y, kTight);
      expect_close("modulate_backward dxn" + a, d.download(gdxn), dxn, kTight);
      // T terms per entry; the columns past 2c must stay as they were.
      expect_close("modulate_backward dshift, dscale" + a, d.download(gdada), dada, kSum);
      expect_close("gated_residual" + a, d.download(gx), x, kTight);
      expect_close("gated_residual_backward dh" + a, d.download(gdh), dh, kTight);
      expect_close("gated_residual_backward dgate" + a, d.download(gdgate), dgate, kSum);
    }
  }
  print_report();
}

CB_TEST("cuda", row_ops_match_ref_with_repeated_indices) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 500;
  struct S {
    int64_t n;
    int c, rows;
  };
  // Few table rows for many indices: every row is hit repeatedly (and some not at all).
  for (S s : {S{1, 1, 1}, S{9, 5, 3}, S{700, 130, 11}, S{5000, 200, 7}, S{1368, 512, 1001},
              S{2000, 3, 343}}) {
    const std::string what = " " + shape({s.n, s.c}) + " table rows " + std::to_string(s.rows);
    const Vec table = rand_vec((size_t)s.rows * s.c, seed++);
    const Idx index = rand_idx(s.n, seed++, 0, s.rows - 1);
    const Vec dout = rand_vec(s.n * s.c, seed++);
    const Vec dtable0 = rand_vec((size_t)s.rows * s.c, seed++);
    std::vector<uint8_t> mask(s.n);
    const Idx bits = rand_idx(s.n, seed++, 0, 2);
    for (int64_t i = 0; i < s.n; i++) mask[i] = (uint8_t)(bits[i] == 0 ? 0 : bits[i] * 3);
    const Vec vec = rand_vec(s.c, seed++), dvec0 = rand_vec(s.c, seed++);
    DVec gathered(s.n * s.c), dtable = D(dtable0), filled = D(dout), dx = D(dout), dvec = D(dvec0);
    ref.gather_rows(s.n, s.c, D(table).data(), index.data(), gathered.data());
    ref.scatter_add_rows(s.n, s.c, D(dout).data(), index.data(), dtable.data());
    ref.fill_masked_rows(s.n, s.c, mask.data(), D(vec).data(), filled.data());
    ref.fill_masked_rows_backward(s.n, s.c, mask.data(), dx.data(), dvec.data());
    for (size_t misalign : kAlignments) {
      const std::string a = what + aligned_label(misalign);
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gtable = d.upload("table", table);
      const int32_t* gindex = d.upload("index", index);
      const float* gdout = d.upload("dout", dout);
      const uint8_t* gmask = d.upload("mask", mask);
      const float* gvec = d.upload("vec", vec);
      float* gout = d.output<float>("gathered", gathered.size());
      float* gdtable = d.upload("dtable", dtable0);
      float* gx = d.upload("x", dout);
      float* gdx = d.upload("dx", dout);
      float* gdvec = d.upload("dvec", dvec0);
      gpu->gather_rows(s.n, s.c, gtable, gindex, gout);
      gpu->scatter_add_rows(s.n, s.c, gdout, gindex, gdtable);
      gpu->fill_masked_rows(s.n, s.c, gmask, gvec, gx);
      gpu->fill_masked_rows_backward(s.n, s.c, gmask, gdx, gdvec);
      d.check_guards();
      expect_close("gather_rows" + a, d.download(gout), gathered, kExact);
      expect_close("scatter_add_rows" + a, d.download(gdtable), dtable, kSum);  // n/rows terms
      expect_close("fill_masked_rows" + a, d.download(gx), filled, kExact);
      expect_close("fill_masked_rows_backward dx" + a, d.download(gdx), dx, kExact);
      expect_close("fill_masked_rows_backward dvec" + a, d.download(gdvec), dvec, kSum);
    }
  }
  print_report();
}

CB_TEST("cuda", rope_matches_ref_with_and_without_mixing) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
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
      const Vec dy = rand_vec(rc.n * C, seed++);
      // dx: only the H*hd columns of each ld-wide row are written (they start as NaN); the
      // rest must stay as it was.
      Vec dx0 = rand_vec(rc.n * ld, seed++);
      for (int64_t i = 0; i < rc.n; i++) {
        std::fill(dx0.begin() + i * ld, dx0.begin() + i * ld + C, kNaN);
      }
      const Vec dangles0 = rand_vec(angles.size(), seed++), dmix0 = rand_vec(rc.H, seed++);
      DVec y(rc.n * C), dx = D(dx0), dangles = D(dangles0), dmix = D(dmix0);
      const DVec mix_d = D(mix);
      ref.rope(rc.n, rc.H, rc.hd, D(x).data(), ld, D(angles).data(), pos_p.data(), pos_q.data(),
               mixed ? mix_d.data() : nullptr, y.data());
      ref.rope_backward(rc.n, rc.H, rc.hd, D(x).data(), ld, D(angles).data(), pos_p.data(),
                        pos_q.data(), mixed ? mix_d.data() : nullptr, D(dy).data(), dx.data(),
                        dangles.data(), mixed ? dmix.data() : nullptr);
      for (size_t misalign : kAlignments) {
        const std::string a = what + aligned_label(misalign);
        cbt::DeviceBuffers d(gpu->memory(), misalign);
        const float* gx = d.upload("x", x);
        const float* gangles = d.upload("angles", angles);
        const int32_t* gp = d.upload("pos_p", pos_p);
        const int32_t* gq = d.upload("pos_q", pos_q);
        const float* gmix = mixed ? d.upload("mix_logit", mix) : nullptr;
        const float* gdy = d.upload("dy", dy);
        float* gy = d.output<float>("y", y.size());
        float* gdx = d.upload("dx", dx0);
        float* gdangles = d.upload("dangles", dangles0);
        float* gdmix = d.upload("dmix_logit", dmix0);
        gpu->rope(rc.n, rc.H, rc.hd, gx, ld, gangles, gp, gq, gmix, gy);
        gpu->rope_backward(rc.n, rc.H, rc.hd, gx, ld, gangles, gp, gq, gmix, gdy, gdx, gdangles,
                           mixed ? gdmix : nullptr);
        d.check_guards();
        expect_close(a + ": y", d.download(gy), y, kTight);
        expect_close(a + ": dx", d.download(gdx), dx, kTight);
        // dangles sums n H / positions terms per entry; dmix sums n hd / 2 terms per head (and
        // stays as it was without mixing).
        expect_close(a + ": dangles", d.download(gdangles), dangles, kSum);
        expect_close(a + ": dmix_logit", d.download(gdmix), dmix, kSum);
      }
    }
  }
  print_report();
}

CB_TEST("cuda", attention_matches_ref_with_single_slot_blocks) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 700;
  for (const AttentionCase& c : attention_cases()) {
    const std::string what = "attention " + c.name + " " + shape({c.B, c.T, c.H, c.hd});
    const size_t N = (size_t)c.B * c.T * c.H * c.hd, L = (size_t)c.B * c.H * c.T;
    // Scores of a few units (|q.k| / sqrt(hd) up to ~3): peaked but not one-hot softmaxes.
    const Vec q = rand_vec(N, seed++, -1.5f, 1.5f), k = rand_vec(N, seed++, -1.5f, 1.5f);
    const Vec v = rand_vec(N, seed++), dout = rand_vec(N, seed++);
    DVec out(N), lse(L), dq(N), dk(N), dv(N);
    ref.attention(c.B, c.T, c.H, c.hd, D(q).data(), D(k).data(), D(v).data(),
                  c.visible_end.data(), out.data(), lse.data());
    // Both backwards run on the reference's out and lse, rounded to float.
    const Vec out_f(out.begin(), out.end()), lse_f(lse.begin(), lse.end());
    ref.attention_backward(c.B, c.T, c.H, c.hd, D(q).data(), D(k).data(), D(v).data(),
                           c.visible_end.data(), D(out_f).data(), D(lse_f).data(),
                           D(dout).data(), dq.data(), dk.data(), dv.data());
    for (size_t misalign : kAlignments) {
      const std::string a = what + aligned_label(misalign);
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gq = d.upload("q", q);
      const float* gk = d.upload("k", k);
      const float* gv = d.upload("v", v);
      const int32_t* gve = d.upload("visible_end", c.visible_end);
      const float* gout_in = d.upload("out in", out_f);
      const float* glse_in = d.upload("lse in", lse_f);
      const float* gdout = d.upload("dout", dout);
      float* gout = d.output<float>("out", N);
      float* glse = d.output<float>("lse", L);
      float* gdq = d.output<float>("dq", N);
      float* gdk = d.output<float>("dk", N);
      float* gdv = d.output<float>("dv", N);
      gpu->attention(c.B, c.T, c.H, c.hd, gq, gk, gv, gve, gout, glse);
      gpu->attention_backward(c.B, c.T, c.H, c.hd, gq, gk, gv, gve, gout_in, glse_in, gdout, gdq,
                              gdk, gdv);
      d.check_guards();
      // Sums over hd and over up to T visible keys of probabilities times values.
      expect_close(a + ": out", d.download(gout), out, kSum);
      expect_close(a + ": lse", d.download(glse), lse, kSum);
      expect_close(a + ": dq", d.download(gdq), dq, kSum);
      expect_close(a + ": dk", d.download(gdk), dk, kSum);
      expect_close(a + ": dv", d.download(gdv), dv, kSum);
    }
  }
  print_report();
}

CB_TEST("cuda", cached_attention_matches_ref) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 750;
  struct S {
    int B, H, hd, capacity;  // the cache holds `capacity` slots per batch row
    Idx visible_end;         // (Tq) keys seen by each query
    std::string name;
  };
  const std::vector<S> cases = {
      {1, 1, 2, 1, {1}, "class token alone"},
      {3, 2, 6, 30, {1, 2}, "class token and the first block"},
      {2, 3, 8, 30, {23}, "one query, many keys"},
      {3, 2, 6, 30, {23, 23, 23, 23, 23, 23, 23, 23}, "a block of 8"},
      {2, 2, 4, 9, {3, 5, 5, 9}, "mixed ends"},
      {2, 16, 32, 342, Idx(64, 342), "S-like last block"},
      {4, 16, 64, 342, Idx(16, 86), "L-like block of 16"},
  };
  for (const S& s : cases) {
    const int Tq = (int)s.visible_end.size(), C = s.H * s.hd;
    const std::string what =
        "attention_cached " + s.name + " " + shape({s.B, Tq, s.H, s.hd, s.capacity});
    const int filled = *std::max_element(s.visible_end.begin(), s.visible_end.end());
    const int64_t stride = int64_t(s.capacity) * C;
    const Vec q = rand_vec((size_t)s.B * Tq * C, seed++, -1.5f, 1.5f);
    // Cache rows past the largest visible end are NaN: reading one poisons the output.
    Vec k = rand_vec((size_t)s.B * stride, seed++, -1.5f, 1.5f), v = rand_vec(k.size(), seed++);
    for (int b = 0; b < s.B; b++) {
      for (int64_t e = int64_t(filled) * C; e < stride; e++) {
        k[b * stride + e] = v[b * stride + e] = kNaN;
      }
    }
    DVec out((size_t)s.B * Tq * C);
    ref.attention_cached(s.B, Tq, s.H, s.hd, D(q).data(), D(k).data(), D(v).data(), stride,
                         s.visible_end.data(), out.data());
    for (size_t misalign : kAlignments) {
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gq = d.upload("q", q);
      const float* gk = d.upload("k cache", k);
      const float* gv = d.upload("v cache", v);
      const int32_t* gve = d.upload("visible_end", s.visible_end);
      float* gout = d.output<float>("out", out.size());
      gpu->attention_cached(s.B, Tq, s.H, s.hd, gq, gk, gv, stride, gve, gout);
      d.check_guards();
      expect_close(what + aligned_label(misalign), d.download(gout), out, kSum);
    }
  }
  print_report();
}

CB_TEST("cuda", upsampling_matches_ref) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 800;
  struct S {
    int B, s_in, s_out, D;
  };
  for (S s : {S{1, 1, 2, 1}, S{2, 2, 4, 3}, S{3, 4, 8, 8}, S{2, 8, 16, 8}, S{1, 3, 5, 7},
              S{4, 1, 16, 8}, S{2, 5, 16, 48}}) {
    const std::string what = "upsample_bilinear " + shape({s.B, s.s_in, s.s_out, s.D});
    const Vec src = rand_vec((size_t)s.B * s.s_in * s.s_in * s.D, seed++);
    DVec dst((size_t)s.B * s.s_out * s.s_out * s.D);
    ref.upsample_bilinear(s.B, s.s_in, s.s_out, s.D, D(src).data(), dst.data());
    for (size_t misalign : kAlignments) {
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gsrc = d.upload("src", src);
      float* gdst = d.output<float>("dst", dst.size());
      gpu->upsample_bilinear(s.B, s.s_in, s.s_out, s.D, gsrc, gdst);
      d.check_guards();
      // Four taps of weights from the grid coordinates.
      expect_close(what + aligned_label(misalign), d.download(gdst), dst, kTight);
    }
  }
  print_report();
}

// The codes must equal the reference's exactly (same Philox keys, the draw in double after the
// guidance), the entropies within 1e-5 bits.
CB_TEST("cuda", sample_tokens_draw_the_reference_codes) {
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 900;
  struct S {
    int64_t n;
    int K;
  };
  std::vector<std::pair<std::string, cb::TokenSampling>> settings;
  settings.push_back({"plain", {}});
  settings.push_back({"temperature 0.7, top-k 20", {0.7f, 20, 1.0f, 0}});
  settings.push_back({"top-p 0.9", {1.0f, 0, 0.9f, 0}});
  settings.push_back({"top-k 50, top-p 0.8, temperature 1.3", {1.3f, 50, 0.8f, 0}});
  settings.push_back({"greedy", {0.0f, 0, 1.0f, 0}});
  int rows = 0;
  // Fewer rows of the large vocabularies under the emulation (the same kernel paths).
  const bool small = cbt::emulated_cuda();
  for (S s : {S{1, 1}, S{7, 5}, S{small ? 24 : 300, 97}, S{small ? 2 : 64, 4096},
              S{small ? 2 : 33, 4099}}) {
    const Vec cond = rand_vec(s.n * s.K, seed++, -4.0f, 4.0f);
    const Vec uncond = rand_vec(s.n * s.K, seed++, -4.0f, 4.0f);
    Idx image(s.n), slot(s.n);
    for (int64_t i = 0; i < s.n; i++) {
      image[i] = int32_t(i % 5);
      slot[i] = int32_t(3 * i + 1);
    }
    for (auto& [name, sampling] : settings) {
      for (float guidance : {0.0f, 2.0f}) {
        cb::TokenSampling ts = sampling;
        ts.seed = 77 + seed;
        const std::string what = "sample_tokens " + shape({s.n, s.K}) + " " + name +
                                 ", guidance " + fmt(guidance);
        Idx codes(s.n);
        std::vector<float> entropy(s.n);
        ref.sample_tokens(s.n, s.K, D(cond).data(), guidance != 0 ? D(uncond).data() : nullptr,
                          guidance, ts, image.data(), slot.data(), codes.data(), entropy.data());
        for (bool want_entropy : {true, false}) {
          cbt::DeviceBuffers d(gpu->memory());
          const float* gc = d.upload("cond", cond);
          const float* gu = guidance != 0 ? d.upload("uncond", uncond) : nullptr;
          const int32_t* gimage = d.upload("image", image);
          const int32_t* gslot = d.upload("slot", slot);
          int32_t* gcodes = d.output<int32_t>("codes", s.n);
          float* gentropy = want_entropy ? d.output<float>("entropy", s.n) : nullptr;
          gpu->sample_tokens(s.n, s.K, gc, gu, guidance, ts, gimage, gslot, gcodes, gentropy);
          d.check_guards();
          const Idx got = d.download(gcodes);
          for (int64_t i = 0; i < s.n; i++) {
            EXPECT(got[i] == codes[i], what + ": row " + std::to_string(i) + " drew code " +
                                           std::to_string(got[i]) + ", the reference " +
                                           std::to_string(codes[i]));
          }
          if (!want_entropy) continue;
          const Vec h = d.download(gentropy);
          for (int64_t i = 0; i < s.n; i++) {
            EXPECT(std::fabs(double(h[i]) - entropy[i]) <= 1e-5,
                   what + ": row " + std::to_string(i) + " entropy " + fmt(h[i]) +
                       " bits, the reference " + fmt(entropy[i]));
          }
          rows += (int)s.n;
        }
      }
    }
  }
  std::printf("     %d rows drawn, every code equal to cpu-ref's\n", rows);
}

CB_TEST("cuda", softmax_cross_entropy_matches_ref) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 1000;
  struct S {
    int64_t n;
    int K;
  };
  for (S s : {S{1, 1}, S{3, 5}, S{37, 257}, S{700, 4096}, S{5, 4099}, S{2, 65536}}) {
    const std::string what = " " + shape({s.n, s.K});
    const Vec logits = rand_vec(s.n * s.K, seed++, -8.0f, 8.0f);
    // About a quarter of the rows are ignored (target -1), the first row never is.
    Idx target = rand_idx(s.n, seed++, -(s.K / 3 + 1), s.K - 1);
    for (auto& t : target) t = std::max(t, -1);
    target[0] = std::max(target[0], 0);
    int64_t counted = 0;
    for (int32_t t : target) counted += t >= 0;
    const float grad_scale = 1.0f / (float)counted;
    DVec loss(s.n), dlogits(s.n * s.K);
    ref.softmax_cross_entropy(s.n, s.K, D(logits).data(), target.data(), loss.data(),
                              dlogits.data(), grad_scale);
    for (bool with_grad : {true, false}) {
      for (size_t misalign : kAlignments) {
        const std::string a = what + (with_grad ? "" : " no dlogits") + aligned_label(misalign);
        cbt::DeviceBuffers d(gpu->memory(), misalign);
        const float* glogits = d.upload("logits", logits);
        const int32_t* gtarget = d.upload("target", target);
        float* gloss = d.output<float>("loss_rows", s.n);
        float* gd = with_grad ? d.output<float>("dlogits", dlogits.size()) : nullptr;
        gpu->softmax_cross_entropy(s.n, s.K, glogits, gtarget, gloss, gd, grad_scale);
        d.check_guards();
        // A log of a sum of K exponentials.
        expect_close("softmax_cross_entropy loss" + a, d.download(gloss), loss, kSum);
        if (with_grad) {
          expect_close("softmax_cross_entropy dlogits" + a, d.download(gd), dlogits, kSum);
        }
      }
    }
  }
  print_report();
}

CB_TEST("cuda", adamw_matches_ref) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  Ref ref;
  uint32_t seed = 1100;
  for (int64_t count : {int64_t(1), int64_t(7), int64_t(200003)}) {
    for (int64_t t : {int64_t(1), int64_t(3), int64_t(1000)}) {
      for (float wd : {0.0f, 0.1f}) {
        const std::string what = "adamw count " + std::to_string(count) + " t " +
                                 std::to_string(t) + " wd " + fmt(wd);
        const Vec p0 = rand_vec(count, seed++), g = rand_vec(count, seed++, -0.1f, 0.1f);
        const Vec m0 = rand_vec(count, seed++, -0.01f, 0.01f);
        const Vec v0 = rand_vec(count, seed++, 0.0f, 1e-3f);
        DVec p = D(p0), m = D(m0), v = D(v0);
        ref.adamw(count, p.data(), D(g).data(), m.data(), v.data(), 1e-3f, 0.9f, 0.95f, 1e-8f,
                  wd, t);
        for (size_t misalign : kAlignments) {
          const std::string a = what + aligned_label(misalign);
          cbt::DeviceBuffers d(gpu->memory(), misalign);
          float* gp = d.upload("param", p0);
          const float* gg = d.upload("grad", g);
          float* gm = d.upload("m", m0);
          float* gv = d.upload("v", v0);
          gpu->adamw(count, gp, gg, gm, gv, 1e-3f, 0.9f, 0.95f, 1e-8f, wd, t);
          d.check_guards();
          // A handful of roundings per element.
          expect_close(a + ": m", d.download(gm), m, kTight);
          expect_close(a + ": v", d.download(gv), v, kTight);
          expect_close(a + ": param", d.download(gp), p, kTight);
        }
      }
    }
  }
  print_report();
}

// ---- mixed precision (model/mixed_ops.h) -------------------------------------------------------

// bf16 bits of v, rounded to nearest with ties to even (what the GPU's __float2bfloat16_rn does
// to a finite float), and the float a bf16 value stands for.
uint16_t bf16_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float bf16_value(uint16_t bits) {
  const uint32_t u = uint32_t(bits) << 16;
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
std::vector<uint16_t> to_bits(const Vec& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = bf16_bits(v[i]);
  return out;
}
Vec from_bits(const std::vector<uint16_t>& bits) {
  Vec out(bits.size());
  for (size_t i = 0; i < bits.size(); i++) out[i] = bf16_value(bits[i]);
  return out;
}
Vec rounded(const Vec& v) { return from_bits(to_bits(v)); }
const cb::bf16_t* as_bf16(const uint16_t* p) { return reinterpret_cast<const cb::bf16_t*>(p); }
cb::bf16_t* as_bf16(uint16_t* p) { return reinterpret_cast<cb::bf16_t*>(p); }

// One bf16 rounding of an fp32 result: at most half a bf16 ulp, 2^-8 |ref| = 3.9e-3 |ref|
// (nmse ~ 1e-6 on many values, at most 1.5e-5 on a few), plus the fp32 result's own few ulps
// (rtol's margin; atol for results near zero after cancellation).
constexpr Tol kBf16Rounded{1e-6, 4.2e-3, 2e-5, 1e-7};
// Products of bf16 operands are exact in fp32; what is left is the tensor cores' fp32
// accumulation in another order (for k up to 2048 at most ~1e-4 of the RMS even with a biased
// rounding of every add). An operand rounded differently from round-to-nearest-even is off by
// ~1e-3 per product: nmse ~ 1e-6.
constexpr Tol kBf16Operands{3e-4, 1e-3, 1e-7, 1e-6};

// The mixed-precision matmuls against the reference on the bf16-rounded operands the tensor cores
// see (x, w and, in the backward, dy; db sums the fp32 dy): what is left is fp32 accumulation.
void check_linear_mixed(Ops& gpu, const LinearShape& s, bool x_bf16, uint32_t seed) {
  cb::MixedPrecisionOps* mixed = gpu.mixed();
  EXPECT(mixed != nullptr, std::string(gpu.name()) + " has no mixed-precision ops");
  const std::string what = std::string("linear_mixed ") + shape({s.n, s.in, s.out}) +
                           (x_bf16 ? " x bf16" : " x fp32");
  const Vec x = rand_vec(s.n * s.in, seed), w = rand_vec((size_t)s.out * s.in, seed + 1);
  const Vec b = rand_vec(s.out, seed + 2), dy = rand_vec(s.n * s.out, seed + 3);
  const Vec dw0 = rand_vec((size_t)s.out * s.in, seed + 4), db0 = rand_vec(s.out, seed + 5);
  const Vec xr = rounded(x), wr = rounded(w), dyr = rounded(dy);
  Ref ref;
  DVec y_ref(s.n * s.out), dx_ref(s.n * s.in), dw_ref = D(dw0), db_ref = D(db0);
  ref.linear(s.n, s.in, s.out, D(xr).data(), D(wr).data(), D(b).data(), y_ref.data());
  ref.linear_backward(s.n, s.in, s.out, D(xr).data(), D(wr).data(), D(dyr).data(),
                      dx_ref.data(), dw_ref.data(), nullptr);
  ref.linear_backward(s.n, s.in, s.out, D(x).data(), D(w).data(), D(dy).data(), nullptr,
                      nullptr, db_ref.data());
  for (size_t misalign : kAlignments) {
    const std::string a = what + aligned_label(misalign);
    cbt::DeviceBuffers d(gpu.memory(), misalign);
    const float* gx = d.upload("x", x);
    const cb::bf16_t* gx16 = as_bf16(d.upload("x16", to_bits(x)));
    const cb::bf16_t* gw16 = as_bf16(d.upload("w16", to_bits(w)));
    const float* gb = d.upload("b", b);
    const float* gdy = d.upload("dy", dy);
    float* gy = d.output<float>("y", y_ref.size());
    float* gdx = d.output<float>("dx", dx_ref.size());
    float* gdw = d.upload("dw", dw0);
    float* gdb = d.upload("db", db0);
    if (x_bf16) {
      mixed->linear_mixed(s.n, s.in, s.out, gx16, gw16, gb, gy);
      mixed->linear_backward_mixed(s.n, s.in, s.out, gx16, gw16, gdy, gdx, gdw, gdb);
    } else {
      mixed->linear_mixed(s.n, s.in, s.out, gx, gw16, gb, gy);
      mixed->linear_backward_mixed(s.n, s.in, s.out, gx, gw16, gdy, gdx, gdw, gdb);
    }
    d.check_guards();
    expect_close(a + ": y", d.download(gy), y_ref, kBf16Operands);
    expect_close(a + ": dx", d.download(gdx), dx_ref, kBf16Operands);
    expect_close(a + ": dw", d.download(gdw), dw_ref, kBf16Operands);
    expect_close(a + ": db", d.download(gdb), db_ref, kSum);
  }
}

// Reductions into parameter gradients are deterministic (DESIGN.md, "Decisions: device memory
// and the cuda backend": no float atomics): the same inputs twice give bit-equal outputs.
CB_TEST("cuda", reductions_and_attention_are_deterministic) {
  std::unique_ptr<Ops> gpu = gpu_ops(kFp32);
  uint32_t seed = 1200;
  // Runs `fn` (which fills the buffers it is given) twice on fresh buffers and compares.
  auto twice = [&](const std::string& what, const std::vector<Vec>& inputs, size_t outputs,
                   const std::function<void(const std::vector<float*>&)>& fn) {
    std::vector<Vec> results[2];
    for (int run = 0; run < 2; run++) {
      cbt::DeviceBuffers d(gpu->memory());
      std::vector<float*> ptrs;
      for (size_t i = 0; i < inputs.size(); i++) {
        ptrs.push_back(d.upload("buffer " + std::to_string(i), inputs[i]));
      }
      fn(ptrs);
      d.check_guards();
      for (size_t i = inputs.size() - outputs; i < inputs.size(); i++) {
        results[run].push_back(d.download(ptrs[i]));
      }
    }
    for (size_t i = 0; i < results[0].size(); i++) {
      EXPECT(std::memcmp(results[0][i].data(), results[1][i].data(),
                         results[0][i].size() * sizeof(float)) == 0,
             what + ": two runs on the same inputs differ (output " + std::to_string(i) + ")");
    }
  };
  {
    const int64_t n = 3000;
    const int in = 96, out = 200;
    // x, w, dy; then dx, dw, db (accumulated from zero).
    twice("linear_backward",
          {rand_vec(n * in, seed++), rand_vec(out * in, seed++), rand_vec(n * out, seed++),
           Vec(n * in, 0.0f), Vec(out * in, 0.0f), Vec(out, 0.0f)},
          3, [&](const std::vector<float*>& p) {
            gpu->linear_backward(n, in, out, p[0], p[1], p[2], p[3], p[4], p[5]);
          });
  }
  {
    const int B = 4, T = 342, c = 256, ld = 6 * c;
    const size_t n = (size_t)B * T * c;
    const Vec xn = rand_vec(n, seed++), dy = rand_vec(n, seed++), ada = rand_vec(B * ld, seed++);
    twice("modulate_backward", {xn, dy, ada, Vec(n, 0.0f), Vec(B * ld, 0.0f)}, 2,
          [&](const std::vector<float*>& p) {
            gpu->modulate_backward(B, T, c, p[0], p[2] + c, ld, p[1], p[3], p[4], p[4] + c);
          });
    twice("gated_residual_backward", {xn, dy, ada, Vec(n, 0.0f), Vec(B * ld, 0.0f)}, 2,
          [&](const std::vector<float*>& p) {
            gpu->gated_residual_backward(B, T, c, p[1], p[2], ld, p[0], p[3], p[4]);
          });
  }
  {
    const int64_t n = 5000;
    const int c = 200, rows = 7;
    const Idx index = rand_idx(n, seed++, 0, rows - 1);
    std::vector<uint8_t> mask(n);
    for (int64_t i = 0; i < n; i++) mask[i] = (uint8_t)(index[i] & 1);
    cbt::DeviceBuffers ints(gpu->memory());
    const int32_t* gindex = ints.upload("index", index);
    const uint8_t* gmask = ints.upload("mask", mask);
    const Vec dout = rand_vec(n * c, seed++);
    twice("scatter_add_rows", {dout, Vec(rows * c, 0.0f)}, 1, [&](const std::vector<float*>& p) {
      gpu->scatter_add_rows(n, c, p[0], gindex, p[1]);
    });
    twice("fill_masked_rows_backward", {dout, Vec(c, 0.0f)}, 2,
          [&](const std::vector<float*>& p) {
            gpu->fill_masked_rows_backward(n, c, gmask, p[0], p[1]);
          });
  }
  {
    const int64_t n = 2000;
    const int H = 4, hd = 64, ld = 3 * H * hd, P = 341;
    cbt::DeviceBuffers ints(gpu->memory());
    const int32_t* pp = ints.upload("pos_p", rand_idx(n, seed++, 0, P - 1));
    const int32_t* pq = ints.upload("pos_q", rand_idx(n, seed++, 0, P - 1));
    twice("rope_backward",
          {rand_vec(n * ld, seed++), rand_vec((size_t)P * hd / 2, seed++), rand_vec(H, seed++),
           rand_vec(n * H * hd, seed++), Vec(n * ld, 0.0f), Vec((size_t)P * hd / 2, 0.0f),
           Vec(H, 0.0f)},
          3, [&](const std::vector<float*>& p) {
            gpu->rope_backward(n, H, hd, p[0], ld, p[1], pp, pq, p[2], p[3], p[4], p[5], p[6]);
          });
  }
  {
    const int B = 4, T = 342, H = 8, hd = 64;
    const size_t N = (size_t)B * T * H * hd;
    cbt::DeviceBuffers ints(gpu->memory());
    const int32_t* ve = ints.upload("visible_end", preset_visible_end());
    twice("attention and attention_backward",
          {rand_vec(N, seed++), rand_vec(N, seed++), rand_vec(N, seed++), rand_vec(N, seed++),
           Vec(N, 0.0f), Vec((size_t)B * H * T, 0.0f), Vec(N, 0.0f), Vec(N, 0.0f), Vec(N, 0.0f)},
          5, [&](const std::vector<float*>& p) {
            gpu->attention(B, T, H, hd, p[0], p[1], p[2], ve, p[4], p[5]);
            gpu->attention_backward(B, T, H, hd, p[0], p[1], p[2], ve, p[4], p[5], p[3], p[6],
                                    p[7], p[8]);
          });
  }
}

CB_TEST("cuda", mixed_precision_linear_matches_ref_on_bf16_operands) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kBf16);
  EXPECT(gpu_ops(kFp32)->mixed() == nullptr, "cuda-fp32 must run fp32 throughout");
  uint32_t seed = 1300;
  for (const LinearShape& s : kLinearShapes) {
    if (cbt::emulated_cuda() && int64_t(s.n) * s.in * s.out > 50000000) continue;  // as above
    for (bool x_bf16 : {false, true}) check_linear_mixed(*gpu, s, x_bf16, seed += 10);
  }
  print_report();
}

// to_bf16 rounds exactly as round-to-nearest-even; modulate_bf16 and gelu_bf16 are the fp32 ops
// rounded once; adamw_mixed is adamw, and its bf16 copy is the rounding of the new master value.
CB_TEST("cuda", mixed_precision_conversions_match_ref) {
  begin_report();
  std::unique_ptr<Ops> gpu = gpu_ops(kBf16);
  cb::MixedPrecisionOps* mixed = gpu->mixed();
  Ref ref;
  uint32_t seed = 1400;
  for (size_t misalign : kAlignments) {
    const std::string al = aligned_label(misalign);
    // A strided block into a strided destination (the Eq. 1 concat), and a long flat row.
    const std::vector<std::array<int64_t, 4>> copies = {{7, 5, 9, 20},
                                                         {1, 200003, 200003, 200003}};
    for (const auto& sz : copies) {
      const int64_t rows = sz[0], cols = sz[1], src_ld = sz[2], dst_ld = sz[3];
      const std::string what = "to_bf16 " + shape({rows, cols}) + al;
      Vec src = rand_vec(size_t((rows - 1) * src_ld + cols), seed++, -3.0f, 3.0f);
      src[0] = 1.0f + 1.0f / 256.0f;  // a tie: rounds to even (1.0)
      const std::vector<uint16_t> before(size_t((rows - 1) * dst_ld + cols), 0x5a5au);
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gs = d.upload("src", src);
      uint16_t* gd = d.upload("dst", before);
      mixed->to_bf16(rows, cols, gs, src_ld, as_bf16(gd), dst_ld);
      d.check_guards();
      const std::vector<uint16_t> got = d.download(gd);
      for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < dst_ld && r * dst_ld + c < (int64_t)got.size(); c++) {
          const uint16_t want = c < cols ? bf16_bits(src[r * src_ld + c]) : before[0];
          EXPECT(got[r * dst_ld + c] == want,
                 what + ": at (" + std::to_string(r) + ", " + std::to_string(c) + ") bits " +
                     std::to_string(got[r * dst_ld + c]) + ", expected " + std::to_string(want));
        }
      }
    }
    for (int64_t count : {int64_t(1), int64_t(1000), int64_t(200003)}) {
      const std::string what = "gelu_bf16 count " + std::to_string(count) + al;
      const Vec x = rand_vec(count, seed++, -6.0f, 6.0f);
      DVec want(count);
      ref.gelu(count, D(x).data(), want.data());
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gx = d.upload("x", x);
      uint16_t* gy = d.output<uint16_t>("y", count);
      mixed->gelu_bf16(count, gx, as_bf16(gy));
      d.check_guards();
      expect_close(what, from_bits(d.download(gy)), want, kBf16Rounded);
    }
    for (const auto& bt : std::vector<std::array<int, 3>>{{1, 1, 5}, {3, 7, 33}, {2, 342, 512}}) {
      const int B = bt[0], T = bt[1], c = bt[2], ld = 6 * c;
      const std::string what = "modulate_bf16 " + shape({B, T, c}) + al;
      const Vec xn = rand_vec(size_t(B) * T * c, seed++, -3.0f, 3.0f);
      const Vec ada = rand_vec(size_t(B) * ld, seed++);
      DVec want(size_t(B) * T * c);
      ref.modulate(B, T, c, D(xn).data(), D(ada).data(), D(ada).data() + c, ld, want.data());
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      const float* gxn = d.upload("xn", xn);
      const float* gada = d.upload("ada", ada);
      uint16_t* gy = d.output<uint16_t>("y", want.size());
      mixed->modulate_bf16(B, T, c, gxn, gada, gada + c, ld, as_bf16(gy));
      d.check_guards();
      expect_close(what, from_bits(d.download(gy)), want, kBf16Rounded);
    }
    for (int64_t count : {int64_t(1), int64_t(200003)}) {
      const std::string what = "adamw_mixed count " + std::to_string(count) + al;
      const Vec p0 = rand_vec(count, seed++), g = rand_vec(count, seed++, -0.1f, 0.1f);
      const Vec m0 = rand_vec(count, seed++, -0.01f, 0.01f);
      const Vec v0 = rand_vec(count, seed++, 0.0f, 1e-3f);
      DVec p = D(p0), m = D(m0), v = D(v0);
      ref.adamw(count, p.data(), D(g).data(), m.data(), v.data(), 1e-3f, 0.9f, 0.95f, 1e-8f,
                0.1f, 3);
      cbt::DeviceBuffers d(gpu->memory(), misalign);
      float* gp = d.upload("param", p0);
      uint16_t* gp16 = d.output<uint16_t>("param16", count);
      const float* gg = d.upload("grad", g);
      float* gm = d.upload("m", m0);
      float* gv = d.upload("v", v0);
      mixed->adamw_mixed(count, gp, as_bf16(gp16), gg, gm, gv, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                         3);
      d.check_guards();
      const Vec got_p = d.download(gp);
      expect_close(what + ": m", d.download(gm), m, kTight);
      expect_close(what + ": v", d.download(gv), v, kTight);
      expect_close(what + ": param", got_p, p, kTight);
      const std::vector<uint16_t> got16 = d.download(gp16);
      for (int64_t i = 0; i < count; i++) {
        EXPECT(got16[i] == bf16_bits(got_p[i]),
               what + ": param16 at " + std::to_string(i) + " is not the rounding of param");
      }
    }
  }
  print_report();
}
