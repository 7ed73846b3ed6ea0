// The whole model: backward against finite differences in double (cpu-ref), cpu against cpu-ref
// on loss, logits and every gradient, blockwise causality, and clear errors for impossible
// configs, malformed batches and arenas that cannot be allocated.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "harness.h"
#include "model/backends.h"
#include "model/model.h"
#include "model_fixture.h"

namespace {

using cbt::plan_slots;
using cbt::random_batch;
using cbt::randomize_params;
using cbt::tiny_config;

// ||a - b||^2 / ||b||^2 (0 when both are zero).
double nmse(const float* a, const double* b, size_t count) {
  double num = 0, den = 0;
  for (size_t i = 0; i < count; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den == 0 ? num : num / den;
}

bool all_finite(const float* a, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (!std::isfinite(a[i])) return false;
  }
  return true;
}

// Every parameter tensor's backward gradient against a 4-point finite-difference stencil, on up
// to 8 entries per tensor (the 4 largest gradients and 4 random ones); the relative error
// ||g - fd|| / ||fd|| over those entries must stay below 1e-6.
void gradient_check(int rope_mix_layers) {
  const cb::ModelConfig c = tiny_config(rope_mix_layers);
  cb::Model<double> model(c, cb::make_model_ops<double>("cpu-ref"), 7);
  cbt::set_test_codebook(model);
  randomize_params(model, 11);
  const cbt::SlotPlan plan = plan_slots(c, {1, 2, 3});
  const cb::Batch<double> batch = random_batch<double>(c, plan, 2, 5);
  model.zero_grad();
  model.forward(batch, true);
  model.backward();
  const std::vector<double> grads(model.grads(), model.grads() + model.layout().total());
  std::mt19937 rng(3);
  const double h = 1e-3;
  double worst = 0;
  std::string worst_name;
  for (const cb::ParamEntry& e : model.layout().entries()) {
    std::vector<int64_t> idx(e.size);
    for (int64_t i = 0; i < e.size; i++) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
      return std::fabs(grads[e.offset + a]) > std::fabs(grads[e.offset + b]);
    });
    std::vector<int64_t> chosen(idx.begin(), idx.begin() + std::min<int64_t>(4, e.size));
    for (int r = 0; r < 4 && e.size > 4; r++) chosen.push_back(rng() % e.size);
    double num = 0, den = 0;
    for (int64_t i : chosen) {
      double* p = model.params() + e.offset + i;
      const double saved = *p;
      auto loss_at = [&](double delta) {
        *p = saved + delta;
        return model.forward(batch, false).loss;
      };
      const double fd = (loss_at(-2 * h) - 8 * loss_at(-h) + 8 * loss_at(h) - loss_at(2 * h)) /
                        (12 * h);
      *p = saved;
      const double g = grads[e.offset + i];
      num += (g - fd) * (g - fd);
      den += fd * fd;
    }
    const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    if (rel > worst) {
      worst = rel;
      worst_name = e.name;
    }
    EXPECT(den > 0, "finite differences of " + e.name + " are all zero: the check cannot fail");
    EXPECT(rel < 1e-6, "gradient of " + e.name + ": relative error " + std::to_string(rel) +
                           " against finite differences (rope mix layers " +
                           std::to_string(rope_mix_layers) + ")");
  }
  std::printf("     %zu tensors, worst relative error %.2e (%s)\n", model.layout().entries().size(),
              worst, worst_name.c_str());
}

CB_TEST("model", gradients_match_finite_differences_without_rope_mixing) { gradient_check(0); }
CB_TEST("model", gradients_match_finite_differences_with_rope_mixing_in_all_layers) {
  gradient_check(2);
}
CB_TEST("model", gradients_match_finite_differences_with_rope_mixing_in_the_first_layer) {
  gradient_check(1);
}

