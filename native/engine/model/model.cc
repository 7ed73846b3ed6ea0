#include "model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <new>
#include <stdexcept>
#include <type_traits>

#include <unistd.h>

#include "../error.h"
#include "adaln.h"
#include "init.h"

namespace cb {
namespace {

// Model::params_version: every write of any model's parameters gets the next value.
uint64_t next_params_version() {
  static std::atomic<uint64_t> last{0};
  return ++last;
}

double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? double(pages) * double(page) : 1e300;
}

// The AdamW settings a step accepts (betas in [0, 1), eps > 0, lr and decay >= 0, all finite).
void check_adamw_settings(const AdamWSettings& s) {
  auto finite_at_least = [](float v, float lo) { return std::isfinite(v) && v >= lo; };
  CB_CHECK(finite_at_least(s.lr, 0), "step: lr must be a finite number >= 0, got " +
                                         format_number(s.lr));
  CB_CHECK(finite_at_least(s.beta1, 0) && s.beta1 < 1,
           "step: beta1 must be in [0, 1), got " + format_number(s.beta1));
  CB_CHECK(finite_at_least(s.beta2, 0) && s.beta2 < 1,
           "step: beta2 must be in [0, 1), got " + format_number(s.beta2));
  CB_CHECK(finite_at_least(s.eps, 0) && s.eps > 0,
           "step: eps must be a finite number > 0, got " + format_number(s.eps));
  CB_CHECK(finite_at_least(s.weight_decay, 0),
           "step: weightDecay must be a finite number >= 0, got " + format_number(s.weight_decay));
}

}  // namespace

template <typename Real>
Model<Real>::Model(const ModelConfig& config, std::unique_ptr<ModelOps<Real>> ops, uint64_t seed)
    : config_((config.validate(), config)), layout_(config_), ops_(std::move(ops)) {
  CB_CHECK(ops_ != nullptr, "model: no backend");
  DeviceMemory& memory = ops_->memory();
  const int64_t total = layout_.total();
  for (DeviceArray<Real>* a : {&params_, &grads_, &adam_m_, &adam_v_}) {
    a->bind(memory);
    a->resize(total);
  }
  shard_end_ = total;
  std::vector<Real> host(total, Real(0));
  init_params(config_, layout_, seed, host.data());
  params_.upload(host.data(), total);
  mark_params_written();
  P_ = view_params(config_, layout_, params_.data());
  grads_.zero();
  adam_m_.zero();
  adam_v_.zero();
  arena_.bind(memory);
  for (DeviceArray<int32_t>* a : {&labels_, &pos_p_, &pos_q_, &targets_, &visible_end_}) {
    a->bind(memory);
  }
  for (DeviceArray<int32_t>* a : {&code_index_, &u_index_, &v_index_}) a->bind(memory);
  u_learned_.bind(memory);
  v_learned_.bind(memory);
  codebook_.bind(memory);
  if constexpr (std::is_same<Real, float>::value) mixed_ = ops_->mixed();
  params16_.bind(memory);
  arena16_.bind(memory);
  if (mixed_ != nullptr) params16_.resize(total);
}

template <typename Real>
const bf16_t* Model<Real>::params16() {
  if (mixed_ == nullptr) return nullptr;
  if constexpr (std::is_same<Real, float>::value) {
    if (params16_stale_) {
      const int64_t total = layout_.total();
      mixed_->to_bf16(1, total, params_.data(), total, params16_.data(), total);
      params16_stale_ = false;
    }
  }
  return params16_.data();
}

template <typename Real>
void Model<Real>::linear(int64_t n, int in, int out, MatmulInput x, const LinearView<Real>& p,
                         Real* y) {
  if constexpr (std::is_same<Real, float>::value) {
    if (mixed_ != nullptr) {
      const bf16_t* w16 = half_of(p.w);
      if (x.half != nullptr) {
        mixed_->linear_mixed(n, in, out, x.half, w16, p.b, y);
      } else {
        mixed_->linear_mixed(n, in, out, x.full, w16, p.b, y);
      }
      return;
    }
  }
  ops_->linear(n, in, out, x.full, p.w, p.b, y);
}

