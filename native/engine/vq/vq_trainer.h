// Training LlamaGen's VQ autoencoder (`checkerboard tokenizer train`): one optimizer step over
// one batch encoded at several image sizes (the paper's scales, each from the image resized to
// s_k * downsampling px), AdamW with fp32 moments, and dead codes re-initialised from the
// batch's latents. The losses and the backward are VqModel::train_pass (vq/vq_backward.cc);
// the schedule, the data order, checkpoints and metrics are the caller's (src/tokenizer/).
//
// Determinism: a step depends only on the parameters, the optimizer state, `last_used` and its
// inputs (the dead codes' new rows come from a generator seeded by (seed, step)), so a state
// saved after step t and loaded again continues bit for bit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../model/model_ops.h"
#include "vq_model.h"

namespace cb {

// One pass of a step: B images of H x W (host, (B, 3, H, W), values in [-1, 1]) and the weight
// of its losses in the step's sum.
struct VqTrainImages {
  const float* images = nullptr;
  int B = 0, H = 0, W = 0;
  double weight = 1.0;
};

struct VqStepSettings {
  float lr = 1e-4f;
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.0f;  // on conv weights only (not norms, biases or the codebook)
  VqLossWeights losses;       // its `scale` is replaced by each pass's weight
  // A code no position chose for this many steps is re-initialised (0: never).
  int dead_after = 100;
};

struct VqStepStats {
  std::vector<VqPassStats> passes;  // one per VqTrainImages, in order
  int codes_used = 0;       // distinct codes this step chose
  double perplexity = 0;    // exp of the entropy of this step's code histogram
  int codes_live = 0;       // codes chosen within the last dead_after steps (after reinit)
  int reinitialised = 0;    // dead codes given new rows this step
};

template <typename Real>
class VqTrainer {
 public:
  // `backend` names the model ops whose AdamW runs the step (the conv backend's name: cpu-ref,
  // cpu or cuda); `seed` seeds the dead codes' replacements.
  VqTrainer(std::unique_ptr<VqModel<Real>> model, const std::string& backend, uint64_t seed);

  VqModel<Real>& model() { return *model_; }
  int64_t step_count() const { return step_; }

  // One optimizer step: zero gradients, one train_pass per entry (gradients summed), AdamW,
  // then the dead codes. Throws cb::Error on bad sizes (naming them).
  VqStepStats step(const std::vector<VqTrainImages>& passes, const VqStepSettings& settings);

  // The whole training state, for checkpoints: parameters, both AdamW moments (params()
  // layout), the step count and the step at which each code was last chosen.
  struct State {
    std::vector<Real> params, m, v;
    std::vector<int64_t> last_used;  // (K)
    int64_t step = 0;
  };
  State state() const;
  // Restores a state() of a trainer of the same configuration (sizes are checked).
  void set_state(const State& state);

 private:
  void adamw(const VqStepSettings& s);
  int reinitialise_dead_codes(int dead_after, const std::vector<Real>& latent, int64_t positions,
                              int64_t hw);

  std::unique_ptr<VqModel<Real>> model_;
  std::unique_ptr<ModelOps<Real>> optimizer_ops_;
  uint64_t seed_;
  DeviceArray<Real> grads_, m_, v_;
  DeviceArray<Real> images_;  // a pass's images in the backend's memory
  std::vector<int64_t> last_used_;
  int64_t step_ = 0;
};

extern template class VqTrainer<float>;
extern template class VqTrainer<double>;

}  // namespace cb
