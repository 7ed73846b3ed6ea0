// VqTrainer: one optimizer step over a batch at several image sizes, and the dead codes.
#include "vq/vq_trainer.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "error.h"
#include "model/backends.h"

namespace cb {

template <typename Real>
VqTrainer<Real>::VqTrainer(std::unique_ptr<VqModel<Real>> model, const std::string& backend,
                           uint64_t seed)
    : model_(std::move(model)), optimizer_ops_(make_model_ops<Real>(backend)), seed_(seed) {
  DeviceMemory& mem = model_->ops().memory();
  CB_CHECK(&mem == &optimizer_ops_->memory(),
           "VQ trainer: the optimizer backend '" + backend + "' keeps its tensors elsewhere than '" +
               model_->ops().name() + "'");
  const int64_t n = model_->params().size();
  for (DeviceArray<Real>* a : {&grads_, &m_, &v_}) {
    a->bind(mem);
    a->resize(n);
    a->zero();
  }
  images_.bind(mem);
  last_used_.assign((size_t)model_->config().codebook_size, 0);
}

template <typename Real>
VqStepStats VqTrainer<Real>::step(const std::vector<VqTrainImages>& passes,
                                  const VqStepSettings& settings) {
  CB_CHECK(!passes.empty(), "VQ training step: no images");
  CB_CHECK(settings.dead_after >= 0, "VQ training step: dead_after must be >= 0");
  VqModel<Real>& model = *model_;
  const VqConfig& c = model.config();
  const int K = c.codebook_size, D = c.code_dim;
  grads_.zero();
  VqStepStats stats;
  std::vector<int64_t> counts((size_t)K, 0);  // this step's code histogram
  std::vector<Real> latent;                    // the largest pass's latents (B, D, hw)
  int64_t latent_positions = 0, latent_hw = 0;
  std::vector<int32_t> index;
  std::vector<Real> host;
  for (const VqTrainImages& p : passes) {
    CB_CHECK(p.images != nullptr && p.B >= 1, "VQ training step: a pass without images");
    CB_CHECK(std::isfinite(p.weight) && p.weight >= 0,
             "VQ training step: a pass's weight must be finite and >= 0");
    const int f = c.downsample();
    CB_CHECK(p.H >= f && p.W >= f && p.H % f == 0 && p.W % f == 0,
             "VQ training step: images of " + std::to_string(p.H) + " x " + std::to_string(p.W) +
                 " px; the sides must be multiples of the downsampling factor " +
                 std::to_string(f));
    const int64_t values = int64_t(p.B) * c.in_channels * p.H * p.W;
    const int64_t hw = int64_t(p.H / f) * (p.W / f), positions = p.B * hw;
    host.assign(p.images, p.images + values);
    images_.reserve(values);
    images_.upload(host.data(), values);
    index.resize((size_t)positions);
    const bool keep_latent = positions > latent_positions;
    if (keep_latent) {
      latent.resize((size_t)(positions * D));
      latent_positions = positions;
      latent_hw = hw;
    }
    VqLossWeights weights = settings.losses;
    weights.scale = p.weight;
    stats.passes.push_back(model.train_pass(images_.data(), p.B, p.H, p.W, weights,
                                            grads_.data(), index.data(),
                                            keep_latent ? latent.data() : nullptr));
    for (int32_t e : index) counts[(size_t)e]++;
  }
  adamw(settings);
  model.params_changed();
  step_++;
  int64_t total = 0;
  for (int e = 0; e < K; e++) {
    if (counts[e] > 0) {
      last_used_[e] = step_;
      stats.codes_used++;
    }
    total += counts[e];
  }
  double entropy = 0;
  for (int64_t n : counts) {
    if (n > 0) entropy -= double(n) / total * std::log(double(n) / total);
  }
  stats.perplexity = std::exp(entropy);
  if (settings.dead_after > 0) {
    stats.reinitialised = reinitialise_dead_codes(settings.dead_after, latent, latent_positions,
                                                  latent_hw);
  }
  const int window = settings.dead_after > 0 ? settings.dead_after : 1;
  for (int64_t last : last_used_) stats.codes_live += step_ - last < window ? 1 : 0;
  return stats;
}

template <typename Real>
void VqTrainer<Real>::adamw(const VqStepSettings& s) {
  Real* p = model_->params().data();
  for (const VqParamSlot& slot : model_->param_slots()) {
    if (slot.count == 0) continue;
    // Decay on the conv kernels (4-d) alone, as is usual: not on norms, biases, the codebook.
    const float decay = slot.shape.size() == 4 ? s.weight_decay : 0.0f;
    const int64_t o = slot.offset;
    optimizer_ops_->adamw(slot.count, p + o, grads_.data() + o, m_.data() + o, v_.data() + o,
                          s.lr, s.beta1, s.beta2, s.eps, decay, step_ + 1);
  }
}

// Each code no position chose in the last `dead_after` steps gets the latent of a position of
// this batch (distinct positions, drawn by (seed, step)), and its AdamW moments start again.
template <typename Real>
int VqTrainer<Real>::reinitialise_dead_codes(int dead_after, const std::vector<Real>& latent,
                                             int64_t positions, int64_t hw) {
  const VqConfig& c = model_->config();
  const int K = c.codebook_size, D = c.code_dim;
  std::vector<int> dead;
  for (int e = 0; e < K; e++) {
    if (step_ - last_used_[e] >= dead_after) dead.push_back(e);
  }
  const int64_t n = std::min<int64_t>((int64_t)dead.size(), positions);
  if (n == 0) return 0;
  std::mt19937_64 rng(seed_ ^ (uint64_t(step_) * 0x9e3779b97f4a7c15ull));
  std::vector<int64_t> order((size_t)positions);
  for (int64_t i = 0; i < positions; i++) order[i] = i;
  const VqParamSlot& codes = model_->slot("quantize.embedding.weight");
  DeviceMemory& mem = model_->ops().memory();
  std::vector<Real> row((size_t)D), zeros((size_t)D, Real(0));
  for (int64_t j = 0; j < n; j++) {
    // A partial Fisher-Yates shuffle: order[j] is a position not drawn before.
    const int64_t pick = j + int64_t(rng() % uint64_t(positions - j));
    std::swap(order[j], order[pick]);
    const int64_t b = order[j] / hw, i = order[j] % hw;
    for (int d = 0; d < D; d++) row[d] = latent[(size_t)((b * D + d) * hw + i)];  // (B, D, hw)
    const int64_t at = codes.offset + int64_t(dead[j]) * D;
    mem.upload(model_->params().data() + at, row.data(), sizeof(Real) * D);
    mem.upload(m_.data() + at, zeros.data(), sizeof(Real) * D);
    mem.upload(v_.data() + at, zeros.data(), sizeof(Real) * D);
    last_used_[dead[j]] = step_;
  }
  model_->params_changed();
  return (int)n;
}

template <typename Real>
typename VqTrainer<Real>::State VqTrainer<Real>::state() const {
  State s;
  const int64_t n = model_->params().size();
  s.params.resize((size_t)n);
  s.m.resize((size_t)n);
  s.v.resize((size_t)n);
  model_->params().download(s.params.data(), n);
  m_.download(s.m.data(), n);
  v_.download(s.v.data(), n);
  s.last_used = last_used_;
  s.step = step_;
  return s;
}

template <typename Real>
void VqTrainer<Real>::set_state(const State& s) {
  const int64_t n = model_->params().size();
  CB_CHECK((int64_t)s.params.size() == n && (int64_t)s.m.size() == n && (int64_t)s.v.size() == n,
           "VQ trainer state: " + std::to_string(s.params.size()) +
               " parameter values where the model has " + std::to_string(n));
  CB_CHECK(s.last_used.size() == last_used_.size(),
           "VQ trainer state: usage of " + std::to_string(s.last_used.size()) +
               " codes where the codebook has " + std::to_string(last_used_.size()));
  CB_CHECK(s.step >= 0, "VQ trainer state: negative step count");
  for (int64_t last : s.last_used) {
    CB_CHECK(last >= 0 && last <= s.step, "VQ trainer state: a code's last use lies outside "
                                          "[0, step]");
  }
  model_->params().upload(s.params.data(), n);
  m_.upload(s.m.data(), n);
  v_.upload(s.v.data(), n);
  last_used_ = s.last_used;
  step_ = s.step;
  model_->params_changed();
}

template class VqTrainer<float>;
template class VqTrainer<double>;

}  // namespace cb