template <typename Real>
void Model<Real>::linear_gelu(int64_t n, int in, int out, MatmulInput x,
                              const LinearView<Real>& p, Real* y, bf16_t* y16) {
  if constexpr (std::is_same<Real, float>::value) {
    if (mixed_ != nullptr) {
      const bf16_t* w16 = half_of(p.w);
      if (y16 != nullptr) {
        if (x.half != nullptr) return mixed_->linear_gelu_mixed(n, in, out, x.half, w16, p.b, y16);
        return mixed_->linear_gelu_mixed(n, in, out, x.full, w16, p.b, y16);
      }
      CB_CHECK(x.half == nullptr, "linear_gelu: a bf16 input with an fp32 output");
      return mixed_->linear_gelu_mixed(n, in, out, x.full, w16, p.b, y);
    }
  }
  ops_->linear_gelu(n, in, out, x.full, p.w, p.b, y);
}

template <typename Real>
void Model<Real>::linear_backward(int64_t n, int in, int out, MatmulInput x,
                                  const LinearView<Real>& p, const Real* dy, Real* dx) {
  Real* dw = grad_of(p.w);
  Real* db = grad_of(p.b);
  if constexpr (std::is_same<Real, float>::value) {
    if (mixed_ != nullptr) {
      const bf16_t* w16 = half_of(p.w);
      if (x.half != nullptr) {
        mixed_->linear_backward_mixed(n, in, out, x.half, w16, dy, dx, dw, db);
      } else {
        mixed_->linear_backward_mixed(n, in, out, x.full, w16, dy, dx, dw, db);
      }
      return;
    }
  }
  ops_->linear_backward(n, in, out, x.full, p.w, dy, dx, dw, db);
}

template <typename Real>
void Model<Real>::modulate_input(int B, int T, int c, const Real* xn, const Real* shift,
                                 const Real* scale, int ld, Real* y, bf16_t* y16) {
  if constexpr (std::is_same<Real, float>::value) {
    if (y16 != nullptr) return mixed_->modulate_bf16(B, T, c, xn, shift, scale, ld, y16);
  }
  ops_->modulate(B, T, c, xn, shift, scale, ld, y);
}

template <typename Real>
void Model<Real>::gelu_input(int64_t count, const Real* x, Real* y, bf16_t* y16) {
  if constexpr (std::is_same<Real, float>::value) {
    if (y16 != nullptr) return mixed_->gelu_bf16(count, x, y16);
  }
  ops_->gelu(count, x, y);
}

template <typename Real>
void Model<Real>::copy_input(int64_t rows, int cols, const Real* src, Real* dst, bf16_t* dst16,
                             int64_t dst_ld) {
  if constexpr (std::is_same<Real, float>::value) {
    if (dst16 != nullptr) return mixed_->to_bf16(rows, cols, src, cols, dst16, dst_ld);
  }
  ops_->copy_strided(rows, cols, src, cols, dst, dst_ld, false);
}

template <typename Real>
DeviceArray<Real>& Model<Real>::state(const std::string& which) {
  if (which == "params") return params_;
  if (which == "grads") return grads_;
  if (which == "adamM") return adam_m_;
  if (which == "adamV") return adam_v_;
  CB_FAIL("unknown state '" + which + "' (params, grads, adamM, adamV)");
}

template <typename Real>
void Model<Real>::mark_params_written() {
  params16_stale_ = true;
  params_version_ = next_params_version();
}

template <typename Real>
void Model<Real>::read_state(const std::string& which, Real* host, int64_t offset,
                             int64_t count) {
  CB_CHECK(offset >= 0 && count >= 0 && offset + count <= layout_.total(),
           "read_state: range outside the parameter buffer");
  state(which).download(host, count, offset - state_origin(which, offset, count));
}

template <typename Real>
int64_t Model<Real>::state_origin(const std::string& which, int64_t offset, int64_t count) const {
  if (which != "adamM" && which != "adamV") return 0;
  CB_CHECK(offset >= shard_begin_ && offset + count <= shard_end_,
           which + ": values [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
               ") are outside this process's optimizer shard [" + std::to_string(shard_begin_) +
               ", " + std::to_string(shard_end_) + ")");
  return shard_begin_;
}

template <typename Real>
void Model<Real>::set_optimizer_shard(int64_t begin, int64_t end) {
  CB_CHECK(0 <= begin && begin <= end && end <= layout_.total(),
           "optimizer shard [" + std::to_string(begin) + ", " + std::to_string(end) +
               ") is outside the parameter buffer");
  shard_begin_ = begin;
  shard_end_ = end;
  for (DeviceArray<Real>* a : {&adam_m_, &adam_v_}) {
    a->resize(end - begin);
    a->zero();
  }
}