// cpu against cpu-ref in float, same parameters and batch.
void parity(int rope_mix_layers, int B, const std::vector<int>& steps) {
  const cb::ModelConfig c = tiny_config(rope_mix_layers);
  cb::Model<float> ref(c, cb::make_model_ops<float>("cpu-ref"), 1);
  cbt::set_test_codebook(ref);
  cb::Model<float> fast(c, cb::make_model_ops<float>("cpu"), 1);
  cbt::set_test_codebook(fast);
  randomize_params(ref, 21);
  std::copy(ref.params(), ref.params() + ref.layout().total(), fast.params());
  const cbt::SlotPlan plan = plan_slots(c, steps);
  const cb::Batch<float> batch = random_batch<float>(c, plan, B, 9);
  for (cb::Model<float>* m : {&ref, &fast}) {
    m->zero_grad();
    m->forward(batch, true);
    m->backward();
  }
  const double loss_ref = ref.forward(batch, false).loss;
  const double loss_fast = fast.forward(batch, false).loss;
  const double loss_nmse = (loss_fast - loss_ref) * (loss_fast - loss_ref) / (loss_ref * loss_ref);
  EXPECT(std::isfinite(loss_fast), "cpu loss is not finite");
  EXPECT(loss_nmse < 1e-9, "loss: cpu " + std::to_string(loss_fast) + " vs cpu-ref " +
                               std::to_string(loss_ref) + ", nmse " + std::to_string(loss_nmse));
  const size_t nl = size_t(B) * plan.T * c.vocab;
  std::vector<double> logits_ref(ref.logits(), ref.logits() + nl);
  EXPECT(all_finite(fast.logits(), nl), "cpu logits have NaN or Inf");
  const double logits_nmse = nmse(fast.logits(), logits_ref.data(), nl);
  EXPECT(logits_nmse < 1e-6, "logits nmse " + std::to_string(logits_nmse));
  double worst = 0;
  for (const cb::ParamEntry& e : ref.layout().entries()) {
    std::vector<double> g(ref.grads() + e.offset, ref.grads() + e.offset + e.size);
    EXPECT(all_finite(fast.grads() + e.offset, e.size), "gradient of " + e.name + " has NaN/Inf");
    const double err = nmse(fast.grads() + e.offset, g.data(), e.size);
    EXPECT(err < 1e-6, "gradient of " + e.name + ": cpu vs cpu-ref nmse " + std::to_string(err));
    worst = std::max(worst, err);
  }
  std::printf("     nmse: loss %.1e, logits %.1e, worst gradient tensor %.1e\n", loss_nmse,
              logits_nmse, worst);
}

CB_TEST("model", cpu_matches_cpu_ref_on_loss_logits_and_gradients) { parity(0, 3, {1, 2, 3}); }
CB_TEST("model", cpu_matches_cpu_ref_with_rope_mixing_and_single_token_blocks) {
  parity(2, 2, {1, 4, 16});
}

// Perturbing the inputs of block i (its slots' positions and codes) changes no logits of earlier blocks
// and some logits of later ones.
CB_TEST("model", attention_is_blockwise_causal) {
  const cb::ModelConfig c = tiny_config(1);
  for (const char* backend : {"cpu-ref", "cpu"}) {
    cb::Model<float> model(c, cb::make_model_ops<float>(backend), 1);
    cbt::set_test_codebook(model);
    randomize_params(model, 4);
    const cbt::SlotPlan plan = plan_slots(c, {1, 2, 3});
    const cb::Batch<float> batch = random_batch<float>(c, plan, 2, 8);
    model.forward(batch, false);
    const std::vector<float> base(model.logits(), model.logits() + size_t(2) * plan.T * c.vocab);
    for (int block = 1; block < plan.blocks; block++) {
      cb::Batch<float> changed = batch;
      for (int s = 0; s < 2; s++) {
        for (int t = 0; t < plan.T; t++) {
          if (plan.block_of_slot[t] != block) continue;
          const size_t row = size_t(s) * plan.T + t;
          // The code at the slot's position: what later blocks and the next scale are fed.
          int32_t& code = changed.codes[s * c.grid_positions() + (batch.pos_p[row] - 2)];
          code = (code + 1) % c.vocab;
          changed.pos_p[row] = (changed.pos_p[row] + 1) % (int32_t)c.positions();
        }
      }
      model.forward(changed, false);
      bool later_changed = false;
      for (int s = 0; s < 2; s++) {
        for (int t = 0; t < plan.T; t++) {
          for (int k = 0; k < c.vocab; k++) {
            const size_t i = (size_t(s) * plan.T + t) * c.vocab + k;
            const bool differs = model.logits()[i] != base[i];
            if (plan.block_of_slot[t] < block) {
              EXPECT(!differs, std::string(backend) + ": block " + std::to_string(block) +
                                   " changed a logit of slot " + std::to_string(t) +
                                   " in earlier block " + std::to_string(plan.block_of_slot[t]));
            } else if (plan.block_of_slot[t] > block && differs) {
              later_changed = true;
            }
          }
        }
      }
      EXPECT(later_changed || block == plan.blocks - 1,
             std::string(backend) + ": block " + std::to_string(block) + " changed no later logit");
    }
  }
}

