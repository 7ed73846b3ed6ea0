// The whole model on the cpu backend in bf16 (make_model_ops<float>("cpu", Precision::bf16):
// bf16 weight copies and bf16 matmul-input activations, fp32 everywhere else) against the same
// model in fp32 ("cpu"), with identical parameters and batches (group `bf16`; skipped with one
// `SKIP cpu-bf16:` line on a CPU without avx512_bf16):
// 1. the loss and the logits of one forward pass agree within the bf16 bound below;
// 2. a short AdamW run on one batch trains (the loss falls by more than half) and follows the
//    fp32 run's losses.
//
// The bound. Rounding an operand to bf16 (8 significant bits) moves it by at most 2^-8 of its
// size, uniformly spread, i.e. an RMS of about 2^-8 / sqrt(3) = 2.3e-3 of the RMS; a product
// of two rounded operands is off by sqrt(2) times that, 3.2e-3 (nmse 1.0e-5 per matmul, the
// fp32 accumulation adds nothing visible). The logits come out of the matmuls on the path
// (latent MLP 2, in_proj 1, per layer qkv, attn_out, fc1, fc2 and AdaLN: 5, head AdaLN and head
// 2: 15 for tiny_config's 2 layers), whose independent errors add up in nmse: about 1.5e-4
// if every layer passed its error on at full size (LayerNorm and the residual stream damp
// it). The limits: logits nmse 6e-4 (4 times that), elementwise 0.1 of the RMS plus 2% of the
// value (about 8 standard deviations of a 1.2e-2 relative RMS error); loss within 1%. A wrong
// op (a transposed weight, a missing bias, an unrounded or a truncated operand in the wrong
// place) gives nmse 1e-2 or worse, or a loss that does not fall.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "compare.h"
#include "cpu/cpu_features.h"
#include "harness.h"
#include "model/backends.h"
#include "model/model.h"
#include "model_fixture.h"

namespace {

constexpr double kLogitsNmse = 6e-4, kLogitsAtol = 0.1, kLogitsRtol = 2e-2;
constexpr double kLossRel = 1e-2;
constexpr double kTrajectoryRel = 3e-2;  // after AdamW steps the two runs' parameters differ too

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// Prints the SKIP line and returns false where bf16 cannot run.
bool bf16_here() {
  const std::string why = cb::bf16_matmul_unavailable();
  if (!why.empty()) std::printf("SKIP cpu-bf16: %s\n", why.c_str());
  return why.empty();
}

// The fp32 and the bf16 model with the same random parameters.
struct ModelPair {
  cb::Model<float> fp32, bf16;
  explicit ModelPair(const cb::ModelConfig& c)
      : fp32(c, cb::make_model_ops<float>("cpu", cb::Precision::fp32), 1),
        bf16(c, cb::make_model_ops<float>("cpu", cb::Precision::bf16), 1) {
    cbt::randomize_params(fp32, 21);
    const int64_t n = fp32.layout().total();
    std::vector<float> p(n);
    fp32.read_state("params", p.data(), 0, n);
    bf16.write_state("params", p.data(), 0, n);
    cbt::set_test_codebook(fp32);
    cbt::set_test_codebook(bf16);
  }
};

std::vector<float> read_logits(cb::Model<float>& m) {
  std::vector<float> host(size_t(m.last_batch()) * m.last_slots() * m.config().vocab);
  m.read_logits(host.data());
  return host;
}

}  // namespace