template <typename Real>
void Model<Real>::write_state(const std::string& which, const Real* host, int64_t offset,
                              int64_t count) {
  CB_CHECK(which != "grads", "the gradients are read-only");
  CB_CHECK(offset >= 0 && count >= 0 && offset + count <= layout_.total(),
           "write_state: range outside the parameter buffer");
  state(which).upload(host, count, offset - state_origin(which, offset, count));
  if (which == "params") mark_params_written();
}

template <typename Real>
void Model<Real>::read_logits(Real* host) const {
  ops_->memory().download(host, act_.logits, size_t(act_.n) * config_.vocab * sizeof(Real));
}

template <typename Real>
void Model<Real>::read_input_latents(Real* host) const {
  ops_->memory().download(host, act_.u_latent,
                          size_t(2 * act_.n) * config_.latent_dim * sizeof(Real));
}

template <typename Real>
void Model<Real>::read_loss_rows(Real* host) const {
  ops_->memory().download(host, act_.loss_rows, size_t(act_.n) * sizeof(Real));
}

template <typename Real>
void Model<Real>::set_codebook(const float* values, int64_t count) {
  const int64_t want = int64_t(config_.vocab) * config_.latent_dim;
  CB_CHECK(count == want, "the codebook has " + std::to_string(count) + " values, the model "
           "needs " + std::to_string(config_.vocab) + " x " + std::to_string(config_.latent_dim));
  std::vector<Real> rows(values, values + count);  // (K, Dl) as Real
  codebook_.resize(count);
  codebook_.upload(rows.data(), count);
  has_codebook_ = true;
}

// The gathers of Eq. 1 for `b` (DESIGN.md "Sequence and inputs"), on the host. Slot i of
// sequence r at grid position p of scale k (pos_p = 2 + scale_offset(k) + p):
// - u: scale k-1's latents upsampled to s_k, at p: row B*scale_offset(k) + r*s_k^2 + p of the
//   u grids (scale-major, Activations::up_lat); learned (u_start) at the first scale and for
//   the class token;
// - v: the latent of the code at the fed position q (pos_q = 2 + scale_offset(k) + q):
//   codebook row codes[r, scale_offset(k) + q]; learned (v_start) for pos_q < 2.
// code_index lists every code of the batch scale-major: scale k's (B, s_k^2) at
// B*scale_offset(k).
template <typename Real>
void Model<Real>::build_input_indices(const Batch<Real>& b) {
  const ModelConfig& c = config_;
  const int64_t L = c.grid_positions(), n = int64_t(b.B) * b.T;
  const int scales = (int)c.scales.size();
  code_index_host_.resize(size_t(b.B) * L);
  for (int k = 0; k < scales; k++) {
    const int64_t off = c.scale_offset(k), count = int64_t(c.scales[k]) * c.scales[k];
    for (int r = 0; r < b.B; r++) {
      for (int64_t p = 0; p < count; p++) {
        code_index_host_[b.B * off + r * count + p] = b.codes[r * L + off + p];
      }
    }
  }
  u_index_host_.assign(n, 0);
  v_index_host_.assign(n, 0);
  u_learned_host_.assign(n, 1);
  v_learned_host_.assign(n, 1);
  const int64_t second = scales > 1 ? c.scale_offset(1) : L;
  for (int r = 0; r < b.B; r++) {
    for (int t = 0; t < b.T; t++) {
      const int64_t i = int64_t(r) * b.T + t;
      const int64_t g = int64_t(b.pos_p[i]) - 2, gq = int64_t(b.pos_q[i]) - 2;  // grid indices
      if (g >= second) {
        int k = 1;
        while (k + 1 < scales && g >= c.scale_offset(k + 1)) k++;
        const int64_t off = c.scale_offset(k), count = int64_t(c.scales[k]) * c.scales[k];
        u_index_host_[i] = int32_t(b.B * off + r * count + (g - off));
        u_learned_host_[i] = 0;
      }
      if (gq >= 0) {
        v_index_host_[i] = b.codes[r * L + gq];
        v_learned_host_[i] = 0;
      }
    }
  }
}

