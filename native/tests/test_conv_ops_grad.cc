// cpu-ref conv ops (RefConvOps<double>), group conv-grad: every backward of vq/conv_ops.h against
// central finite differences of its forward, the overwrite/accumulate contract, null outputs
// and the in-place variants the interface allows.
//
// Gradient checks: for a fixed random r the loss is L = sum(r * y) (for the quantiser and the
// pixel loss, the losses their comments define), and dL/dx[i] comes from the 4-point stencil
//   (8 (L(x + h) - L(x - h)) - (L(x + 2h) - L(x - 2h))) / (12 h),  h = 1e-4 max(1, |x|).
// The forwards return L as a vector of terms, and the stencil subtracts term by term before it
// sums: terms that do not depend on x[i] cancel exactly, so the rounding error is that of the
// few terms x[i] reaches (about 1e-16 |term| / h ~ 1e-12), and a gradient that is exactly zero
// (an unused input row, a code no position chose) is exactly zero on both sides. Every element
// must satisfy |analytic - fd| / max(|analytic|, |fd|, 1e-8) <= 1e-6; each test prints the
// worst relative error per op and gradient.
//
// Backward contract: each backward runs twice. Overwritten gradients start as NaN, then as 7,
// and must be identical after both calls; accumulated ones start from random values s and must
// hold s + g, then s + 2g.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "finite_difference.h"
#include "harness.h"
#include "vq/conv_ops_ref.h"