CB_TEST("bf16", cpu_bf16_logits_agree_with_fp32_within_the_bf16_bound) {
  if (!bf16_here()) return;
  for (int rope_mix : {0, 2}) {
    const cb::ModelConfig c = cbt::tiny_config(rope_mix);
    ModelPair m(c);
    EXPECT(m.bf16.mixed_precision() && !m.fp32.mixed_precision(),
           "only the bf16 model runs mixed precision");
    const cbt::SlotPlan plan = cbt::plan_slots(c, {1, 2, 3});
    const cb::Batch<float> batch = cbt::random_batch<float>(c, plan, 3, 9);
    const double loss32 = m.fp32.forward(batch, false).loss;
    const double loss16 = m.bf16.forward(batch, false).loss;
    const double loss_rel = std::fabs(loss16 - loss32) / std::fabs(loss32);
    EXPECT(std::isfinite(loss16) && loss_rel <= kLossRel,
           "loss: bf16 " + fmt(loss16) + ", fp32 " + fmt(loss32));
    const std::vector<float> l32 = read_logits(m.fp32), l16 = read_logits(m.bf16);
    double err2 = 0, ref2 = 0;
    for (size_t i = 0; i < l32.size(); i++) {
      EXPECT(std::isfinite(l16[i]), "bf16 logit " + std::to_string(i) + " is not finite");
      err2 += (double(l16[i]) - l32[i]) * (double(l16[i]) - l32[i]);
      ref2 += double(l32[i]) * l32[i];
    }
    const double nmse = err2 / ref2, rms = std::sqrt(ref2 / double(l32.size()));
    EXPECT(nmse <= kLogitsNmse, "logits nmse " + fmt(nmse) + " > " + fmt(kLogitsNmse));
    for (size_t i = 0; i < l32.size(); i++) {
      const double diff = std::fabs(double(l16[i]) - l32[i]);
      EXPECT(diff <= kLogitsAtol * rms + kLogitsRtol * std::fabs(l32[i]),
             "logit " + std::to_string(i) + ": bf16 " + fmt(l16[i]) + ", fp32 " + fmt(l32[i]));
    }
    std::printf("     rope mix %d: loss relative gap %s; logits nmse %s (bound %s)\n", rope_mix,
                fmt(loss_rel).c_str(), fmt(nmse).c_str(), fmt(kLogitsNmse).c_str());
  }
}

CB_TEST("bf16", cpu_bf16_tiny_model_trains_and_follows_fp32) {
  if (!bf16_here()) return;
  const cb::ModelConfig c = cbt::tiny_config(1);
  ModelPair m(c);
  const cbt::SlotPlan plan = cbt::plan_slots(c, {1, 2, 3});
  const cb::Batch<float> batch = cbt::random_batch<float>(c, plan, 2, 100);
  cb::AdamWSettings s;
  s.lr = 1e-2f;
  double first = 0, last = 0, worst = 0;
  std::string line;
  const int steps = 40;
  for (int step = 0; step < steps; step++) {
    double loss[2];
    cb::Model<float>* models[2] = {&m.fp32, &m.bf16};
    for (int i = 0; i < 2; i++) {
      models[i]->zero_grad();
      loss[i] = models[i]->forward(batch, true).loss;
      models[i]->backward();
      models[i]->step(s);
    }
    const double rel = std::fabs(loss[1] - loss[0]) / std::fabs(loss[0]);
    EXPECT(std::isfinite(loss[1]), "step " + std::to_string(step) + ": bf16 loss not finite");
    // The runs drift apart as they train; the gap is checked while the losses are O(1).
    if (loss[0] > 0.5) {
      EXPECT(rel <= kTrajectoryRel, "step " + std::to_string(step) + ": bf16 loss " +
                                        fmt(loss[1]) + ", fp32 " + fmt(loss[0]));
      worst = std::max(worst, rel);
    }
    if (step == 0) first = loss[1];
    last = loss[1];
    if (step % 8 == 0 || step == steps - 1) line += " " + fmt(loss[1]);
  }
  EXPECT(last < 0.5 * first, "the bf16 loss did not fall by half in " + std::to_string(steps) +
                                 " steps: " + fmt(first) + " -> " + fmt(last));
  std::printf("     bf16 losses:%s; worst relative gap to fp32 %s\n", line.c_str(),
              fmt(worst).c_str());
}