template <typename Real>
void Model<Real>::check_batch(const Batch<Real>& b) const {
  const ModelConfig& c = config_;
  CB_CHECK(b.B >= 1 && b.T >= 1, "batch: B and T must be at least 1");
  const size_t n = size_t(b.B) * b.T;
  auto sized = [&](size_t have, size_t want, const char* what) {
    CB_CHECK(have == want, std::string("batch: ") + what + " has " + std::to_string(have) +
                               " values, expected " + std::to_string(want));
  };
  sized(b.labels.size(), b.B, "labels");
  sized(b.pos_p.size(), n, "posP");
  sized(b.pos_q.size(), n, "posQ");
  sized(b.codes.size(), size_t(b.B) * c.grid_positions(), "codes");
  sized(b.targets.size(), n, "targets");
  sized(b.visible_end.size(), b.T, "visibleEnd");
  for (int32_t l : b.labels) {
    CB_CHECK(l >= 0 && l <= c.classes, "batch: label " + std::to_string(l) + " outside [0, " +
                                           std::to_string(c.classes) + "]");
  }
  const int64_t P = c.positions();
  for (size_t i = 0; i < n; i++) {
    CB_CHECK(b.pos_p[i] >= 0 && b.pos_p[i] < P && b.pos_q[i] >= 0 && b.pos_q[i] < P,
             "batch: position index outside [0, " + std::to_string(P) + ") at row " +
                 std::to_string(i));
    CB_CHECK(b.targets[i] < c.vocab, "batch: target " + std::to_string(b.targets[i]) +
                                         " outside the codebook of " + std::to_string(c.vocab));
  }
  for (size_t i = 0; i < b.codes.size(); i++) {
    CB_CHECK(b.codes[i] >= 0 && b.codes[i] < c.vocab,
             "batch: code " + std::to_string(b.codes[i]) + " at " + std::to_string(i) +
                 " outside the codebook of " + std::to_string(c.vocab));
  }
  for (int t = 0; t < b.T; t++) {
    CB_CHECK(b.visible_end[t] > t && b.visible_end[t] <= b.T,
             "batch: visibleEnd[" + std::to_string(t) + "] = " +
                 std::to_string(b.visible_end[t]) + " must be in (t, T]");
  }
}

template <typename Real>
void Model<Real>::ensure_arena(int B, int T_) {
  if (B == planned_B_ && T_ == planned_T_) return;
  // A new (B, T) re-plans the arena; it only grows, so alternating shapes do not reallocate.
  Activations<Real> counting;
  const bool mixed = mixed_ != nullptr;
  int64_t halves = 0;  // bf16 values
  const int64_t needed = counting.plan(config_, B, T_, nullptr, mixed, nullptr, &halves);
  if (needed > (int64_t)arena_.size() || halves > (int64_t)arena16_.size()) {
    const double bytes = double(needed) * sizeof(Real) + double(halves) * sizeof(bf16_t);
    auto refuse = [&](const std::string& why) {
      CB_FAIL("cannot allocate the activation arena: " + std::to_string((int64_t)bytes) +
              " bytes (" + std::to_string(bytes / double(1 << 30)) + " GiB) for batch " +
              std::to_string(B) + " x " + std::to_string(T_) + " slots (" + why +
              "); use a smaller --batch");
    };
    // Ask no more than the machine has: a request the kernel would overcommit could end in the
    // OOM killer instead of an error.
    if (bytes > physical_memory_bytes()) refuse("more than this machine's memory");
    planned_B_ = planned_T_ = 0;
    const int64_t values = std::max(needed, arena_.size());
    const int64_t values16 = std::max(halves, arena16_.size());
    arena_.resize(0);
    arena16_.resize(0);
    try {
      arena_.resize(values);
      arena16_.resize(values16);
    } catch (const std::bad_alloc&) {
      refuse("out of memory");
    } catch (const Error& e) {
      refuse(e.what());
    }
  }
  act_.plan(config_, B, T_, arena_.data(), mixed, arena16_.data(), &halves);
  planned_B_ = B;
  planned_T_ = T_;
}

