// Small models and batches for the native model tests: a batch built the way the TypeScript
// side builds one (slot layout from blocks of a permuted order, fed positions), with random
// codes, targets and a random codebook, since these tests check the model's math, not the
// tokenizer.
#pragma once

#include <cstdint>
#include <vector>

#include "model/batch.h"
#include "model/config.h"
#include "model/model.h"
#include "sample/sampler.h"

namespace cbt {

// 2 layers, width 32, 2 heads, scales 1,2,4, vocab 11, latent 3, 3 classes.
cb::ModelConfig tiny_config(int rope_mix_layers);

// Blocks of each scale's slots: steps[k] blocks over s_k^2 tokens, sizes non-decreasing.
struct SlotPlan {
  int T = 0;
  std::vector<int32_t> block_of_slot;  // (T) block index, class slot 0
  std::vector<int32_t> visible_end;    // (T)
  std::vector<int32_t> block_start;    // (T) first slot of the slot's block
  std::vector<int32_t> prev_start;     // (T) first slot of the previous block of the same
                                       //     scale, -1 in a scale's first block
  std::vector<int32_t> prev_end;       // (T) its end (exclusive)
  int blocks = 0;
};
SlotPlan plan_slots(const cb::ModelConfig& c, const std::vector<int>& steps);

// A batch of B sequences over `plan`, with random orders, codes, targets and labels.
template <typename Real>
cb::Batch<Real> random_batch(const cb::ModelConfig& c, const SlotPlan& plan, int B, uint32_t seed);

// Overwrites every parameter with random values of a scale that keeps activations O(1) and makes
// every path (AdaLN gates included) carry gradient.
template <typename Real>
void randomize_params(cb::Model<Real>& model, uint32_t seed);

// The random (K, Dl) codebook of the tests (the same every call), and setting it on a model.
std::vector<float> test_codebook(const cb::ModelConfig& c);
template <typename Real>
void set_test_codebook(cb::Model<Real>& model);

// A sampling request for B images over the raster plan of `c` (sample/raster_plan.h) with
// `steps` blocks per scale: guidance from step 2, logits and entropies kept (the model needs
// its codebook: set_test_codebook).
cb::SampleRequest plan_request(const cb::ModelConfig& c, int steps, int B, float guidance);

}  // namespace cbt
