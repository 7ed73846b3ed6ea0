// cpu-ref model ops (RefModelOps<double>): every backward against finite differences, forward
// values of a few ops against numbers worked out by hand, the overwrite/accumulate contract of
// model_ops.h, and that ignored rows and invisible keys really are ignored.
//
// Gradient checks: for a fixed random r, L = sum(r * y) and dL/dx from the 4-point stencil
//   (L(x - 2h) - 8 L(x - h) + 8 L(x + h) - L(x + 2h)) / (12 h),  h = 1e-4 max(1, |x|).
// Its truncation error is O(h^4) ~ 1e-16 and its rounding error about 1e-16 |L| / h ~ 1e-12, so
// every element must satisfy |analytic - fd| / max(|analytic|, |fd|, 1e-8) <= 1e-6 (elementwise,
// not a norm); the worst seen is about 1e-8 (attention). Gradients that are exactly zero (unused
// table rows, ignored rows) come out as exactly zero on both sides: the stencil subtracts the
// paired values first, so an L that does not depend on x gives 0 rather than rounding noise.
//
// Backward contract: each backward runs twice. Activation gradients start as NaN, then as 7,
// and must be identical after both calls (overwritten, every element written). Parameter
// gradients start from random values s and must hold s + g, then s + 2g (accumulated).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu/model_ops_ref.h"
#include "finite_difference.h"
#include "harness.h"