template <typename Real>
ForwardResult Model<Real>::forward(const Batch<Real>& batch, bool for_backward) {
  check_batch(batch);
  CB_CHECK(has_codebook_, "forward: the model has no codebook (set_codebook / setCodebook: "
                          "the tokenizer's code vectors)");
  backward_ready_ = false;
  ensure_arena(batch.B, batch.T);
  const ModelConfig& c = config_;
  Activations<Real>& A = act_;
  ModelOps<Real>& op = *ops_;
  const int B = batch.B, Tn = batch.T, K = c.vocab;
  const int64_t n = A.n;

  // The batch into the backend's memory; the arrays only grow, so batches of alternating
  // shapes do not allocate on every call.
  auto put = [](auto& array, const auto& values) {
    array.reserve((int64_t)values.size());
    array.upload(values.data(), (int64_t)values.size());
  };
  put(labels_, batch.labels);
  put(pos_p_, batch.pos_p);
  put(pos_q_, batch.pos_q);
  put(targets_, batch.targets);
  put(visible_end_, batch.visible_end);
  build_input_indices(batch);
  put(code_index_, code_index_host_);
  put(u_index_, u_index_host_);
  put(v_index_, v_index_host_);
  put(u_learned_, u_learned_host_);
  put(v_learned_, v_learned_host_);

  // Eq. 1's latents (the sampler builds them with the same two calls, a scale at a time):
  // every scale's u grid from the previous scale's codes, then the u and v rows of each slot.
  const int Dl = c.latent_dim;
  for (size_t k = 1; k < c.scales.size(); k++) {
    const int64_t prev = B * c.scale_offset(int(k) - 1), here = B * c.scale_offset(int(k));
    upsample_codes(B, c.scales[k - 1], c.scales[k], code_index_.data() + prev,
                   A.code_lat + prev * Dl, A.up_lat + here * Dl);
  }
  // The first scale has no u grid (u_start replaces it); its rows hold the codes' own latents
  // so that every gathered row is finite.
  const int64_t first = int64_t(B) * c.scales[0] * c.scales[0];
  op.gather_rows(first, Dl, codebook(), code_index_.data(), A.up_lat);
  gather_latents(n, A.up_lat, u_index_.data(), v_index_.data(), A.u_latent);

  // The one call sequence (model_sequence.cc) over every slot, full blockwise attention,
  // every activation kept in the arena for the backward. The weights hold still until the next
  // step: the backend may read them repacked (cpu: once per step, not once per product piece).
  const FrozenWeights<Real> frozen(op, params_version_);
  condition(B, labels_.data(), A.c_emb, A.c_act, A.layers, A.head_ada);
  SlotRun<Real> run;
  run.rows = run.input_rows = B;
  run.t0 = 0;
  run.m = Tn;
  run.pos_p = pos_p_.data();
  run.pos_q = pos_q_.data();
  run.c_emb = A.c_emb;
  run.in.lat_in = A.u_latent;  // and v_latent after it
  run.in.u_learned = u_learned_.data();
  run.in.v_learned = v_learned_.data();
  run.in.lat_h1 = A.lat_h1;
  run.in.lat_g = A.lat_g;
  run.in.lat_g_16 = A.lat_g_16;
  run.in.lat_out = A.lat_out;
  run.in.pe_p = A.pe_p;
  run.in.pe_q = A.pe_q;
  run.in.concat = A.concat;
  run.in.concat_16 = A.concat_16;
  run.layers = &A.layers;
  run.x_final = A.x_final;
  run.head_ada = A.head_ada;
  run.xnf = A.xnf;
  run.meanf = A.meanf;
  run.rstdf = A.rstdf;
  run.hf = A.hf;
  run.hf_16 = A.hf_16;
  run.logits = A.logits;
  run.visible_end = visible_end_.data();
  run_slots(run);

  // The fused loss.
  counted_ = std::count_if(batch.targets.begin(), batch.targets.end(),
                           [](int32_t t) { return t >= 0; });
  CB_CHECK(counted_ > 0, "batch: no slot has a target");
  CB_CHECK(batch.loss_tokens == 0 || batch.loss_tokens >= counted_,
           "batch: loss_tokens " + std::to_string(batch.loss_tokens) + " is below the batch's " +
               std::to_string(counted_) + " counted slots");
  const int64_t mean_over = batch.loss_tokens > 0 ? batch.loss_tokens : counted_;
  op.softmax_cross_entropy(n, K, A.logits, targets_.data(), A.loss_rows,
                           for_backward ? A.dlogits : nullptr, Real(1) / Real(mean_over));
  loss_host_.resize(n);
  read_loss_rows(loss_host_.data());
  double total = 0;
  for (int64_t i = 0; i < n; i++) total += (double)loss_host_[i];
  backward_ready_ = for_backward;
  return ForwardResult{total / counted_, counted_};
}