namespace {

using namespace cbt::grad;  // Vec, rnd, fd, backward_twice, expect_near, ...
using Idx = std::vector<int32_t>;
using Ops = cb::RefConvOps<double>;
using Terms = std::function<Vec()>;  // the terms whose sum is the loss

// r * y elementwise: the terms of L = sum(r * y).
Vec times(const Vec& r, const Vec& y) {
  Vec t(y.size());
  for (size_t i = 0; i < y.size(); i++) t[i] = r[i] * y[i];
  return t;
}

// The worst relative error of each op's gradient over all the shapes a test checks; printed
// by report().
using Worst = std::map<std::string, double>;

// Every element of `analytic` (the gradient of the loss with respect to x) against finite
// differences of the terms (cbt::grad::check_elements); records the worst relative error under
// `what`.
void check_grad(Worst& worst, const std::string& what, Vec& x, const Vec& analytic,
                const Terms& terms, const std::string& where) {
  double& w = worst[what];
  w = std::max(w, check_elements(what + " (" + where + ")", x, analytic, terms));
}

void report(const Worst& worst) {
  for (const auto& [what, rel] : worst) {
    std::printf("conv-grad: %s worst relative error %.2g\n", what.c_str(), rel);
  }
}

// ---- conv2d -----------------------------------------------------------------------------------

std::string conv_where(const cb::Conv2dShape& s) {
  return "B=" + std::to_string(s.B) + " Cin=" + std::to_string(s.Cin) + " H=" +
         std::to_string(s.H) + " W=" + std::to_string(s.W) + " Cout=" + std::to_string(s.Cout) +
         " k=" + std::to_string(s.k) + " stride=" + std::to_string(s.stride) + " pad=" +
         std::to_string(s.pad_begin) + "/" + std::to_string(s.pad_end);
}

cb::Conv2dShape conv_shape(int B, int Cin, int H, int W, int Cout, int k, int stride, int pad_begin,
                           int pad_end) {
  cb::Conv2dShape s;
  s.B = B, s.Cin = Cin, s.H = H, s.W = W, s.Cout = Cout, s.k = k, s.stride = stride;
  s.pad_begin = pad_begin, s.pad_end = pad_end;
  return s;
}

CB_TEST("conv-grad", conv2d_backward_gradients) {
  Ops ops;
  Worst worst;
  const std::vector<cb::Conv2dShape> shapes = {
      conv_shape(2, 3, 5, 4, 4, 3, 1, 1, 1),  // 3x3 pad 1, Cin 3 (the image), odd H, B 2
      conv_shape(1, 4, 3, 3, 5, 1, 1, 0, 0),  // 1x1 (nin_shortcut, q/k/v, quant_conv)
      conv_shape(2, 2, 6, 5, 3, 3, 2, 0, 1),  // the downsampler: stride 2, pad right/bottom
      conv_shape(1, 2, 7, 7, 2, 3, 2, 0, 1),  // the downsampler on an odd side
      conv_shape(1, 2, 5, 4, 2, 2, 2, 0, 0),  // an even kernel; the last input row is unused
      conv_shape(1, 1, 1, 1, 2, 3, 1, 1, 1),  // a 1x1 image under a 3x3 kernel: padding only
  };
  uint32_t seed = 100;
  for (const cb::Conv2dShape& s : shapes) {
    const std::string where = conv_where(s);
    const size_t nx = (size_t)s.B * s.Cin * s.H * s.W, nw = (size_t)s.Cout * s.Cin * s.k * s.k;
    const size_t ny = (size_t)s.B * s.Cout * s.out_h() * s.out_w();
    Vec x = rnd(nx, seed++), w = rnd(nw, seed++), bias = rnd(s.Cout, seed++);
    const Vec r = rnd(ny, seed++);
    auto terms = [&] {
      Vec y(ny);
      ops.conv2d(s, x.data(), w.data(), bias.data(), y.data());
      return times(r, y);
    };
    Vec dx(nx), dw(nw), db(s.Cout);
    backward_twice("conv2d_backward " + where, {&dx}, {&dw, &db}, [&] {
      ops.conv2d_backward(s, x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data());
    });
    check_grad(worst, "conv2d_backward dx", x, dx, terms, where);
    check_grad(worst, "conv2d_backward dw", w, dw, terms, where);
    check_grad(worst, "conv2d_backward dbias", bias, db, terms, where);

    // dx and dbias null: skipped, and dw accumulates the same increment.
    Vec dw2(nw);
    backward_twice("conv2d_backward (no dx, no dbias) " + where, {}, {&dw2}, [&] {
      ops.conv2d_backward(s, x.data(), w.data(), r.data(), nullptr, dw2.data(), nullptr);
    });
    expect_equal("conv2d_backward dw without dx and dbias " + where, dw2, dw);
  }
  report(worst);
}

// ---- GroupNorm --------------------------------------------------------------------------------

struct NormCase {
  int B, C;
  int64_t HW;
  int groups;
  float eps;
};

void check_group_norm(bool with_swish) {
  Ops ops;
  Worst worst;
  const std::string op = with_swish ? "group_norm_swish_backward" : "group_norm_backward";
  const std::vector<NormCase> cases = {
      {2, 6, 5, 1, 1e-6f},   // one group over everything, odd HW, B 2
      {2, 6, 5, 2, 1e-6f},   // 3 channels a group
      {1, 6, 4, 3, 1e-6f},   // 2 channels a group
      {2, 6, 3, 6, 1e-2f},   // a group per channel; an eps large enough to matter
      {2, 6, 1, 2, 1e-6f},   // HW 1: three values a group
      // Two values a group: y = +-1 up to eps, so a tiny eps leaves a gradient (~eps) below the
      // stencil's resolution; a larger one keeps it measurable.
      {1, 4, 1, 2, 0.1f},
      {1, 3, 1, 3, 1e-6f},   // one value a group: y = beta, the gradient through x is zero
  };
  uint32_t seed = 200;
  for (const NormCase& nc : cases) {
    const std::string where = "B=" + std::to_string(nc.B) + " C=" + std::to_string(nc.C) +
                              " HW=" + std::to_string(nc.HW) + " groups=" +
                              std::to_string(nc.groups) + " eps=" + fmt(nc.eps);
    const size_t n = (size_t)nc.B * nc.C * nc.HW;
    Vec x = rnd(n, seed++, -2.0, 2.0), gamma = rnd(nc.C, seed++, -1.5, 1.5),
        beta = rnd(nc.C, seed++);
    const Vec r = rnd(n, seed++);
    auto terms = [&] {
      Vec y(n);
      if (with_swish) {
        ops.group_norm_swish(nc.B, nc.C, nc.HW, nc.groups, nc.eps, x.data(), gamma.data(),
                             beta.data(), y.data());
      } else {
        ops.group_norm(nc.B, nc.C, nc.HW, nc.groups, nc.eps, x.data(), gamma.data(), beta.data(),
                       y.data());
      }
      return times(r, y);
    };
    auto backward = [&](const double* dy, double* dx, double* dgamma, double* dbeta) {
      if (with_swish) {
        ops.group_norm_swish_backward(nc.B, nc.C, nc.HW, nc.groups, nc.eps, x.data(),
                                      gamma.data(), beta.data(), dy, dx, dgamma, dbeta);
      } else {
        ops.group_norm_backward(nc.B, nc.C, nc.HW, nc.groups, nc.eps, x.data(), gamma.data(),
                                beta.data(), dy, dx, dgamma, dbeta);
      }
    };
    Vec dx(n), dgamma(nc.C), dbeta(nc.C);
    backward_twice(op + " " + where, {&dx}, {&dgamma, &dbeta},
                   [&] { backward(r.data(), dx.data(), dgamma.data(), dbeta.data()); });
    check_grad(worst, op + " dx", x, dx, terms, where);
    check_grad(worst, op + " dgamma", gamma, dgamma, terms, where);
    check_grad(worst, op + " dbeta", beta, dbeta, terms, where);

    // In place (dx == dy): the same dx and the same parameter increments.
    Vec d_inplace(n), dgamma2(nc.C), dbeta2(nc.C);
    backward_twice(op + " in place " + where, {}, {&dgamma2, &dbeta2}, [&] {
      d_inplace = r;
      backward(d_inplace.data(), d_inplace.data(), dgamma2.data(), dbeta2.data());
    });
    expect_equal(op + " dx in place " + where, d_inplace, dx);
    expect_equal(op + " dgamma in place " + where, dgamma2, dgamma);
    expect_equal(op + " dbeta in place " + where, dbeta2, dbeta);
  }
  report(worst);
}

CB_TEST("conv-grad", group_norm_backward_gradients) { check_group_norm(false); }

CB_TEST("conv-grad", group_norm_swish_backward_gradients) { check_group_norm(true); }

// ---- swish and upsampling ---------------------------------------------------------------------

CB_TEST("conv-grad", swish_backward_gradients) {
  Ops ops;
  Worst worst;
  const int64_t count = 13;
  Vec x = rnd(count, 300, -5.0, 5.0);
  x[0] = 0.0;  // swish'(0) = 1/2
  const Vec r = rnd(count, 301);
  auto terms = [&] {
    Vec y(count);
    ops.swish(count, x.data(), y.data());
    return times(r, y);
  };
  Vec dx(count);
  backward_twice("swish_backward", {&dx}, {},
                 [&] { ops.swish_backward(count, x.data(), r.data(), dx.data()); });
  check_grad(worst, "swish_backward dx", x, dx, terms, "count=13");
  expect_near("swish_backward at 0", dx[0], 0.5 * r[0]);
  Vec d_inplace = r;
  ops.swish_backward(count, x.data(), d_inplace.data(), d_inplace.data());
  expect_equal("swish_backward in place", d_inplace, dx);
  report(worst);
}

CB_TEST("conv-grad", upsample_nearest2x_backward_gradients) {
  Ops ops;
  Worst worst;
  struct Case {
    int B, C, H, W;
  };
  uint32_t seed = 400;
  for (const Case& c : {Case{2, 3, 3, 2}, Case{1, 2, 1, 1}, Case{1, 1, 2, 5}}) {
    const std::string where = "B=" + std::to_string(c.B) + " C=" + std::to_string(c.C) +
                              " H=" + std::to_string(c.H) + " W=" + std::to_string(c.W);
    const size_t nx = (size_t)c.B * c.C * c.H * c.W, ny = 4 * nx;
    Vec x = rnd(nx, seed++);
    const Vec r = rnd(ny, seed++);
    auto terms = [&] {
      Vec y(ny);
      ops.upsample_nearest2x(c.B, c.C, c.H, c.W, x.data(), y.data());
      return times(r, y);
    };
    Vec dx(nx);
    backward_twice("upsample_nearest2x_backward " + where, {&dx}, {}, [&] {
      ops.upsample_nearest2x_backward(c.B, c.C, c.H, c.W, r.data(), dx.data());
    });
    check_grad(worst, "upsample_nearest2x_backward dx", x, dx, terms, where);
  }
  report(worst);
}

// ---- attention --------------------------------------------------------------------------------

CB_TEST("conv-grad", spatial_attention_backward_gradients) {
  Ops ops;
  Worst worst;
  struct Case {
    int B, C;
    int64_t HW;
  };
  uint32_t seed = 500;
  // HW 1: the softmax of one score is 1 whatever q and k are, so dq = dk = 0 (exactly, both
  // ways) and out = v.
  for (const Case& c : {Case{2, 4, 5}, Case{1, 3, 1}, Case{2, 2, 1}, Case{1, 2, 7}}) {
    const std::string where =
        "B=" + std::to_string(c.B) + " C=" + std::to_string(c.C) + " HW=" + std::to_string(c.HW);
    const size_t n = (size_t)c.B * c.C * c.HW;
    Vec q = rnd(n, seed++, -2.0, 2.0), k = rnd(n, seed++, -2.0, 2.0), v = rnd(n, seed++);
    const Vec r = rnd(n, seed++);
    auto terms = [&] {
      Vec out(n);
      ops.spatial_attention(c.B, c.C, c.HW, q.data(), k.data(), v.data(), out.data());
      return times(r, out);
    };
    Vec dq(n), dk(n), dv(n);
    backward_twice("spatial_attention_backward " + where, {&dq, &dk, &dv}, {}, [&] {
      ops.spatial_attention_backward(c.B, c.C, c.HW, q.data(), k.data(), v.data(), r.data(),
                                     dq.data(), dk.data(), dv.data());
    });
    check_grad(worst, "spatial_attention_backward dq", q, dq, terms, where);
    check_grad(worst, "spatial_attention_backward dk", k, dk, terms, where);
    check_grad(worst, "spatial_attention_backward dv", v, dv, terms, where);
    if (c.HW == 1) {
      for (size_t i = 0; i < n; i++) {
        EXPECT(dq[i] == 0.0 && dk[i] == 0.0, "spatial_attention_backward HW 1: dq, dk not 0");
        expect_near("spatial_attention_backward HW 1: dv = dout", dv[i], r[i], 0.0);
      }
    }
  }
  report(worst);
}

// ---- l2 normalisation -------------------------------------------------------------------------

CB_TEST("conv-grad", l2_normalize_rows_backward_gradients) {
  Ops ops;
  Worst worst;
  const int64_t n = 4;
  const int d = 5;
  Vec x = rnd(n * d, 600, -2.0, 2.0);
  for (int j = 0; j < d; j++) x[2 * d + j] *= 30.0;  // a long row (h scales with |x|)
  const Vec r = rnd(n * d, 601);
  auto terms = [&] {
    Vec y(n * d);
    ops.l2_normalize_rows(n, d, x.data(), y.data());
    return times(r, y);
  };
  Vec dx(n * d);
  backward_twice("l2_normalize_rows_backward", {&dx}, {},
                 [&] { ops.l2_normalize_rows_backward(n, d, x.data(), r.data(), dx.data()); });
  check_grad(worst, "l2_normalize_rows_backward dx", x, dx, terms, "n=4 d=5");

  // Rows within 1e-12 of zero: y = x / 1e-12, a linear map, so dx = dy / 1e-12 (too close to
  // the clamp for finite differences).
  const Vec tiny = {0.0, 0.0, 0.0, 3e-13, -4e-13, 0.0}, dy = {0.5, -1.0, 2.0, 1.0, 0.25, -3.0};
  Vec dtiny(6, kNaN);
  ops.l2_normalize_rows_backward(2, 3, tiny.data(), dy.data(), dtiny.data());
  for (int j = 0; j < 6; j++) {
    expect_near("l2_normalize_rows_backward of a zero row", dtiny[j], dy[j] / 1e-12, 1e-15);
  }
  report(worst);
}

// ---- the quantiser ----------------------------------------------------------------------------

struct QuantCase {
  int B, D;
  int64_t HW;
  int K;
  float codebook_scale, commit_scale;
};

// zn (B, D, HW): the columns of z (B, D, HW) divided by max(|column|, 1e-12).
Vec normalise_columns(int B, int D, int64_t HW, const Vec& z) {
  Vec zn(z.size());
  for (int b = 0; b < B; b++) {
    for (int64_t i = 0; i < HW; i++) {
      auto at = [&](int d) { return ((size_t)b * D + d) * HW + i; };
      double sq = 0;
      for (int d = 0; d < D; d++) sq += z[at(d)] * z[at(d)];
      const double norm = std::max(std::sqrt(sq), 1e-12);
      for (int d = 0; d < D; d++) zn[at(d)] = z[at(d)] / norm;
    }
  }
  return zn;
}

// zq (B, D, HW): the codebook (K, D) rows at index (B, HW).
Vec gather_codes(int B, int D, int64_t HW, const Idx& index, const Vec& codebook) {
  Vec zq((size_t)B * D * HW);
  for (int b = 0; b < B; b++) {
    for (int64_t i = 0; i < HW; i++) {
      for (int d = 0; d < D; d++) {
        zq[((size_t)b * D + d) * HW + i] = codebook[(size_t)index[(size_t)b * HW + i] * D + d];
      }
    }
  }
  return zq;
}

// The terms of the quantiser's training loss with the stop gradients spelled out: the *_live
// values carry the perturbation, the *_sg ones are held at the base point.
//   L = sum r (zn + sg(zq - zn)) + codebook_scale sum (zq - sg zn)^2
//       + commit_scale sum (sg zq - zn)^2
Vec quant_terms(const Vec& r, const Vec& zn_live, const Vec& zq_live, const Vec& zn_sg,
                const Vec& zq_sg, double codebook_scale, double commit_scale) {
  Vec t(3 * r.size());
  for (size_t i = 0; i < r.size(); i++) {
    t[3 * i] = r[i] * (zn_live[i] + (zq_sg[i] - zn_sg[i]));
    t[3 * i + 1] = codebook_scale * (zq_live[i] - zn_sg[i]) * (zq_live[i] - zn_sg[i]);
    t[3 * i + 2] = commit_scale * (zq_sg[i] - zn_live[i]) * (zq_sg[i] - zn_live[i]);
  }
  return t;
}

CB_TEST("conv-grad", quantize_l2_backward_gradients) {
  Ops ops;
  Worst worst;
  const std::vector<QuantCase> cases = {
      {2, 4, 5, 6, 1.0f, 0.25f},                  // B 2, odd HW; a code or two unused
      {1, 3, 1, 2, 1.0f / 3.0f, 0.25f / 3.0f},    // HW 1, LlamaGen's means (1 / (B D HW))
      {1, 5, 6, 3, 1.0f / 30.0f, 0.25f / 30.0f},  // codes shared by several positions
  };
  uint32_t seed = 700;
  for (const QuantCase& qc : cases) {
    const std::string where = "B=" + std::to_string(qc.B) + " D=" + std::to_string(qc.D) +
                              " HW=" + std::to_string(qc.HW) + " K=" + std::to_string(qc.K);
    const size_t n = (size_t)qc.B * qc.HW, count = n * qc.D;
    // Normalised rows (as the model keeps them), and latents that are a code plus noise, at
    // random lengths: the nearest code is clear by far more than the stencil's steps.
    Vec codebook = rnd((size_t)qc.K * qc.D, seed++);
    ops.l2_normalize_rows(qc.K, qc.D, codebook.data(), codebook.data());
    std::mt19937 rng(seed++);
    std::uniform_int_distribution<int> pick(0, qc.K - 1);
    std::uniform_real_distribution<double> noise(-0.05, 0.05), length(0.5, 3.0);
    Vec z(count);
    for (int b = 0; b < qc.B; b++) {
      for (int64_t i = 0; i < qc.HW; i++) {
        const int e = pick(rng);
        const double len = length(rng);
        for (int d = 0; d < qc.D; d++) {
          z[((size_t)b * qc.D + d) * qc.HW + i] =
              (codebook[(size_t)e * qc.D + d] + noise(rng)) * len;
        }
      }
    }
    Idx index(n);
    ops.quantize_l2(qc.B, qc.D, qc.HW, z.data(), codebook.data(), qc.K, index.data(), nullptr,
                    nullptr);
    const Vec dzq = rnd(count, seed++);  // r, the decoder input's gradient
    const Vec zn0 = normalise_columns(qc.B, qc.D, qc.HW, z);
    const Vec zq0 = gather_codes(qc.B, qc.D, qc.HW, index, codebook);

    Vec dz(count), dcodebook((size_t)qc.K * qc.D);
    backward_twice("quantize_l2_backward " + where, {&dz}, {&dcodebook}, [&] {
      ops.quantize_l2_backward(qc.B, qc.D, qc.HW, z.data(), codebook.data(), qc.K, index.data(),
                               dzq.data(), qc.codebook_scale, qc.commit_scale, dz.data(),
                               dcodebook.data());
    });
    // The index stays fixed under the perturbations (it is the forward's choice).
    auto terms_z = [&] {
      return quant_terms(dzq, normalise_columns(qc.B, qc.D, qc.HW, z), zq0, zn0, zq0,
                         qc.codebook_scale, qc.commit_scale);
    };
    auto terms_codebook = [&] {
      return quant_terms(dzq, zn0, gather_codes(qc.B, qc.D, qc.HW, index, codebook), zn0, zq0,
                         qc.codebook_scale, qc.commit_scale);
    };
    check_grad(worst, "quantize_l2_backward dz", z, dz, terms_z, where);
    check_grad(worst, "quantize_l2_backward dcodebook", codebook, dcodebook, terms_codebook,
               where);
    // Rows no position chose get nothing.
    int unused = 0;
    for (int e = 0; e < qc.K; e++) {
      if (std::find(index.begin(), index.end(), e) != index.end()) continue;
      unused++;
      for (int d = 0; d < qc.D; d++) {
        EXPECT(dcodebook[(size_t)e * qc.D + d] == 0.0,
               "quantize_l2_backward " + where + ": an unused code has a gradient");
      }
    }
    if (qc.K == 6) EXPECT(unused > 0, "quantize_l2_backward " + where + ": no code unused");
    // That index is stable: the argmin at the base point is the argmin of the test's z.
    Idx again(n);
    ops.quantize_l2(qc.B, qc.D, qc.HW, z.data(), codebook.data(), qc.K, again.data(), nullptr,
                    nullptr);
    EXPECT(again == index, "quantize_l2_backward " + where + ": z was not restored");
  }

  // A zero latent column: zn = 0, and the clamped normalisation is z / 1e-12, so
  // dz = (dzq + commit 2 (0 - zq)) / 1e-12 and dcodebook += codebook 2 (zq - 0).
  const Vec codebook = {0.6, 0.8, 1.0, 0.0}, z = {0.0, 0.0}, dzq = {0.5, -0.25};
  const Idx index = {1};
  Vec dz(2, kNaN), dcb(4, 0.0);
  ops.quantize_l2_backward(1, 2, 1, z.data(), codebook.data(), 2, index.data(), dzq.data(), 1.0f,
                           0.25f, dz.data(), dcb.data());
  expect_near("quantize_l2_backward zero column dz0", dz[0], (0.5 - 0.5 * 1.0) / 1e-12, 1e-15);
  expect_near("quantize_l2_backward zero column dz1", dz[1], -0.25 / 1e-12, 1e-15);
  expect_equal("quantize_l2_backward zero column dcodebook", dcb, {0.0, 0.0, 2.0, 0.0});
  report(worst);
}

// ---- pixel loss -------------------------------------------------------------------------------

CB_TEST("conv-grad", pixel_loss_gradients) {
  Ops ops;
  Worst worst;
  const int64_t count = 17;
  const Vec target = rnd(count, 800);
  Vec rec = rnd(count, 801);
  for (int64_t i = 0; i < count; i++) {  // keep |rec - target| far above the stencil's 2h
    if (std::fabs(rec[i] - target[i]) < 0.05) rec[i] = target[i] + (i % 2 ? 0.1 : -0.1);
  }
  struct Scales {
    float l2, l1;
  };
  for (const Scales& sc : {Scales{1.0f, 0.0f}, Scales{0.0f, 1.0f}, Scales{0.75f, 0.125f}}) {
    const std::string where = "l2=" + fmt(sc.l2) + " l1=" + fmt(sc.l1);
    auto terms = [&] {
      Vec t(2 * count);
      for (int64_t i = 0; i < count; i++) {
        const double diff = rec[i] - target[i];
        t[2 * i] = sc.l2 * diff * diff;
        t[2 * i + 1] = sc.l1 * std::fabs(diff);
      }
      return t;
    };
    Vec drec(count), sums(2);
    backward_twice("pixel_loss " + where, {&drec, &sums}, {}, [&] {
      ops.pixel_loss(count, rec.data(), target.data(), sc.l2, sc.l1, drec.data(), sums.data());
    });
    check_grad(worst, "pixel_loss drec", rec, drec, terms, where);
    double sq = 0, abs_sum = 0;
    for (int64_t i = 0; i < count; i++) {
      sq += (rec[i] - target[i]) * (rec[i] - target[i]);
      abs_sum += std::fabs(rec[i] - target[i]);
    }
    expect_near("pixel_loss sum of squares " + where, sums[0], sq);
    expect_near("pixel_loss sum of absolutes " + where, sums[1], abs_sum);
  }

  // By hand, with a value equal to its target (sign(0) = 0): diffs (0.5, 0, -2).
  const Vec r3 = {1.5, 2.0, -1.0}, t3 = {1.0, 2.0, 1.0};
  Vec d3(3, kNaN), s3(2, kNaN);
  ops.pixel_loss(3, r3.data(), t3.data(), 0.5f, 0.25f, d3.data(), s3.data());
  expect_equal("pixel_loss drec by hand", d3, {0.5 + 0.25, 0.0, -2.0 - 0.25});
  expect_equal("pixel_loss sums by hand", s3, {0.25 + 4.0, 0.5 + 2.0});
  report(worst);
}

}  // namespace