namespace {

using namespace cbt::grad;  // Vec, rnd, fd, backward_twice, expect_near, ...
using Idx = std::vector<int32_t>;
using Ops = cb::RefModelOps<double>;

constexpr double kPi = 3.14159265358979323846;

Idx rnd_idx(size_t count, uint32_t seed, int lo, int hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  Idx x(count);
  for (auto& v : x) v = dist(rng);
  return x;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

// Every element of `analytic` (the gradient of loss() with respect to x) against finite
// differences (cbt::grad::check_elements); `skip(i)` leaves out elements that are not part of
// the op's input (padding).
void check_grad(const std::string& what, Vec& x, const Vec& analytic,
                const std::function<double()>& loss,
                const std::function<bool(size_t)>& skip = nullptr) {
  check_elements(what, x, analytic, loss, skip);
}

// ---- dense ------------------------------------------------------------------------------------

CB_TEST("model-ops-ref", linear_forward_by_hand) {
  Ops ops;
  // x = [1 2], w = [[1 0], [2 -1], [0.5 0.5]], b = [0 1 -1]: y = [1, 1, 0.5].
  const Vec x = {1, 2}, w = {1, 0, 2, -1, 0.5, 0.5}, b = {0, 1, -1};
  Vec y(3, kNaN);
  ops.linear(1, 2, 3, x.data(), w.data(), b.data(), y.data());
  expect_equal("linear", y, {1, 1, 0.5});
  ops.linear(1, 2, 3, x.data(), w.data(), nullptr, y.data());
  expect_equal("linear without bias", y, {1, 0, 1.5});
}

CB_TEST("model-ops-ref", linear_gradients) {
  Ops ops;
  const int64_t n = 3;
  const int in = 5, out = 4;
  Vec x = rnd(n * in, 1), w = rnd((size_t)out * in, 2), b = rnd(out, 3);
  const Vec r = rnd(n * out, 4);
  Vec y(n * out);
  auto loss = [&] {
    ops.linear(n, in, out, x.data(), w.data(), b.data(), y.data());
    return dot(r, y);
  };
  Vec dx(n * in), dw(w.size()), db(out);
  backward_twice("linear_backward", {&dx}, {&dw, &db}, [&] {
    ops.linear_backward(n, in, out, x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data());
  });
  check_grad("linear dx", x, dx, loss);
  check_grad("linear dw", w, dw, loss);
  check_grad("linear db", b, db, loss);

  // dx and db null: skipped, dw still accumulates the same increment.
  Vec dw2(w.size());
  backward_twice("linear_backward (no dx, no db)", {}, {&dw2}, [&] {
    ops.linear_backward(n, in, out, x.data(), w.data(), r.data(), nullptr, dw2.data(), nullptr);
  });
  expect_equal("linear dw without dx and db", dw2, dw);
}

// ---- elementwise ------------------------------------------------------------------------------

CB_TEST("model-ops-ref", gelu_silu_forward_by_hand) {
  Ops ops;
  const Vec x = {0.0, 1.0, -1.0};
  Vec y(3);
  ops.gelu(3, x.data(), y.data());
  // 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) and its odd counterpart x - gelu(x) = gelu(-x).
  const double g1 = 0.5 * (1 + std::tanh(std::sqrt(2 / kPi) * 1.044715));
  expect_near("gelu(0)", y[0], 0.0);
  expect_near("gelu(1)", y[1], g1);
  expect_near("gelu(1) numeric", y[1], 0.8411919906, 1e-9);
  expect_near("gelu(-1)", y[2], g1 - 1.0);
  ops.silu(3, x.data(), y.data());
  expect_near("silu(0)", y[0], 0.0);
  expect_near("silu(1)", y[1], 1 / (1 + std::exp(-1.0)));
  expect_near("silu(-1)", y[2], -1 / (1 + std::exp(1.0)));
}

CB_TEST("model-ops-ref", gelu_silu_gradients) {
  Ops ops;
  const int64_t count = 7;
  Vec x = rnd(count, 10, -3.0, 3.0);
  const Vec r = rnd(count, 11);
  Vec y(count), dx(count);
  auto gelu_loss = [&] {
    ops.gelu(count, x.data(), y.data());
    return dot(r, y);
  };
  backward_twice("gelu_backward", {&dx}, {},
                 [&] { ops.gelu_backward(count, x.data(), r.data(), dx.data()); });
  check_grad("gelu dx", x, dx, gelu_loss);
  auto silu_loss = [&] {
    ops.silu(count, x.data(), y.data());
    return dot(r, y);
  };
  backward_twice("silu_backward", {&dx}, {},
                 [&] { ops.silu_backward(count, x.data(), r.data(), dx.data()); });
  check_grad("silu dx", x, dx, silu_loss);
}

CB_TEST("model-ops-ref", add_copy_zero_strided) {
  Ops ops;
  Vec y = {1, 2, 3};
  ops.add_inplace(3, y.data(), Vec{0.5, -2, 4}.data());
  expect_equal("add_inplace", y, {1.5, 0, 7});

  // A 2 x 3 block from a (2, 4) source into a (2, 5) destination: the padding stays.
  const Vec src = {1, 2, 3, 90, 4, 5, 6, 91};
  Vec dst(10, -1.0);
  ops.copy_strided(2, 3, src.data(), 4, dst.data(), 5, false);
  expect_equal("copy_strided", dst, {1, 2, 3, -1, -1, 4, 5, 6, -1, -1});
  ops.copy_strided(2, 3, src.data(), 4, dst.data(), 5, true);
  expect_equal("copy_strided accumulate", dst, {2, 4, 6, -1, -1, 8, 10, 12, -1, -1});
  ops.zero_strided(2, 2, dst.data() + 1, 5);
  expect_equal("zero_strided", dst, {2, 0, 0, -1, -1, 8, 0, 0, -1, -1});

  // copy_strided is linear; its adjoint is the copy back (lds swapped): check the accumulate
  // form y = dst + copy(src) against finite differences in src.
  Vec s = rnd(3 * 6, 20);
  const Vec dst0 = rnd(3 * 7, 21), r = rnd(3 * 7, 22);
  Vec d(dst0.size());
  auto loss = [&] {
    d = dst0;
    ops.copy_strided(3, 4, s.data(), 6, d.data(), 7, true);
    return dot(r, d);
  };
  Vec ds(s.size(), 0.0);
  ops.copy_strided(3, 4, r.data(), 7, ds.data(), 6, false);
  check_grad("copy_strided dsrc", s, ds, loss);
}

// ---- normalisation and AdaLN ------------------------------------------------------------------

CB_TEST("model-ops-ref", layernorm_forward_by_hand) {
  Ops ops;
  // [1 2 3]: mean 2, biased variance 2/3, y = [-1 0 1] / sqrt(2/3 + 1e-6) ~ [-1.2247 0 1.2247].
  const Vec x = {1, 2, 3};
  Vec y(3), mean(1), rstd(1);
  ops.layernorm(1, 3, x.data(), y.data(), mean.data(), rstd.data());
  const double want_rstd = 1 / std::sqrt(2.0 / 3.0 + 1e-6);
  expect_near("layernorm mean", mean[0], 2.0);
  expect_near("layernorm rstd", rstd[0], want_rstd);
  expect_near("layernorm y0", y[0], -want_rstd);
  expect_near("layernorm y1", y[1], 0.0);
  expect_near("layernorm y2", y[2], want_rstd);
  expect_near("layernorm y2 ~ sqrt(3/2)", y[2], std::sqrt(1.5), 1e-6);
}

CB_TEST("model-ops-ref", layernorm_gradients) {
  Ops ops;
  const int64_t n = 3;
  const int c = 5;
  Vec x = rnd(n * c, 30, -2.0, 2.0);
  const Vec r = rnd(n * c, 31);
  Vec y(n * c), mean(n), rstd(n);
  auto loss = [&] {
    ops.layernorm(n, c, x.data(), y.data(), mean.data(), rstd.data());
    return dot(r, y);
  };
  loss();
  Vec dx(n * c);
  backward_twice("layernorm_backward", {&dx}, {}, [&] {
    ops.layernorm_backward(n, c, x.data(), mean.data(), rstd.data(), r.data(), dx.data());
  });
  check_grad("layernorm dx", x, dx, loss);
}

// shift, scale and gate are column ranges of one (B, ld) AdaLN matrix, as in the model.
CB_TEST("model-ops-ref", modulate_gradients) {
  Ops ops;
  const int B = 2, T = 3, c = 5, ld = 3 * c + 1;
  Vec xn = rnd((size_t)B * T * c, 40), ada = rnd((size_t)B * ld, 41);
  const Vec r = rnd(xn.size(), 42);
  const int shift_at = 1, scale_at = 1 + 2 * c;  // arbitrary, non-adjacent columns
  Vec y(xn.size());
  auto loss = [&] {
    ops.modulate(B, T, c, xn.data(), ada.data() + shift_at, ada.data() + scale_at, ld, y.data());
    return dot(r, y);
  };
  // y = xn (1 + scale) + shift at one element, by hand.
  loss();
  const size_t e = ((size_t)1 * T + 2) * c + 3;  // b = 1, t = 2, j = 3
  expect_near("modulate y", y[e], xn[e] * (1 + ada[ld + scale_at + 3]) + ada[ld + shift_at + 3]);
  Vec dxn(xn.size()), dada(ada.size());
  backward_twice("modulate_backward", {&dxn}, {&dada}, [&] {
    ops.modulate_backward(B, T, c, xn.data(), ada.data() + scale_at, ld, r.data(), dxn.data(),
                          dada.data() + shift_at, dada.data() + scale_at);
  });
  check_grad("modulate dxn", xn, dxn, loss);
  check_grad("modulate dshift, dscale", ada, dada, loss);  // other columns: zero both ways
}

CB_TEST("model-ops-ref", gated_residual_gradients) {
  Ops ops;
  const int B = 2, T = 3, c = 5, ld = 7, gate_at = 2;
  Vec x0 = rnd((size_t)B * T * c, 50), h = rnd(x0.size(), 51), ada = rnd((size_t)B * ld, 52);
  const Vec r = rnd(x0.size(), 53);
  Vec x(x0.size());
  auto loss = [&] {
    x = x0;
    ops.gated_residual(B, T, c, x.data(), ada.data() + gate_at, ld, h.data());
    return dot(r, x);
  };
  loss();
  expect_near("gated_residual x", x[c + 4], x0[c + 4] + ada[gate_at + 4] * h[c + 4]);
  Vec dh(h.size()), dada(ada.size());
  backward_twice("gated_residual_backward", {&dh}, {&dada}, [&] {
    ops.gated_residual_backward(B, T, c, r.data(), ada.data() + gate_at, ld, h.data(), dh.data(),
                                dada.data() + gate_at);
  });
  check_grad("gated_residual dh", h, dh, loss);
  check_grad("gated_residual dgate", ada, dada, loss);
  check_grad("gated_residual dx (passes through)", x0, r, loss);
}

// ---- embeddings -------------------------------------------------------------------------------

CB_TEST("model-ops-ref", gather_scatter_gradients) {
  Ops ops;
  const int rows = 4, c = 3;
  const Idx index = {2, 0, 2, 3, 2, 0};  // repeats; row 1 unused
  const int64_t n = (int64_t)index.size();
  Vec table = rnd((size_t)rows * c, 60);
  const Vec r = rnd(n * c, 61);
  Vec out(n * c);
  auto loss = [&] {
    ops.gather_rows(n, c, table.data(), index.data(), out.data());
    return dot(r, out);
  };
  loss();
  for (int j = 0; j < c; j++) expect_near("gather_rows", out[3 * c + j], table[3 * c + j], 0.0);
  Vec dtable(table.size());
  backward_twice("scatter_add_rows", {}, {&dtable},
                 [&] { ops.scatter_add_rows(n, c, r.data(), index.data(), dtable.data()); });
  check_grad("scatter_add_rows dtable", table, dtable, loss);
  for (int j = 0; j < c; j++) expect_near("unused table row", dtable[1 * c + j], 0.0, 0.0);
}

CB_TEST("model-ops-ref", fill_masked_rows_gradients) {
  Ops ops;
  const int64_t n = 5;
  const int c = 3;
  const std::vector<uint8_t> mask = {0, 1, 0, 1, 1};
  Vec x0 = rnd(n * c, 70), vec = rnd(c, 71);
  const Vec r = rnd(n * c, 72);
  Vec x(x0.size());
  auto loss = [&] {
    x = x0;
    ops.fill_masked_rows(n, c, mask.data(), vec.data(), x.data());
    return dot(r, x);
  };
  loss();
  for (int j = 0; j < c; j++) {
    expect_near("fill_masked_rows masked", x[1 * c + j], vec[j], 0.0);
    expect_near("fill_masked_rows kept", x[2 * c + j], x0[2 * c + j], 0.0);
  }
  // dx is modified in place: start it as r each time.
  Vec dx(x0.size()), dvec(c);
  backward_twice("fill_masked_rows_backward", {&dx}, {&dvec}, [&] {
    dx = r;
    ops.fill_masked_rows_backward(n, c, mask.data(), dx.data(), dvec.data());
  });
  check_grad("fill_masked_rows dx", x0, dx, loss);
  check_grad("fill_masked_rows dvec", vec, dvec, loss);
}

// ---- rope -------------------------------------------------------------------------------------

CB_TEST("model-ops-ref", rope_forward_by_hand) {
  Ops ops;
  // One head of one pair; position 0 has angle pi/2, position 1 angle 0.
  const Vec x = {1, 2}, angles = {kPi / 2, 0.0};
  const Idx pp = {0}, pq = {1};
  Vec y(2);
  ops.rope(1, 1, 2, x.data(), 2, angles.data(), pp.data(), nullptr, nullptr, y.data());
  expect_near("rope by pi/2 y0", y[0], -2.0);  // (x0, x1) -> (-x1, x0)
  expect_near("rope by pi/2 y1", y[1], 1.0);
  // Mixing with logit 0 (alpha 1/2): the mean of the rotated and the unrotated x.
  const Vec mix = {0.0};
  ops.rope(1, 1, 2, x.data(), 2, angles.data(), pp.data(), pq.data(), mix.data(), y.data());
  expect_near("rope mixed y0", y[0], -0.5);
  expect_near("rope mixed y1", y[1], 1.5);
  // pos_q is ignored without mix_logit (an out-of-range pos_q would be read otherwise).
  const Idx bad = {-5};
  ops.rope(1, 1, 2, x.data(), 2, angles.data(), pp.data(), bad.data(), nullptr, y.data());
  expect_near("rope ignores pos_q", y[0], -2.0);
}

void check_rope(bool mixed) {
  Ops ops;
  const std::string what = mixed ? "rope (keys, mixed)" : "rope (queries)";
  const int B = 2, T = 5, H = 2, hd = 4, positions = 6, half = hd / 2;
  const int64_t n = (int64_t)B * T;
  const int C = H * hd, ld = C + 3;  // x rows are padded
  Vec x = rnd(n * ld, 80), angles = rnd((size_t)positions * half, 81, -3.0, 3.0);
  Vec mix = {0.7, -1.3};
  const Idx pp = rnd_idx(n, 82, 0, positions - 2), pq = rnd_idx(n, 83, 0, positions - 2);
  const Vec r = rnd(n * C, 84);
  const int32_t* pos_q = mixed ? pq.data() : nullptr;
  const double* mix_logit = mixed ? mix.data() : nullptr;
  Vec y(n * C);
  auto loss = [&] {
    ops.rope(n, H, hd, x.data(), ld, angles.data(), pp.data(), pos_q, mix_logit, y.data());
    return dot(r, y);
  };
  // dx is written only in the first C columns of each row: its padding must stay as it was.
  Vec dx(n * ld), dangles(angles.size()), dmix(H);
  std::vector<Vec*> acc = {&dangles};
  if (mixed) acc.push_back(&dmix);
  Vec dx_first;
  int calls = 0;
  backward_twice(what + " backward", {}, acc, [&] {
    const double fill = calls++ == 0 ? kNaN : 7.0;
    dx.assign(dx.size(), fill);
    ops.rope_backward(n, H, hd, x.data(), ld, angles.data(), pp.data(), pos_q, mix_logit,
                      r.data(), dx.data(), dangles.data(), mixed ? dmix.data() : nullptr);
    for (int64_t i = 0; i < n; i++) {
      for (int j = C; j < ld; j++) {
        const double pad = dx[i * ld + j];
        EXPECT(std::isnan(fill) ? std::isnan(pad) : pad == fill,
               what + ": rope_backward wrote dx padding");
      }
    }
    if (calls == 1) dx_first = dx;
  });
  for (int64_t i = 0; i < n; i++) {
    for (int j = 0; j < C; j++) {
      EXPECT(dx[i * ld + j] == dx_first[i * ld + j], what + ": dx differs on a second call");
    }
  }
  check_grad(what + " dx", x, dx, loss, [&](size_t i) { return (int)(i % ld) >= C; });
  check_grad(what + " dangles", angles, dangles, loss);  // the last position is unused: zero
  if (mixed) check_grad(what + " dmix_logit", mix, dmix, loss);
}

CB_TEST("model-ops-ref", rope_gradients) {
  check_rope(false);
  check_rope(true);
}

// ---- attention --------------------------------------------------------------------------------

struct Attn {
  int B = 2, T = 5, H = 2, hd = 4;
  Idx visible_end = {1, 3, 3, 5, 5};  // a class slot, then blocks of 2 and 2
  size_t size() const { return (size_t)B * T * H * hd; }
  size_t at(int b, int t, int h) const { return (((size_t)b * T + t) * H + h) * hd; }
};

CB_TEST("model-ops-ref", attention_forward_by_hand) {
  Ops ops;
  const Attn a;
  const Vec q = rnd(a.size(), 90), k = rnd(a.size(), 91), v = rnd(a.size(), 92);
  Vec out(a.size(), kNaN), lse((size_t)a.B * a.H * a.T, kNaN);
  ops.attention(a.B, a.T, a.H, a.hd, q.data(), k.data(), v.data(), a.visible_end.data(),
                out.data(), lse.data());
  // Slot 0 sees only key 0: its output is v[0] exactly, its lse the one scaled score.
  for (int b = 0; b < a.B; b++) {
    for (int h = 0; h < a.H; h++) {
      double s = 0;
      for (int d = 0; d < a.hd; d++) {
        expect_near("one visible key", out[a.at(b, 0, h) + d], v[a.at(b, 0, h) + d], 0.0);
        s += q[a.at(b, 0, h) + d] * k[a.at(b, 0, h) + d];
      }
      expect_near("lse of one key", lse[((size_t)b * a.H + h) * a.T], s / 2.0);  // 1/sqrt(4)
    }
  }
  // Two keys with equal scores (k identical): the output is the mean of their values.
  const Idx ve2 = {2, 2};
  const Vec q2 = {0.3, -0.2}, k2 = {1.0, 2.0, 1.0, 2.0}, v2 = {1.0, 5.0, 3.0, -1.0};
  Vec out2(4), lse2(2);
  ops.attention(1, 2, 1, 2, q2.data(), k2.data(), v2.data(), ve2.data(), out2.data(),
                lse2.data());
  expect_near("equal scores out0", out2[0], 2.0);
  expect_near("equal scores out1", out2[1], 2.0);
  const double s0 = (0.3 * 1.0 - 0.2 * 2.0) / std::sqrt(2.0);
  expect_near("equal scores lse", lse2[0], s0 + std::log(2.0));
}

CB_TEST("model-ops-ref", attention_ignores_invisible_keys) {
  Ops ops;
  const Attn a;
  const Vec q = rnd(a.size(), 100);
  Vec k = rnd(a.size(), 101), v = rnd(a.size(), 102);
  const size_t L = (size_t)a.B * a.H * a.T;
  Vec out1(a.size()), lse1(L), out2(a.size()), lse2(L);
  ops.attention(a.B, a.T, a.H, a.hd, q.data(), k.data(), v.data(), a.visible_end.data(),
                out1.data(), lse1.data());
  // Slots 3 and 4 are visible only to slots 3 and 4: change their keys and values.
  for (int b = 0; b < a.B; b++) {
    for (int t = 3; t < a.T; t++) {
      for (int h = 0; h < a.H; h++) {
        for (int d = 0; d < a.hd; d++) {
          k[a.at(b, t, h) + d] += 10.0;
          v[a.at(b, t, h) + d] -= 3.0;
        }
      }
    }
  }
  ops.attention(a.B, a.T, a.H, a.hd, q.data(), k.data(), v.data(), a.visible_end.data(),
                out2.data(), lse2.data());
  bool later_changed = false;
  for (int b = 0; b < a.B; b++) {
    for (int t = 0; t < a.T; t++) {
      for (int h = 0; h < a.H; h++) {
        for (int d = 0; d < a.hd; d++) {
          const size_t e = a.at(b, t, h) + d;
          if (t < 3) {
            EXPECT(out1[e] == out2[e], "attention: a key beyond visible_end changed slot " +
                                           std::to_string(t));
          } else {
            later_changed = later_changed || out1[e] != out2[e];
          }
        }
        if (t < 3) {
          const size_t l = ((size_t)b * a.H + h) * a.T + t;
          EXPECT(lse1[l] == lse2[l], "attention: a key beyond visible_end changed an lse");
        }
      }
    }
  }
  EXPECT(later_changed, "attention: slots 3 and 4 should see their own keys");
}

CB_TEST("model-ops-ref", attention_gradients) {
  Ops ops;
  const Attn a;
  Vec q = rnd(a.size(), 110), k = rnd(a.size(), 111), v = rnd(a.size(), 112);
  const Vec r = rnd(a.size(), 113);
  Vec out(a.size()), lse((size_t)a.B * a.H * a.T);
  auto loss = [&] {
    ops.attention(a.B, a.T, a.H, a.hd, q.data(), k.data(), v.data(), a.visible_end.data(),
                  out.data(), lse.data());
    return dot(r, out);
  };
  loss();
  Vec dq(a.size()), dk(a.size()), dv(a.size());
  backward_twice("attention_backward", {&dq, &dk, &dv}, {}, [&] {
    ops.attention_backward(a.B, a.T, a.H, a.hd, q.data(), k.data(), v.data(), a.visible_end.data(),
                           out.data(), lse.data(), r.data(), dq.data(), dk.data(), dv.data());
  });
  check_grad("attention dq", q, dq, loss);
  check_grad("attention dk", k, dk, loss);
  check_grad("attention dv", v, dv, loss);
}

// ---- loss -------------------------------------------------------------------------------------

CB_TEST("model-ops-ref", softmax_cross_entropy_by_hand) {
  Ops ops;
  // logits (0, ln 3): softmax (1/4, 3/4); target 0 gives loss ln 4. Shifted by 1000 the same
  // (the log-sum-exp must not overflow). The third row is ignored.
  const Vec logits = {0.0, std::log(3.0), 1000.0, 1000.0 + std::log(3.0), 5.0, -5.0};
  const Idx target = {0, 1, -1};
  Vec loss(3, kNaN), dl(6, kNaN);
  ops.softmax_cross_entropy(3, 2, logits.data(), target.data(), loss.data(), dl.data(), 0.5);
  expect_near("ce row 0", loss[0], std::log(4.0));
  expect_near("ce row 1 (shifted by 1000)", loss[1], std::log(4.0 / 3.0), 1e-9);
  expect_near("ce ignored row", loss[2], 0.0, 0.0);
  expect_near("ce dlogits 0,0", dl[0], (0.25 - 1) * 0.5);
  expect_near("ce dlogits 0,1", dl[1], 0.75 * 0.5);
  expect_near("ce dlogits 1,0", dl[2], 0.25 * 0.5, 1e-9);
  expect_near("ce dlogits 1,1", dl[3], (0.75 - 1) * 0.5, 1e-9);
  expect_near("ce ignored dlogits", dl[4], 0.0, 0.0);
  expect_near("ce ignored dlogits", dl[5], 0.0, 0.0);
  // Without dlogits: the same losses.
  Vec loss2(3);
  ops.softmax_cross_entropy(3, 2, logits.data(), target.data(), loss2.data(), nullptr, 0.5);
  expect_equal("ce without dlogits", loss2, loss);
}

CB_TEST("model-ops-ref", softmax_cross_entropy_gradients) {
  Ops ops;
  const int64_t n = 5;
  const int K = 7;
  const Idx target = {3, -1, 0, 6, 2};
  const double grad_scale = 1.0 / 4;  // the mean over the 4 counted rows
  Vec logits = rnd(n * K, 120, -3.0, 3.0);
  Vec rows(n);
  // dlogits is the gradient of grad_scale * sum(loss_rows).
  auto loss = [&] {
    ops.softmax_cross_entropy(n, K, logits.data(), target.data(), rows.data(), nullptr,
                              grad_scale);
    double s = 0;
    for (double l : rows) s += l;
    return grad_scale * s;
  };
  Vec dl(n * K), rows_bw(n);
  backward_twice("softmax_cross_entropy", {&dl, &rows_bw}, {}, [&] {
    ops.softmax_cross_entropy(n, K, logits.data(), target.data(), rows_bw.data(), dl.data(),
                              grad_scale);
  });
  check_grad("softmax_cross_entropy dlogits", logits, dl, loss);

  // The ignored row: its logits change nothing, and its loss and gradient are zero.
  loss();
  const Vec rows1 = rows;
  for (int j = 0; j < K; j++) logits[1 * K + j] = 50.0 * (j - 3);
  loss();
  expect_equal("softmax_cross_entropy with an ignored row's logits changed", rows, rows1);
  expect_near("ignored row loss", rows[1], 0.0, 0.0);
  for (int j = 0; j < K; j++) expect_near("ignored row dlogits", dl[1 * K + j], 0.0, 0.0);
}

// ---- optimizer --------------------------------------------------------------------------------

CB_TEST("model-ops-ref", adamw_by_hand) {
  Ops ops;
  // Exactly representable settings so every step below is exact in binary:
  // lr 1/8, beta1 1/2, beta2 3/4, eps 1/2, weight decay 1/2; p = 1, g = 1/2 twice, and a second
  // element p = -2, g = -1/4 (a negative gradient, eps not negligible).
  Vec p = {1.0, -2.0}, m = {0.0, 0.0}, v = {0.0, 0.0};
  const Vec g = {0.5, -0.25};
  ops.adamw(2, p.data(), g.data(), m.data(), v.data(), 0.125f, 0.5f, 0.75f, 0.5f, 0.5f, 1);
  // Element 0, t = 1: m = 1/4, v = 1/16, m_hat = 1/2, v_hat = 1/4; p -= (1/8)(1/2 / 1 + 1/2).
  expect_near("adamw m", m[0], 0.25, 0.0);
  expect_near("adamw v", v[0], 0.0625, 0.0);
  expect_near("adamw p step 1", p[0], 0.875, 0.0);
  // Element 1: m = -1/8, v = 1/64, m_hat = -1/4, v_hat = 1/16: p -= (1/8)(-1/4 / 3/4 - 1).
  expect_near("adamw p step 1 (second element)", p[1], -2.0 - 0.125 * (-1.0 / 3.0 - 1.0), 1e-15);
  // Element 0, t = 2: m = 3/8, v = 7/64, bias corrections 3/4 and 7/16, so m_hat = 1/2 and
  // v_hat = 1/4 again; p -= (1/8)(1/2 + (1/2)(7/8)) = 0.1171875.
  ops.adamw(2, p.data(), g.data(), m.data(), v.data(), 0.125f, 0.5f, 0.75f, 0.5f, 0.5f, 2);
  expect_near("adamw m step 2", m[0], 0.375, 0.0);
  expect_near("adamw v step 2", v[0], 0.109375, 0.0);
  expect_near("adamw p step 2", p[0], 0.7578125, 0.0);
}

}  // namespace