template <typename Real>
void Model<Real>::backward() {
  CB_CHECK(backward_ready_, "backward() needs a forward with backward: true just before it");
  backward_ready_ = false;
  const ModelConfig& c = config_;
  Activations<Real>& A = act_;
  ModelOps<Real>& op = *ops_;
  const int B = A.B, Tn = A.T, H = c.heads, hd = c.head_dim();
  const int W = c.width, F = c.hidden(), K = c.vocab, Dl = c.latent_dim;
  const int64_t n = A.n;

  // The mirror of run_slots (model_sequence.cc) and condition, last op first.
  // Head. dada holds the head's (B, 2W) shift/scale gradient here.
  const HeadAda<const Real*> head{A.head_ada, W};
  const HeadAda<Real*> dhead{A.dada, W};
  linear_backward(n, W, K, {A.hf, A.hf_16}, P_.head, A.dlogits, A.dh);
  op.zero_strided(B, head.ld(), A.dada, head.ld());
  op.modulate_backward(B, Tn, W, A.xnf, head.scale(), head.ld(), A.dh, A.dtmp, dhead.shift(),
                       dhead.scale());
  op.layernorm_backward(n, W, A.x_final, A.meanf, A.rstdf, A.dtmp, A.dx);
  linear_backward(B, W, head.ld(), {A.c_act, nullptr}, P_.head_ada, A.dada, A.dc_act);
  // The layout (param_layout.cc) is: tensors before the layers, layer 0 .. depth-1, the head.
  // A layer's range ends where the next one (or the head) starts.
  auto layer_begin = [&](int l) {
    return l < c.depth ? layout_.offset(layer_param(l, "ada.w")) : layout_.offset("head_ada.w");
  };
  if (gradients_ready_) gradients_ready_(layer_begin(c.depth), layout_.total());

  for (int l = c.depth - 1; l >= 0; l--) {
    LayerActivations<Real>& L = A.layers[l];
    const LayerView<Real>& p = P_.layers[l];
    const LayerAda<const Real*> ada{L.ada, W};
    const LayerAda<Real*> dada{A.dada, W};
    const int ld = ada.ld();
    op.zero_strided(B, ld, A.dada, ld);
    // MLP branch: x_out = x_mid + gate2 * f2; A.dx holds d x_out and becomes d x_mid.
    op.gated_residual_backward(B, Tn, W, A.dx, ada.gate2(), ld, L.f2, A.dh, dada.gate2());
    linear_backward(n, F, W, {L.g, L.g_16}, p.fc2, A.dh, A.dF1);
    op.gelu_backward(n * F, L.f1, A.dF1, A.dF2);
    linear_backward(n, W, F, {L.h2, L.h2_16}, p.fc1, A.dF2, A.dh);
    op.modulate_backward(B, Tn, W, L.xn2, ada.scale2(), ld, A.dh, A.dtmp, dada.shift2(),
                         dada.scale2());
    op.layernorm_backward(n, W, L.x_mid, L.mean2, L.rstd2, A.dtmp, A.dh);
    op.add_inplace(n * W, A.dx, A.dh);
    // Attention branch: x_mid = x_in + gate1 * ao; A.dx becomes d x_in.
    op.gated_residual_backward(B, Tn, W, A.dx, ada.gate1(), ld, L.ao, A.dh, dada.gate1());
    linear_backward(n, W, W, {L.att, nullptr}, p.attn_out, A.dh, A.datt);
    op.attention_backward(B, Tn, H, hd, L.qr, L.kr, L.v, visible_end_.data(), L.att, L.lse,
                          A.datt, A.dq, A.dk, A.dv);
    Real* dmix = p.rope_mix != nullptr ? grad_of(p.rope_mix) : nullptr;
    op.rope_backward(n, H, hd, L.qkv, 3 * W, P_.rope_angles, pos_p_.data(), pos_p_.data(),
                     nullptr, A.dq, A.dqkv, grad_of(P_.rope_angles), nullptr);
    op.rope_backward(n, H, hd, L.qkv + W, 3 * W, P_.rope_angles, pos_p_.data(), pos_q_.data(),
                     p.rope_mix, A.dk, A.dqkv + W, grad_of(P_.rope_angles), dmix);
    op.copy_strided(n, W, A.dv, W, A.dqkv + 2 * W, 3 * W, false);
    linear_backward(n, W, 3 * W, {L.h1, L.h1_16}, p.qkv, A.dqkv, A.dh);
    op.modulate_backward(B, Tn, W, L.xn1, ada.scale1(), ld, A.dh, A.dtmp, dada.shift1(),
                         dada.scale1());
    op.layernorm_backward(n, W, L.x_in, L.mean1, L.rstd1, A.dtmp, A.dh);
    op.add_inplace(n * W, A.dx, A.dh);
    // This layer's AdaLN projection adds to the gradient of SiLU(class embedding).
    linear_backward(B, W, ld, {A.c_act, nullptr}, p.ada, A.dada, A.dc_tmp);
    op.add_inplace(int64_t(B) * W, A.dc_act, A.dc_tmp);
    if (gradients_ready_) gradients_ready_(layer_begin(l), layer_begin(l + 1));
  }

  // Class embedding: through SiLU into every AdaLN, and directly as the class token's input.
  op.silu_backward(int64_t(B) * W, A.c_emb, A.dc_act, A.dc_emb);
  op.copy_strided(B, W, A.dx, int64_t(Tn) * W, A.dc_emb, W, true);
  op.zero_strided(B, W, A.dx, int64_t(Tn) * W);
  op.scatter_add_rows(B, W, A.dc_emb, labels_.data(), grad_of(P_.class_emb));

  // Eq. 1 inputs.
  linear_backward(n, 4 * W, W, {A.concat, A.concat_16}, P_.in_proj, A.dx, A.dconcat);
  op.copy_strided(n, W, A.dconcat, 4 * W, A.dlat, W, false);
  op.copy_strided(n, W, A.dconcat + W, 4 * W, A.dlat + n * W, W, false);
  op.copy_strided(n, W, A.dconcat + 2 * W, 4 * W, A.dpe, W, false);
  op.scatter_add_rows(n, W, A.dpe, pos_p_.data(), grad_of(P_.pos_emb));
  op.copy_strided(n, W, A.dconcat + 3 * W, 4 * W, A.dpe, W, false);
  op.scatter_add_rows(n, W, A.dpe, pos_q_.data(), grad_of(P_.pos_emb));
  op.fill_masked_rows_backward(n, W, u_learned_.data(), A.dlat, grad_of(P_.u_start));
  op.fill_masked_rows_backward(n, W, v_learned_.data(), A.dlat + n * W, grad_of(P_.v_start));
  linear_backward(2 * n, W, W, {A.lat_g, A.lat_g_16}, P_.latent_fc2, A.dlat, A.dlat_g);
  op.gelu_backward(2 * n * W, A.lat_h1, A.dlat_g, A.dlat);
  linear_backward(2 * n, Dl, W, {A.u_latent, nullptr}, P_.latent_fc1, A.dlat, nullptr);
  if (gradients_ready_) gradients_ready_(0, layer_begin(0));
}

