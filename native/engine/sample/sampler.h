// The KV-cached blockwise sampler (DESIGN.md "Sampling"; paper Sec. 3): one forward per step
// over the slots of one block, against a per-layer cache of the keys and values of every
// earlier slot, then guidance, temperature, top-k, top-p and a multinomial draw per slot. The
// whole loop runs here, over the model's op backend, with no round trip to the caller per step
// (a callback reports progress).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "../model/model.h"
#include "token_sampling.h"

namespace cb {

// The plan and the images of one call. T = slots of a sequence (1 + sum s^2); block 0 is the
// class token (slot 0), step s samples block s + 1.
struct SampleRequest {
  std::vector<int32_t> labels;       // (B) class of each image, in [0, classes)
  std::vector<int32_t> image_index;  // (B) key of each image's random numbers
  std::vector<int32_t> block_start;  // (blocks) first slot of each block
  std::vector<int32_t> block_end;    // (blocks) end slot of each block
  std::vector<int32_t> block_scale;  // (blocks) scale index; -1 for block 0
  std::vector<int32_t> pos_of;       // (T) shared or (B*T): grid position y*s+x of each slot
  std::vector<int32_t> prev_pos_of;  // like pos_of: paired position in the previous block, or -1
  float guidance = 0.0f;             // CFG weight w; 0 runs no unconditional rows
  int guidance_start = 0;            // w = 0 for steps < guidance_start
  TokenSampling sampling;
  bool want_entropy = false, want_step_codes = false, want_logits = false;
};

struct SampleResult {
  std::vector<int32_t> codes;       // (B*T) slot order; -1 for the class slot
  std::vector<float> entropy;       // (B*T) bits, when asked for
  std::vector<int32_t> step_codes;  // (steps*B*T) codes after each step, when asked for
  std::vector<float> logits;        // (B*T*K) conditional logits, when asked for
  int forward_passes = 0;
};

// The float buffers of a sampling call (KV cache, activations of a step), kept between calls by
// the caller so that repeated calls reuse memory already touched. Values of the model's scalar.
// On a backend that records op sequences (cuda: CUDA graphs, model/op_recorder.h) it also keeps
// the recording of each distinct step, so a repeated call replays every step with one launch.
template <typename Real>
class SampleWorkspace {
 public:
  // Recording on (the default) or off (every op launched as it is; for the tests).
  void set_recording(bool on);
  // The recorder for `ops`, or null when recording is off or the backend has none.
  OpRecorder* recorder(ModelOps<Real>& ops);

  // At least `count` values in `memory` (the model backend's); grows (never shrinks or clears)
  // the arena. Throws cb::Error naming the size when the memory is not there.
  Real* reserve(DeviceMemory& memory, int64_t count);
  // The same for the integer inputs of the ops, their flags and the drawn entropies.
  int32_t* reserve_ints(DeviceMemory& memory, int64_t count);
  uint8_t* reserve_flags(DeviceMemory& memory, int64_t count);
  float* reserve_floats(DeviceMemory& memory, int64_t count);
  // The bf16 matmul inputs of a step, where the model keeps them as bf16 (mixed precision on a
  // backend with MixedPrecisionOps::bf16_activations()).
  bf16_t* reserve_halves(DeviceMemory& memory, int64_t count);

 private:
  DeviceMemory* memory_ = nullptr;  // the memory the arrays below live in
  void use(DeviceMemory& memory);
  void forget_recordings();
  DeviceArray<Real> arena_;
  DeviceArray<int32_t> ints_;
  DeviceArray<uint8_t> flags_;
  DeviceArray<float> floats_;
  DeviceArray<bf16_t> halves_;
  bool recording_ = true;
  const ModelOps<Real>* recorder_ops_ = nullptr;  // the backend recorder_ belongs to
  std::unique_ptr<OpRecorder> recorder_;          // its recordings name the arrays above
};

// Called after each step with (step, steps).
using StepCallback = std::function<void(int, int)>;

// Samples request.labels.size() images with `model`'s parameters, codebook and backend (the
// model's one call sequence, Model::run_slots, once per step). Throws cb::Error for an
// inconsistent request.
template <typename Real>
SampleResult sample_images(Model<Real>& model, const SampleRequest& request,
                           SampleWorkspace<Real>& workspace, const StepCallback& on_step);

}  // namespace cb
