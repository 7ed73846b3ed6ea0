// Training the VQ autoencoder (vq/vq_backward.cc, vq/vq_trainer.h). Group `vq-train`:
// - the whole network's backward on cpu-ref in double against central finite differences of
//   the pass's losses: decoder weights against the pixel loss, encoder weights against the
//   commitment loss, the stored codebook rows against the codebook loss (the straight-through
//   estimator makes the pixel loss's encoder gradient a surrogate, so that one is checked at
//   the op: quantize_l2_backward in conv-grad);
// - the cpu backend's pass (float) against cpu-ref's in double on the same weights;
// - training lowers the reconstruction error; a state saved and loaded continues bit for bit
//   (dead codes re-initialised on the way); a dead code takes a latent of the batch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "harness.h"
#include "vq/conv_ops.h"
#include "vq/vq_model.h"
#include "vq/vq_trainer.h"
#include "vq_images.h"

namespace {

using cbt::random_images;

// Two levels (downsample 2), attention at the second, nin_shortcuts both ways; narrow enough
// for finite differences over plain loops in double.
cb::VqConfig tiny_config() {
  cb::VqConfig c;
  c.ch = 8;
  c.ch_mult = {1, 2};
  c.z_channels = 8;
  c.codebook_size = 12;
  c.code_dim = 4;
  c.encoder_blocks = 1;
  c.decoder_blocks = 2;
  c.groups = 4;
  c.validate();
  return c;
}

template <typename Real>
std::unique_ptr<cb::VqModel<Real>> make_model(const std::string& backend, const cb::VqConfig& c,
                                              uint64_t seed) {
  return std::make_unique<cb::VqModel<Real>>(cb::make_conv_ops<Real>(backend), c, seed);
}

// One pass's parameter gradients (host, params() layout), stats and indices.
template <typename Real>
struct PassResult {
  std::vector<Real> grads;
  cb::VqPassStats stats;
  std::vector<int32_t> index;
};

template <typename Real>
PassResult<Real> run_pass(cb::VqModel<Real>& model, const std::vector<Real>& images, int B, int H,
                          int W, const cb::VqLossWeights& weights) {
  cb::DeviceMemory& mem = model.ops().memory();
  const int64_t n = model.params().size();
  cb::DeviceArray<Real> grads(mem, n), x(mem, (int64_t)images.size());
  grads.zero();
  x.upload(images.data(), (int64_t)images.size());
  const int f = model.config().downsample();
  PassResult<Real> r;
  r.index.resize(size_t(B) * (H / f) * (W / f));
  r.stats = model.train_pass(x.data(), B, H, W, weights, grads.data(), r.index.data(), nullptr);
  r.grads.resize((size_t)n);
  grads.download(r.grads.data(), n);
  return r;
}

// The pass's weighted loss, as train_pass's gradients are of it (each term a mean).
double loss_of(const cb::VqPassStats& s, const cb::VqLossWeights& w) {
  return w.scale * (w.pixel_l2 * s.pixel_sq / s.pixels + w.pixel_l1 * s.pixel_abs / s.pixels +
                    (w.codebook + w.commit) * s.latent_sq / s.latents);
}

// Central differences of the loss in a few parameters of every tensor whose name passes
// `chosen`, against the analytic gradient; the worst relative error is printed. A parameter
// whose perturbation changes a chosen code (the loss jumps there) is left out.
void check_network_gradient(const std::string& what, const cb::VqLossWeights& weights,
                            bool (*chosen)(const std::string&)) {
  const cb::VqConfig c = tiny_config();
  auto model = make_model<double>("cpu-ref", c, 7);
  const int B = 2, H = 4, W = 6;
  const std::vector<float> f = random_images(size_t(B) * 3 * H * W, 11);
  const std::vector<double> images(f.begin(), f.end());
  const PassResult<double> base = run_pass(*model, images, B, H, W, weights);
  std::vector<double> params((size_t)model->params().size());
  model->params().download(params.data(), (int64_t)params.size());
  const double h = 1e-5;
  // The gradients' scale: an error is relative to max(|analytic|, |numeric|, 1e-3 of it), since
  // some are zero in exact arithmetic (a bias of k shifts every score of a query alike, which
  // the softmax ignores) and both sides are rounding noise there.
  double sq = 0;
  int64_t n_grads = 0;
  for (const cb::VqParamSlot& slot : model->param_slots()) {
    if (!chosen(slot.name)) continue;
    for (int64_t e = 0; e < slot.count; e++) sq += base.grads[size_t(slot.offset + e)] * base.grads[size_t(slot.offset + e)];
    n_grads += slot.count;
  }
  const double floor = 1e-3 * std::sqrt(sq / std::max<int64_t>(1, n_grads));
  double worst = 0;
  int checked = 0, skipped = 0;
  for (const cb::VqParamSlot& slot : model->param_slots()) {
    if (!chosen(slot.name)) continue;
    // Three elements spread over the tensor: first, middle, last.
    for (int64_t e : {int64_t(0), slot.count / 2, slot.count - 1}) {
      const size_t i = size_t(slot.offset + e);
      auto loss_at = [&](double value, std::vector<int32_t>* index) {
        params[i] = value;
        model->params().upload(params.data(), (int64_t)params.size());
        model->params_changed();
        const PassResult<double> r = run_pass(*model, images, B, H, W, weights);
        *index = r.index;
        return loss_of(r.stats, weights);
      };
      // The 4-point stencil: truncation error O(h^4).
      const double x0 = params[i];
      std::vector<int32_t> i1, i2, i3, i4;
      const double p1 = loss_at(x0 + h, &i1), m1 = loss_at(x0 - h, &i2);
      const double p2 = loss_at(x0 + 2 * h, &i3), m2 = loss_at(x0 - 2 * h, &i4);
      params[i] = x0;
      if (i1 != base.index || i2 != base.index || i3 != base.index || i4 != base.index) {
        skipped++;
        continue;
      }
      const double numeric = (8 * (p1 - m1) - (p2 - m2)) / (12 * h), analytic = base.grads[i];
      const double rel = std::fabs(analytic - numeric) /
                         std::max({std::fabs(analytic), std::fabs(numeric), floor});
      worst = std::max(worst, rel);
      checked++;
      EXPECT(rel <= 1e-5, what + ": " + slot.name + "[" + std::to_string(e) + "] analytic " +
                              std::to_string(analytic) + ", finite difference " +
                              std::to_string(numeric) + " (relative error " +
                              std::to_string(rel) + ")");
    }
  }
  model->params().upload(params.data(), (int64_t)params.size());
  EXPECT(checked >= 8, what + ": only " + std::to_string(checked) + " parameters checked (" +
                           std::to_string(skipped) + " changed a code)");
  std::printf("  %s: %d parameters, worst relative error %.2e (%d left out: a code changed)\n",
              what.c_str(), checked, worst, skipped);
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

CB_TEST("vq-train", decoder_gradient_matches_finite_differences_of_the_pixel_loss) {
  cb::VqLossWeights w;
  w.pixel_l2 = 1.0;
  w.pixel_l1 = 0.5;
  w.codebook = 0;
  w.commit = 0;
  w.scale = 1.5;
  check_network_gradient("decoder and post_quant_conv vs pixel loss", w,
                         [](const std::string& n) {
                           return starts_with(n, "decoder.") || starts_with(n, "post_quant_conv");
                         });
}

CB_TEST("vq-train", encoder_gradient_matches_finite_differences_of_the_commitment_loss) {
  cb::VqLossWeights w;
  w.pixel_l2 = 0;
  w.codebook = 0;
  w.commit = 0.25;
  check_network_gradient("encoder and quant_conv vs commitment loss", w,
                         [](const std::string& n) {
                           return starts_with(n, "encoder.") || starts_with(n, "quant_conv");
                         });
}

CB_TEST("vq-train", codebook_gradient_matches_finite_differences_of_the_codebook_loss) {
  cb::VqLossWeights w;
  w.pixel_l2 = 0;
  w.codebook = 1;
  w.commit = 0;
  // Every row the batch chose gets a gradient; check them all, not three.
  const cb::VqConfig c = tiny_config();
  auto model = make_model<double>("cpu-ref", c, 7);
  const int B = 2, H = 4, W = 6;
  const std::vector<float> f = random_images(size_t(B) * 3 * H * W, 11);
  const std::vector<double> images(f.begin(), f.end());
  const PassResult<double> base = run_pass(*model, images, B, H, W, w);
  const cb::VqParamSlot& codes = model->slot("quantize.embedding.weight");
  std::vector<double> params((size_t)model->params().size());
  model->params().download(params.data(), (int64_t)params.size());
  double worst = 0;
  int nonzero = 0;
  for (int64_t e = 0; e < codes.count; e++) {
    const size_t i = size_t(codes.offset + e);
    const double x0 = params[i], h = 1e-5;
    double l[2];
    for (int side = 0; side < 2; side++) {
      params[i] = x0 + (side == 0 ? h : -h);
      model->params().upload(params.data(), (int64_t)params.size());
      model->params_changed();
      const PassResult<double> r = run_pass(*model, images, B, H, W, w);
      EXPECT(r.index == base.index, "a codebook perturbation of 1e-5 changed a chosen code");
      l[side] = loss_of(r.stats, w);
    }
    params[i] = x0;
    const double numeric = (l[0] - l[1]) / (2 * h), analytic = base.grads[i];
    const double rel =
        std::fabs(analytic - numeric) / std::max({std::fabs(analytic), std::fabs(numeric), 1e-9});
    worst = std::max(worst, rel);
    nonzero += analytic != 0 ? 1 : 0;
    EXPECT(rel <= 1e-5, "codebook value " + std::to_string(e) + ": analytic " +
                            std::to_string(analytic) + ", finite difference " +
                            std::to_string(numeric));
  }
  EXPECT(nonzero > 0, "no codebook value got a gradient");
  std::printf("  codebook vs codebook loss: %lld values, worst relative error %.2e\n",
              (long long)codes.count, worst);
}

CB_TEST("vq-train", cpu_training_pass_matches_cpu_ref_in_double) {
  const cb::VqConfig c = tiny_config();
  auto ref = make_model<double>("cpu-ref", c, 3);
  auto cpu = make_model<float>("cpu", c, 3);
  const int B = 3, H = 8, W = 6;
  const std::vector<float> images = random_images(size_t(B) * 3 * H * W, 5);
  cb::VqLossWeights w;
  w.pixel_l1 = 0.1;
  const PassResult<double> want =
      run_pass(*ref, std::vector<double>(images.begin(), images.end()), B, H, W, w);
  const PassResult<float> got = run_pass(*cpu, images, B, H, W, w);
  EXPECT(got.index == want.index, "cpu chose other codes than cpu-ref");
  // Per tensor: the normalised error of the float gradient, against at least 1e-3 of the
  // gradients' overall RMS per value (a tensor whose gradient is zero in exact arithmetic, as
  // k's bias, holds float noise alone).
  double total_sq = 0;
  for (double g : want.grads) total_sq += g * g;
  const double floor_sq = 1e-6 * total_sq / double(want.grads.size());
  double worst = 0;
  std::string worst_name;
  for (const cb::VqParamSlot& slot : cpu->param_slots()) {
    double num = 0, den = double(slot.count) * floor_sq;
    for (int64_t e = 0; e < slot.count; e++) {
      const double a = got.grads[size_t(slot.offset + e)], b = want.grads[size_t(slot.offset + e)];
      EXPECT(std::isfinite(a), slot.name + ": a gradient is not finite");
      num += (a - b) * (a - b);
      den += b * b;
    }
    const double nmse = num / den;
    if (nmse > worst) {
      worst = nmse;
      worst_name = slot.name;
    }
  }
  // float sums of a few hundred terms through ~30 layers: ~1e-6 relative per value, squared.
  EXPECT(worst <= 1e-8, "gradient normalised MSE " + std::to_string(worst) + " at " + worst_name);
  const double rel_loss = std::fabs(loss_of(got.stats, w) - loss_of(want.stats, w)) /
                          loss_of(want.stats, w);
  EXPECT(rel_loss <= 1e-5, "loss differs by " + std::to_string(rel_loss) + " relative");
  std::printf("  cpu vs cpu-ref: worst gradient normalised MSE %.2e (%s), loss %.2e relative\n",
              worst, worst_name.c_str(), rel_loss);
}

namespace {

// Smooth images (a few low-frequency waves) at two sizes of one batch: what a tokenizer learns.
std::vector<float> smooth_images(int B, int side, unsigned seed) {
  std::vector<float> x(size_t(B) * 3 * side * side);
  const std::vector<float> r = random_images(size_t(B) * 6, seed);
  for (int b = 0; b < B; b++) {
    for (int ch = 0; ch < 3; ch++) {
      for (int y = 0; y < side; y++) {
        for (int xx = 0; xx < side; xx++) {
          const double u = double(y) / side, v = double(xx) / side;
          x[((size_t(b) * 3 + ch) * side + y) * side + xx] =
              float(0.6 * std::sin(3 * u * (1 + r[b * 6 + ch]) + 2 * v * r[b * 6 + 3 + ch]));
        }
      }
    }
  }
  return x;
}

std::vector<cb::VqTrainImages> two_sizes(const std::vector<float>& small,
                                         const std::vector<float>& large, int B) {
  return {{small.data(), B, 4, 4, 1.0}, {large.data(), B, 8, 8, 1.0}};
}

}  // namespace

CB_TEST("vq-train", training_lowers_the_reconstruction_error) {
  cb::VqTrainer<float> trainer(make_model<float>("cpu", tiny_config(), 1), "cpu", 9);
  const int B = 4;
  const std::vector<float> small = smooth_images(B, 4, 21), large = smooth_images(B, 8, 21);
  cb::VqStepSettings s;
  s.lr = 3e-3f;
  double first = 0, last = 0;
  for (int t = 0; t < 60; t++) {
    const cb::VqStepStats st = trainer.step(two_sizes(small, large, B), s);
    const double mse = st.passes[1].pixel_sq / st.passes[1].pixels;
    EXPECT(std::isfinite(mse), "the loss is not finite at step " + std::to_string(t));
    if (t == 0) first = mse;
    last = mse;
  }
  EXPECT(trainer.step_count() == 60, "step count");
  EXPECT(last < 0.3 * first, "pixel MSE went from " + std::to_string(first) + " to " +
                                 std::to_string(last) + " in 60 steps");
  std::printf("  8x8 pixel MSE: %.4f -> %.4f after 60 steps\n", first, last);
}

CB_TEST("vq-train", a_loaded_state_continues_bit_for_bit) {
  const int B = 3;
  const std::vector<float> small = smooth_images(B, 4, 31), large = smooth_images(B, 8, 31);
  cb::VqStepSettings s;
  s.lr = 1e-3f;
  s.weight_decay = 0.01f;
  s.dead_after = 3;  // codes die and come back within the run
  auto run = [&](cb::VqTrainer<float>& t, int steps, int* reinitialised) {
    for (int i = 0; i < steps; i++) {
      *reinitialised += t.step(two_sizes(small, large, B), s).reinitialised;
    }
  };
  int re_straight = 0, re_split = 0;
  cb::VqTrainer<float> straight(make_model<float>("cpu", tiny_config(), 4), "cpu", 17);
  run(straight, 20, &re_straight);
  cb::VqTrainer<float> first(make_model<float>("cpu", tiny_config(), 4), "cpu", 17);
  run(first, 10, &re_split);
  const cb::VqTrainer<float>::State saved = first.state();
  // A fresh trainer of other weights, given the state.
  cb::VqTrainer<float> second(make_model<float>("cpu", tiny_config(), 99), "cpu", 17);
  second.set_state(saved);
  run(second, 10, &re_split);
  const auto a = straight.state(), b = second.state();
  EXPECT(re_straight > 0, "no dead code was re-initialised: the test does not cover them");
  EXPECT(re_straight == re_split, "re-initialised codes differ");
  EXPECT(a.step == 20 && b.step == 20, "step counts");
  EXPECT(a.params == b.params, "parameters differ after 20 steps straight vs 10 + load + 10");
  EXPECT(a.m == b.m && a.v == b.v, "AdamW moments differ");
  EXPECT(a.last_used == b.last_used, "code usage differs");
}

CB_TEST("vq-train", a_dead_code_takes_a_latent_of_the_batch) {
  cb::VqConfig c = tiny_config();
  c.codebook_size = 64;  // far more codes than the 2 x 2 x 2 positions can use
  cb::VqTrainer<double> trainer(make_model<double>("cpu-ref", c, 2), "cpu-ref", 5);
  const int B = 2;
  const std::vector<float> f = smooth_images(B, 4, 41);
  cb::VqStepSettings s;
  s.lr = 0;  // only the dead codes change
  s.dead_after = 1;
  const std::vector<double> before = trainer.state().params;
  const cb::VqStepStats st = trainer.step({{f.data(), B, 4, 4, 1.0}}, s);
  // Every code no position chose is dead after one step; the batch has 8 positions.
  EXPECT(st.reinitialised == std::min(64 - st.codes_used, 8),
         "re-initialised " + std::to_string(st.reinitialised) + " of " +
             std::to_string(64 - st.codes_used) + " unused codes");
  const std::vector<double> after = trainer.state().params;
  const cb::VqParamSlot& codes = trainer.model().slot("quantize.embedding.weight");
  int changed = 0;
  for (int e = 0; e < 64; e++) {
    bool differs = false;
    for (int d = 0; d < c.code_dim; d++) {
      const size_t i = size_t(codes.offset + e * c.code_dim + d);
      differs = differs || before[i] != after[i];
    }
    changed += differs ? 1 : 0;
  }
  EXPECT(changed == st.reinitialised, std::to_string(changed) + " rows changed, " +
                                          std::to_string(st.reinitialised) + " reported");
  // The same batch again: each of its 8 positions gave its latent to a dead code, so each now
  // finds its own latent in the codebook (distance 0 up to rounding).
  const cb::VqStepStats again = trainer.step({{f.data(), B, 4, 4, 1.0}}, s);
  EXPECT(again.passes[0].latent_sq <= 1e-12,
         "latent error after re-initialisation " + std::to_string(again.passes[0].latent_sq) +
             " (before " + std::to_string(st.passes[0].latent_sq) + ")");
}
