// The progressive-checkerboard transformer (DESIGN.md, Sequence and inputs; Transformer):
// parameters in one flat buffer described by a ParamLayout (typed views in param_views.h),
// activations in one arena, and the forward as ONE call sequence over a ModelOps<Real> backend
// (run_slots, model_sequence.cc): Eq. 1, the layers and the head over a range of slots, with
// full blockwise attention for training and evaluation (forward/backward here) or a KV cache
// for the sampler (sample/sampler.cc). The backward is that sequence's mirror.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "activations.h"
#include "batch.h"
#include "config.h"
#include "model_ops.h"
#include "param_layout.h"
#include "param_views.h"
#include "slot_run.h"

namespace cb {

struct AdamWSettings {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.01f;
};

struct ForwardResult {
  double loss = 0;     // mean cross-entropy (nats) over counted slots
  int64_t tokens = 0;  // counted slots (target >= 0)
};

template <typename Real>
class Model {
 public:
  // Takes ownership of the backend. Parameters are initialised from `seed`.
  Model(const ModelConfig& config, std::unique_ptr<ModelOps<Real>> ops, uint64_t seed);

  const ModelConfig& config() const { return config_; }
  const ParamLayout& layout() const { return layout_; }
  ModelOps<Real>& ops() { return *ops_; }

  // Flat buffers of layout().total() values, in the backend's memory (ops().memory(): host
  // memory for cpu-ref and cpu, GPU memory for cuda). Read and write them from the host with
  // read_state / write_state.
  // The non-const one counts as a write (the caller may write through it): the bf16 copy and
  // any backend's packed weights are made again before their next use.
  Real* params() {
    mark_params_written();
    return params_.data();
  }
  const Real* params() const { return params_.data(); }
  // Names the parameters' contents: a new value after every write (write_state, step,
  // params()), unique across models (ModelOps::begin_frozen_weights).
  uint64_t params_version() const { return params_version_; }
  Real* grads() { return grads_.data(); }
  // Mixed precision (ops().mixed() of a float model, mixed_ops.h): the bf16 copy of params(),
  // refreshed here when params were written since; null without mixed precision.
  bool mixed_precision() const { return mixed_ != nullptr; }
  const bf16_t* params16();
  // Copies `count` values at `offset` of a flat buffer ("params", "grads", "adamM", "adamV")
  // to or from the host; write_state refuses "grads".
  void read_state(const std::string& which, Real* host, int64_t offset, int64_t count);
  void write_state(const std::string& which, const Real* host, int64_t offset, int64_t count);
  // The tokenizer's code vectors (K, Dl): the latents Eq. 1 feeds as u and v. Not a parameter
  // (never trained or saved with the weights; the caller takes them from the run's tokenizer).
  // forward() and the sampler need them. `count` must be K * Dl.
  void set_codebook(const float* values, int64_t count);
  const Real* codebook() const { return has_codebook_ ? codebook_.data() : nullptr; }
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t t) { step_ = t; }

  // Runs the forward over `batch` (copied in): the Eq. 1 inputs from its index arrays and the
  // codebook (set_codebook first), then run_slots with full attention. With `for_backward`, the
  // fused loss also writes dlogits so that backward() can follow. Throws cb::Error for a
  // malformed batch or a missing codebook.
  ForwardResult forward(const Batch<Real>& batch, bool for_backward);
  // Accumulates (+=) into grads() the gradient of the last forward's mean loss.
  void backward();
  // Called by backward() each time a range [begin, end) of grads() is final: the head's
  // tensors first, then each layer's from the last to the first, then the tensors before the
  // layers (embeddings, Eq. 1). The ranges are contiguous and cover the buffer once; on a GPU
  // backend a range is final once the work queued so far has run. Empty: no calls. Data
  // parallel training starts each range's all-reduce there, while the backward goes on.
  using GradientsReady = std::function<void(int64_t begin, int64_t end)>;
  void set_gradients_ready(GradientsReady hook) { gradients_ready_ = std::move(hook); }
  void zero_grad();
  // One AdamW step over every tensor (decay only where the layout says so), or only over the
  // optimizer shard's values (set_optimizer_shard); increments the step.
  void step(const AdamWSettings& s);
  // Optimizer-state sharding (ZeRO-1, dist/data_parallel.h): this process keeps the AdamW
  // moments of the flat values [begin, end) alone, and step() updates only those parameters.
  // The moments are reset to zero; read_state/write_state of "adamM"/"adamV" then take ranges
  // inside the shard (offsets stay those of the whole buffer). [0, total) undoes it.
  void set_optimizer_shard(int64_t begin, int64_t end);
  int64_t shard_begin() const { return shard_begin_; }
  int64_t shard_end() const { return shard_end_; }

  // The last forward's outputs, in the backend's memory; read_* copy them to the host.
  const Real* logits() const { return act_.logits; }          // (B*T, K)
  void read_logits(Real* host) const;                         // (B*T, K)
  void read_loss_rows(Real* host) const;                      // (B*T)
  // The Eq. 1 latents the last forward built: u rows (B*T, Dl), then v rows (B*T, Dl).
  void read_input_latents(Real* host) const;
  int last_batch() const { return act_.B; }
  int last_slots() const { return act_.T; }
  // Sizes the arena for (B, T) as a forward would; for tests of the allocation limits.
  void ensure_arena_for_test(int B, int T) { ensure_arena(B, T); }