CB_TEST("model", impossible_configs_are_clear_errors) {
  auto fails_with = [](cb::ModelConfig c, const std::string& text) {
    try {
      cb::Model<float> m(c, cb::make_model_ops<float>("cpu-ref"), 0);
    } catch (const cb::Error& e) {
      EXPECT(std::string(e.what()).find(text) != std::string::npos,
             "expected '" + text + "' in: " + e.what());
      return;
    }
    EXPECT(false, "no error for a config that should fail with '" + text + "'");
  };
  cb::ModelConfig c = tiny_config(0);
  c.heads = 3;
  fails_with(c, "not divisible by heads");
  c = tiny_config(0);
  c.width = 30;
  c.heads = 2;  // head dim 15
  fails_with(c, "must be even for RoPE");
  c = tiny_config(0);
  c.scales = {2, 2};
  fails_with(c, "strictly increasing");
  c = tiny_config(0);
  c.rope_mix_layers = 5;
  fails_with(c, "ropeMixLayers");
}

CB_TEST("model", malformed_batches_and_huge_arenas_are_clear_errors) {
  const cb::ModelConfig c = tiny_config(0);
  cb::Model<float> model(c, cb::make_model_ops<float>("cpu"), 0);
  cbt::set_test_codebook(model);
  const cbt::SlotPlan plan = plan_slots(c, {1, 2, 3});
  cb::Batch<float> batch = random_batch<float>(c, plan, 2, 1);
  auto fails_with = [&](const cb::Batch<float>& b, const std::string& text) {
    try {
      model.forward(b, false);
    } catch (const cb::Error& e) {
      EXPECT(std::string(e.what()).find(text) != std::string::npos,
             "expected '" + text + "' in: " + e.what());
      return;
    }
    EXPECT(false, "no error for a batch that should fail with '" + text + "'");
  };
  cb::Batch<float> bad = batch;
  bad.targets[3] = c.vocab;
  fails_with(bad, "outside the codebook");
  bad = batch;
  bad.visible_end[4] = 2;
  fails_with(bad, "visibleEnd[4]");
  bad = batch;
  bad.labels.pop_back();
  fails_with(bad, "labels has 1 values");
  // An arena far beyond this machine's memory is refused with the size it asked for.
  cb::Batch<float> huge;
  huge.B = 1 << 24;
  huge.T = plan.T;
  try {
    model.ensure_arena_for_test(huge.B, huge.T);
    EXPECT(false, "an arena for 16M sequences was allocated");
  } catch (const cb::Error& e) {
    EXPECT(std::string(e.what()).find("cannot allocate the activation arena") != std::string::npos &&
               std::string(e.what()).find(" bytes") != std::string::npos,
           std::string("unexpected message: ") + e.what());
  }
  // The model still works afterwards.
  EXPECT(std::isfinite(model.forward(batch, false).loss), "forward after a refused arena");
}

CB_TEST("model", a_tiny_model_memorises_a_batch) {
  const cb::ModelConfig c = tiny_config(0);
  cb::Model<float> model(c, cb::make_model_ops<float>("cpu"), 3);
  cbt::set_test_codebook(model);
  const cbt::SlotPlan plan = plan_slots(c, {1, 2, 3});
  const cb::Batch<float> batch = random_batch<float>(c, plan, 4, 2);
  cb::AdamWSettings s;
  s.lr = 3e-3f;
  s.weight_decay = 0.0f;
  double first = 0;
  std::vector<double> tail;  // the losses of the last 50 steps
  for (int it = 0; it < 300; it++) {
    model.zero_grad();
    const double loss = model.forward(batch, true).loss;
    if (it == 0) first = loss;
    if (it >= 250) tail.push_back(loss);
    model.backward();
    model.step(s);
  }
  EXPECT(std::fabs(first - std::log((double)c.vocab)) < 0.5,
         "initial loss " + std::to_string(first) + " should be near log K");
  // The loss settles near 0.033 by step 150; from there Adam (lr 3e-3, no decay, tiny second
  // moments) now and then spikes for a few steps (to 0.08 or 1.1 at step 299, depending on the
  // GEMM's last bits: OpenBLAS's AVX2 or AVX-512 kernels, oneDNN, the blocked loop). The median
  // of the last 50 steps says whether the batch is memorised; a single step's loss does not.
  std::sort(tail.begin(), tail.end());
  const double median = tail[tail.size() / 2];
  EXPECT(median < 0.05, "median loss over steps 250-299 is " + std::to_string(median));
}

}  // namespace
