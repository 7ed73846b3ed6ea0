#include "model_fixture.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "compare.h"
#include "sample/raster_plan.h"

namespace cbt {

cb::ModelConfig tiny_config(int rope_mix_layers) {
  cb::ModelConfig c;
  c.vocab = 11;
  c.latent_dim = 3;
  c.classes = 3;
  c.depth = 2;
  c.width = 32;
  c.heads = 2;
  c.mlp_ratio = 4;
  c.scales = {1, 2, 4};
  c.rope_mix_layers = rope_mix_layers;
  return c;
}

SlotPlan plan_slots(const cb::ModelConfig& c, const std::vector<int>& steps) {
  SlotPlan p;
  p.T = (int)c.sequence_length();
  p.block_of_slot.assign(p.T, 0);
  p.visible_end.assign(p.T, 1);
  p.block_start.assign(p.T, 0);
  p.prev_start.assign(p.T, -1);
  p.prev_end.assign(p.T, -1);
  int slot = 1, block = 1;
  std::vector<int> block_end;  // exclusive end slot per block (block 0: the class token)
  block_end.push_back(1);
  for (size_t k = 0; k < c.scales.size(); k++) {
    const int count = c.scales[k] * c.scales[k];
    const int P = std::min(steps[k], count);
    int prev_begin = -1, prev_finish = -1;
    for (int i = 0; i < P; i++, block++) {
      // Sizes differ by at most one and the larger ones come last.
      const int size = count / P + (i >= P - count % P ? 1 : 0);
      const int begin = slot;
      for (int j = 0; j < size; j++, slot++) {
        p.block_of_slot[slot] = block;
        p.block_start[slot] = begin;
        p.prev_start[slot] = prev_begin;
        p.prev_end[slot] = prev_finish;
      }
      block_end.push_back(slot);
      prev_begin = begin;
      prev_finish = slot;
    }
  }
  for (int t = 0; t < p.T; t++) p.visible_end[t] = block_end[p.block_of_slot[t]];
  p.blocks = block;
  return p;
}

template <typename Real>
cb::Batch<Real> random_batch(const cb::ModelConfig& c, const SlotPlan& plan, int B,
                             uint32_t seed) {
  std::mt19937 rng(seed);
  const int T = plan.T;
  const int64_t L = c.grid_positions();
  cb::Batch<Real> b;
  b.B = B;
  b.T = T;
  const size_t n = size_t(B) * T;
  b.labels.resize(B);
  b.pos_p.assign(n, 0);
  b.pos_q.assign(n, 0);
  b.codes.resize(size_t(B) * L);
  for (int32_t& code : b.codes) code = (int32_t)(rng() % c.vocab);
  b.targets.assign(n, -1);
  b.visible_end = plan.visible_end;
  for (int s = 0; s < B; s++) {
    b.labels[s] = (int32_t)(rng() % (c.classes + 1));  // the null class too
    int slot = 1;
    for (size_t k = 0; k < c.scales.size(); k++) {
      const int count = c.scales[k] * c.scales[k];
      std::vector<int> order(count);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (int j = 0; j < count; j++, slot++) {
        const size_t row = size_t(s) * T + slot;
        b.pos_p[row] = (int32_t)(2 + c.scale_offset((int)k) + order[j]);
        b.targets[row] = (int32_t)(rng() % c.vocab);
        const bool first_block = plan.prev_start[slot] < 0;
        if (first_block) {
          b.pos_q[row] = 1;
        } else {
          // The fed token: token (j mod |b_{i-1}|) of the previous block.
          const int j_in_block = slot - plan.block_start[slot];
          const int prev_size = plan.prev_end[slot] - plan.prev_start[slot];
          const int q_slot = plan.prev_start[slot] + j_in_block % prev_size;
          b.pos_q[row] = b.pos_p[size_t(s) * T + q_slot];
        }
      }
    }
  }
  return b;
}

template <typename Real>
void randomize_params(cb::Model<Real>& model, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  // Made on the host and written through write_state: a GPU model's params() is device memory
  // (writing it from here crashed the first H200 run).
  std::vector<Real> host(static_cast<size_t>(model.layout().total()));
  for (const cb::ParamEntry& e : model.layout().entries()) {
    Real* p = host.data() + e.offset;
    const double fan_in = e.shape.size() == 2 ? (double)e.shape[1] : 1.0;
    double scale = e.shape.size() == 2 ? 0.8 / std::sqrt(fan_in) : 0.2;
    if (e.name == "rope_angles") scale = 2.0;
    if (e.name.find("rope_mix") != std::string::npos) scale = 1.0;
    if (e.name == "class_emb" || e.name == "pos_emb") scale = 0.5;
    for (int64_t i = 0; i < e.size; i++) p[i] = Real(scale * normal(rng));
  }
  model.write_state("params", host.data(), 0, model.layout().total());
}

std::vector<float> test_codebook(const cb::ModelConfig& c) {
  return cbt::random_uniform(size_t(c.vocab) * c.latent_dim, 31);
}

template <typename Real>
void set_test_codebook(cb::Model<Real>& model) {
  const std::vector<float> rows = test_codebook(model.config());
  model.set_codebook(rows.data(), (int64_t)rows.size());
}

template cb::Batch<float> random_batch<float>(const cb::ModelConfig&, const SlotPlan&, int, uint32_t);
template cb::Batch<double> random_batch<double>(const cb::ModelConfig&, const SlotPlan&, int, uint32_t);
template void randomize_params<float>(cb::Model<float>&, uint32_t);
template void randomize_params<double>(cb::Model<double>&, uint32_t);
template void set_test_codebook<float>(cb::Model<float>&);
template void set_test_codebook<double>(cb::Model<double>&);

cb::SampleRequest plan_request(const cb::ModelConfig& c, int steps, int B, float guidance) {
  cb::SampleRequest r;
  for (int i = 0; i < B; i++) {
    r.labels.push_back(i % c.classes);
    r.image_index.push_back(i);
  }
  cb::set_raster_plan(c, steps, r);
  r.guidance = guidance;
  r.guidance_start = 2;
  r.sampling.seed = 1234;
  r.want_logits = true;
  r.want_entropy = true;
  return r;
}

}  // namespace cbt