  // ---- the call sequence (model_sequence.cc), shared by forward() and the sampler ----------
  // Conditioning of `rows` sequences: c_emb (rows, W) = class_emb[labels], c_act = SiLU(c_emb),
  // and from it every layer's AdaLN rows (layers[l].ada, (rows, 6W)) and the head's
  // head_ada (rows, 2W).
  void condition(int rows, const int32_t* labels, Real* c_emb, Real* c_act,
                 const std::vector<LayerActivations<Real>>& layers, Real* head_ada);
  // Eq. 1, the layers and the head over run's slots (slot_run.h), up to run.logits.
  void run_slots(const SlotRun<Real>& run);
  // Eq. 1's latents, the one place they are built (training and sampling alike):
  // u grids of a scale: lat (B, s_in^2, Dl) = codebook[codes] of B grids of the previous scale,
  // up (B, s_out^2, Dl) = lat upsampled bilinearly (half-pixel centres).
  void upsample_codes(int B, int s_in, int s_out, const int32_t* codes, Real* lat, Real* up);
  // lat_in (2n, Dl): u rows u_table[u_index[i]], then v rows codebook[v_index[i]].
  void gather_latents(int64_t n, const Real* u_table, const int32_t* u_index,
                      const int32_t* v_index, Real* lat_in);

 private:
  // A matmul input: the Real activation, or under mixed precision its bf16 copy (the other
  // is null).
  struct MatmulInput {
    const Real* full;
    const bf16_t* half;
  };
  // ModelOps::linear / linear_backward on the layer p of params() (and its gradients in
  // grads() for the backward), through the mixed-precision ops and the bf16 weights when the
  // model has them.
  void linear(int64_t n, int in, int out, MatmulInput x, const LinearView<Real>& p, Real* y);
  // y = gelu(linear(x)) (ModelOps::linear_gelu): for runs that keep no pre-activation. With y16
  // (mixed precision, where MixedPrecisionOps::bf16_activations()) the result is written
  // rounded to bf16 there instead of y.
  void linear_gelu(int64_t n, int in, int out, MatmulInput x, const LinearView<Real>& p, Real* y,
                   bf16_t* y16);
  void linear_backward(int64_t n, int in, int out, MatmulInput x, const LinearView<Real>& p,
                       const Real* dy, Real* dx);
  // Producers of matmul inputs: y or, under mixed precision, y16.
  void modulate_input(int B, int T, int c, const Real* xn, const Real* shift, const Real* scale,
                      int ld, Real* y, bf16_t* y16);
  void gelu_input(int64_t count, const Real* x, Real* y, bf16_t* y16);
  void copy_input(int64_t rows, int cols, const Real* src, Real* dst, bf16_t* dst16,
                  int64_t dst_ld);

  void check_batch(const Batch<Real>& batch) const;
  void build_input_indices(const Batch<Real>& batch);
  void ensure_arena(int B, int T);
  // The gradient (or the bf16 copy) of the parameter at p: the same offset in grads_
  // (params16_).
  Real* grad_of(const Real* p) { return grads_.data() + (p - params_.data()); }
  const bf16_t* half_of(const Real* p) { return params16() + (p - params_.data()); }

  DeviceArray<Real>& state(const std::string& which);
  // Where a state's array starts in whole-buffer offsets (the shard's start for the moments),
  // after checking that [offset, offset + count) lies inside it.
  int64_t state_origin(const std::string& which, int64_t offset, int64_t count) const;
  void mark_params_written();

  ModelConfig config_;
  ParamLayout layout_;
  std::unique_ptr<ModelOps<Real>> ops_;
  DeviceArray<Real> params_, grads_, adam_m_, adam_v_;
  ParamView<Real> P_;  // every tensor of params_
  int64_t step_ = 0;
  int64_t shard_begin_ = 0, shard_end_ = 0;  // the optimizer shard; [0, total) without sharding
  MixedPrecisionOps* mixed_ = nullptr;  // ops_->mixed() for a float model
  DeviceArray<bf16_t> params16_;        // (total) bf16 copy of params_ under mixed precision
  bool params16_stale_ = true;          // params_ were written since params16_ was
  uint64_t params_version_ = 0;         // params_version()

  DeviceArray<Real> arena_;
  DeviceArray<bf16_t> arena16_;  // the bf16 activations under mixed precision
  Activations<Real> act_;
  int planned_B_ = 0, planned_T_ = 0;
  // Integer inputs of the last forward in the backend's memory, kept for the backward.
  DeviceArray<int32_t> labels_, pos_p_, pos_q_, targets_, visible_end_;
  DeviceArray<int32_t> code_index_, u_index_, v_index_;  // Eq. 1's gathers (Model::forward)
  DeviceArray<uint8_t> u_learned_, v_learned_;
  std::vector<int32_t> code_index_host_, u_index_host_, v_index_host_;
  std::vector<uint8_t> u_learned_host_, v_learned_host_;
  DeviceArray<Real> codebook_;  // (K, Dl)
  bool has_codebook_ = false;
  std::vector<Real> loss_host_;  // (B*T) the last loss rows, summed on the host
  int64_t counted_ = 0;
  bool backward_ready_ = false;
  GradientsReady gradients_ready_;
};

}  // namespace cb