template <typename Real>
void Model<Real>::zero_grad() {
  grads_.zero();
}

template <typename Real>
void Model<Real>::step(const AdamWSettings& s) {
  check_adamw_settings(s);
  step_++;
  params_version_ = next_params_version();  // the bf16 copy is written along with params_
  if (mixed_ != nullptr) params16();  // fresh before the step, so in step with params_ after it
  // Each tensor's part inside the optimizer shard (all of it without sharding); the moments
  // hold the shard alone, from shard_begin_.
  for (const ParamEntry& e : layout_.entries()) {
    const int64_t begin = std::max(e.offset, shard_begin_);
    const int64_t end = std::min(e.offset + e.size, shard_end_);
    if (begin >= end) continue;
    const int64_t count = end - begin, moment = begin - shard_begin_;
    if constexpr (std::is_same<Real, float>::value) {
      if (mixed_ != nullptr) {
        mixed_->adamw_mixed(count, params_.data() + begin, params16_.data() + begin,
                            grads_.data() + begin, adam_m_.data() + moment,
                            adam_v_.data() + moment, s.lr, s.beta1, s.beta2, s.eps,
                            e.decay ? s.weight_decay : 0.0f, step_);
        continue;
      }
    }
    ops_->adamw(count, params_.data() + begin, grads_.data() + begin, adam_m_.data() + moment,
                adam_v_.data() + moment, s.lr, s.beta1, s.beta2, s.eps,
                e.decay ? s.weight_decay : 0.0f, step_);
  }
}

template class Model<float>;
template class Model<double>;

}  // namespace cb
