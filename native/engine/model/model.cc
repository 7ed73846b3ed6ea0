#include "model.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <stdexcept>
#include <type_traits>

#include <unistd.h>

#include "../error.h"
#include "init.h"

namespace cb {
namespace {

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
  std::vector<Real> host(total, Real(0));
  init_params(config_, layout_, seed, host.data());
  params_.upload(host.data(), total);
  grads_.zero();
  adam_m_.zero();
  adam_v_.zero();
  arena_.bind(memory);
  for (DeviceArray<int32_t>* a : {&labels_, &pos_p_, &pos_q_, &targets_, &visible_end_}) {
    a->bind(memory);
  }
  u_learned_.bind(memory);
  v_learned_.bind(memory);
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
void Model<Real>::linear(int64_t n, int in, int out, MatmulInput x, const std::string& w,
                         const std::string& b, Real* y) {
  if constexpr (std::is_same<Real, float>::value) {
    if (mixed_ != nullptr) {
      const bf16_t* w16 = params16() + layout_.offset(w);
      if (x.half != nullptr) {
        mixed_->linear_mixed(n, in, out, x.half, w16, param(b), y);
      } else {
        mixed_->linear_mixed(n, in, out, x.full, w16, param(b), y);
      }
      return;
    }
  }
  ops_->linear(n, in, out, x.full, param(w), param(b), y);
}

template <typename Real>
void Model<Real>::linear_backward(int64_t n, int in, int out, MatmulInput x,
                                  const std::string& w, const std::string& b, const Real* dy,
                                  Real* dx) {
  if constexpr (std::is_same<Real, float>::value) {
    if (mixed_ != nullptr) {
      const bf16_t* w16 = params16() + layout_.offset(w);
      if (x.half != nullptr) {
        mixed_->linear_backward_mixed(n, in, out, x.half, w16, dy, dx, grad(w), grad(b));
      } else {
        mixed_->linear_backward_mixed(n, in, out, x.full, w16, dy, dx, grad(w), grad(b));
      }
      return;
    }
  }
  ops_->linear_backward(n, in, out, x.full, param(w), dy, dx, grad(w), grad(b));
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
void Model<Real>::read_state(const std::string& which, Real* host, int64_t offset,
                             int64_t count) {
  CB_CHECK(offset >= 0 && count >= 0 && offset + count <= layout_.total(),
           "read_state: range outside the parameter buffer");
  state(which).download(host, count, offset);
}

template <typename Real>
void Model<Real>::write_state(const std::string& which, const Real* host, int64_t offset,
                              int64_t count) {
  CB_CHECK(which != "grads", "the gradients are read-only");
  CB_CHECK(offset >= 0 && count >= 0 && offset + count <= layout_.total(),
           "write_state: range outside the parameter buffer");
  state(which).upload(host, count, offset);
  if (which == "params") params16_stale_ = true;
}

template <typename Real>
void Model<Real>::read_logits(Real* host) const {
  ops_->memory().download(host, act_.logits, size_t(act_.n) * config_.vocab * sizeof(Real));
}

template <typename Real>
void Model<Real>::read_loss_rows(Real* host) const {
  ops_->memory().download(host, act_.loss_rows, size_t(act_.n) * sizeof(Real));
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
  sized(b.u_latent.size(), n * c.latent_dim, "uLatent");
  sized(b.v_latent.size(), n * c.latent_dim, "vLatent");
  sized(b.u_learned.size(), n, "uLearned");
  sized(b.v_learned.size(), n, "vLearned");
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
  backward_ready_ = false;
  ensure_arena(batch.B, batch.T);
  const ModelConfig& c = config_;
  Activations<Real>& A = act_;
  ModelOps<Real>& op = *ops_;
  const int B = batch.B, Tn = batch.T, H = c.heads, hd = c.head_dim();
  const int W = c.width, F = c.hidden(), K = c.vocab, Dl = c.latent_dim;
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
  put(u_learned_, batch.u_learned);
  put(v_learned_, batch.v_learned);
  op.memory().upload(A.u_latent, batch.u_latent.data(), batch.u_latent.size() * sizeof(Real));
  op.memory().upload(A.v_latent, batch.v_latent.data(), batch.v_latent.size() * sizeof(Real));

  // Conditioning: the class embedding feeds the class token and every AdaLN projection.
  op.gather_rows(B, W, param("class_emb"), labels_.data(), A.c_emb);
  op.silu(int64_t(B) * W, A.c_emb, A.c_act);

  // Eq. 1: x = W_proj concat(mlp(u), mlp(v), pos(p), pos(q)). The shared latent MLP runs once
  // over the u rows and the v rows, which sit back to back in the arena.
  linear(2 * n, Dl, W, {A.u_latent, nullptr}, "latent_mlp.fc1.w", "latent_mlp.fc1.b", A.lat_h1);
  gelu_input(2 * n * W, A.lat_h1, A.lat_g, A.lat_g_16);
  linear(2 * n, W, W, {A.lat_g, A.lat_g_16}, "latent_mlp.fc2.w", "latent_mlp.fc2.b", A.lat_out);
  op.fill_masked_rows(n, W, u_learned_.data(), param("u_start"), A.lat_out);
  op.fill_masked_rows(n, W, v_learned_.data(), param("v_start"), A.lat_out + n * W);
  op.gather_rows(n, W, param("pos_emb"), pos_p_.data(), A.pe_p);
  op.gather_rows(n, W, param("pos_emb"), pos_q_.data(), A.pe_q);
  // Column block j of concat (n, 4W) at A.concat + j W (or A.concat_16 + j W).
  auto concat_at = [&](int j) { return A.concat ? A.concat + j * W : nullptr; };
  auto concat16_at = [&](int j) { return A.concat_16 ? A.concat_16 + j * W : nullptr; };
  copy_input(n, W, A.lat_out, concat_at(0), concat16_at(0), 4 * W);
  copy_input(n, W, A.lat_out + n * W, concat_at(1), concat16_at(1), 4 * W);
  copy_input(n, W, A.pe_p, concat_at(2), concat16_at(2), 4 * W);
  copy_input(n, W, A.pe_q, concat_at(3), concat16_at(3), 4 * W);
  Real* x0 = A.layers[0].x_in;  // (n, W)
  linear(n, 4 * W, W, {A.concat, A.concat_16}, "in_proj.w", "in_proj.b", x0);
  // Slot 0 of every sequence is the class token: its input is the class embedding.
  op.copy_strided(B, W, A.c_emb, W, x0, int64_t(Tn) * W, false);

  for (int l = 0; l < c.depth; l++) {
    LayerActivations<Real>& L = A.layers[l];
    Real* x_out = l + 1 < c.depth ? A.layers[l + 1].x_in : A.x_final;  // (n, W)
    const int ld = 6 * W;  // AdaLN chunks: shift1, scale1, gate1, shift2, scale2, gate2
    linear(B, W, 6 * W, {A.c_act, nullptr}, layer_param(l, "ada.w"), layer_param(l, "ada.b"),
           L.ada);
    // attention
    op.layernorm(n, W, L.x_in, L.xn1, L.mean1, L.rstd1);
    modulate_input(B, Tn, W, L.xn1, L.ada, L.ada + W, ld, L.h1, L.h1_16);
    linear(n, W, 3 * W, {L.h1, L.h1_16}, layer_param(l, "qkv.w"), layer_param(l, "qkv.b"), L.qkv);
    const Real* mix = l < c.rope_mix_layers ? param(layer_param(l, "rope_mix")) : nullptr;
    op.rope(n, H, hd, L.qkv, 3 * W, param("rope_angles"), pos_p_.data(), pos_p_.data(), nullptr,
            L.qr);
    op.rope(n, H, hd, L.qkv + W, 3 * W, param("rope_angles"), pos_p_.data(), pos_q_.data(), mix,
            L.kr);
    op.copy_strided(n, W, L.qkv + 2 * W, 3 * W, L.v, W, false);
    op.attention(B, Tn, H, hd, L.qr, L.kr, L.v, visible_end_.data(), L.att, L.lse);
    linear(n, W, W, {L.att, nullptr}, layer_param(l, "attn_out.w"), layer_param(l, "attn_out.b"),
           L.ao);
    op.copy_strided(n, W, L.x_in, W, L.x_mid, W, false);
    op.gated_residual(B, Tn, W, L.x_mid, L.ada + 2 * W, ld, L.ao);
    // MLP
    op.layernorm(n, W, L.x_mid, L.xn2, L.mean2, L.rstd2);
    modulate_input(B, Tn, W, L.xn2, L.ada + 3 * W, L.ada + 4 * W, ld, L.h2, L.h2_16);
    linear(n, W, F, {L.h2, L.h2_16}, layer_param(l, "fc1.w"), layer_param(l, "fc1.b"), L.f1);
    gelu_input(n * F, L.f1, L.g, L.g_16);
    linear(n, F, W, {L.g, L.g_16}, layer_param(l, "fc2.w"), layer_param(l, "fc2.b"), L.f2);
    op.copy_strided(n, W, L.x_mid, W, x_out, W, false);
    op.gated_residual(B, Tn, W, x_out, L.ada + 5 * W, ld, L.f2);
  }

  // Head: AdaLN (shift, scale) then codebook logits, and the fused loss.
  linear(B, W, 2 * W, {A.c_act, nullptr}, "head_ada.w", "head_ada.b", A.head_ada);
  op.layernorm(n, W, A.x_final, A.xnf, A.meanf, A.rstdf);
  modulate_input(B, Tn, W, A.xnf, A.head_ada, A.head_ada + W, 2 * W, A.hf, A.hf_16);
  linear(n, W, K, {A.hf, A.hf_16}, "head.w", "head.b", A.logits);
  counted_ = std::count_if(batch.targets.begin(), batch.targets.end(),
                           [](int32_t t) { return t >= 0; });
  CB_CHECK(counted_ > 0, "batch: no slot has a target");
  op.softmax_cross_entropy(n, K, A.logits, targets_.data(), A.loss_rows,
                           for_backward ? A.dlogits : nullptr, Real(1) / Real(counted_));
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

  // Head. dada holds the head's (B, 2W) shift/scale gradient here.
  linear_backward(n, W, K, {A.hf, A.hf_16}, "head.w", "head.b", A.dlogits, A.dh);
  op.zero_strided(B, 2 * W, A.dada, 2 * W);
  op.modulate_backward(B, Tn, W, A.xnf, A.head_ada + W, 2 * W, A.dh, A.dtmp, A.dada,
                       A.dada + W);
  op.layernorm_backward(n, W, A.x_final, A.meanf, A.rstdf, A.dtmp, A.dx);
  linear_backward(B, W, 2 * W, {A.c_act, nullptr}, "head_ada.w", "head_ada.b", A.dada, A.dc_act);

  for (int l = c.depth - 1; l >= 0; l--) {
    LayerActivations<Real>& L = A.layers[l];
    const int ld = 6 * W;
    op.zero_strided(B, 6 * W, A.dada, 6 * W);
    // MLP branch: x_out = x_mid + gate2 * f2; A.dx holds d x_out and becomes d x_mid.
    op.gated_residual_backward(B, Tn, W, A.dx, L.ada + 5 * W, ld, L.f2, A.dh, A.dada + 5 * W);
    linear_backward(n, F, W, {L.g, L.g_16}, layer_param(l, "fc2.w"), layer_param(l, "fc2.b"), A.dh,
                    A.dF1);
    op.gelu_backward(n * F, L.f1, A.dF1, A.dF2);
    linear_backward(n, W, F, {L.h2, L.h2_16}, layer_param(l, "fc1.w"), layer_param(l, "fc1.b"),
                    A.dF2, A.dh);
    op.modulate_backward(B, Tn, W, L.xn2, L.ada + 4 * W, ld, A.dh, A.dtmp, A.dada + 3 * W,
                         A.dada + 4 * W);
    op.layernorm_backward(n, W, L.x_mid, L.mean2, L.rstd2, A.dtmp, A.dh);
    op.add_inplace(n * W, A.dx, A.dh);
    // Attention branch: x_mid = x_in + gate1 * ao; A.dx becomes d x_in.
    op.gated_residual_backward(B, Tn, W, A.dx, L.ada + 2 * W, ld, L.ao, A.dh, A.dada + 2 * W);
    linear_backward(n, W, W, {L.att, nullptr}, layer_param(l, "attn_out.w"),
                    layer_param(l, "attn_out.b"), A.dh, A.datt);
    op.attention_backward(B, Tn, H, hd, L.qr, L.kr, L.v, visible_end_.data(), L.att, L.lse,
                          A.datt, A.dq, A.dk, A.dv);
    const bool mixed = l < c.rope_mix_layers;
    const Real* mix = mixed ? param(layer_param(l, "rope_mix")) : nullptr;
    Real* dmix = mixed ? grad(layer_param(l, "rope_mix")) : nullptr;
    op.rope_backward(n, H, hd, L.qkv, 3 * W, param("rope_angles"), pos_p_.data(), pos_p_.data(),
                     nullptr, A.dq, A.dqkv, grad("rope_angles"), nullptr);
    op.rope_backward(n, H, hd, L.qkv + W, 3 * W, param("rope_angles"), pos_p_.data(),
                     pos_q_.data(), mix, A.dk, A.dqkv + W, grad("rope_angles"), dmix);
    op.copy_strided(n, W, A.dv, W, A.dqkv + 2 * W, 3 * W, false);
    linear_backward(n, W, 3 * W, {L.h1, L.h1_16}, layer_param(l, "qkv.w"), layer_param(l, "qkv.b"),
                    A.dqkv, A.dh);
    op.modulate_backward(B, Tn, W, L.xn1, L.ada + W, ld, A.dh, A.dtmp, A.dada, A.dada + W);
    op.layernorm_backward(n, W, L.x_in, L.mean1, L.rstd1, A.dtmp, A.dh);
    op.add_inplace(n * W, A.dx, A.dh);
    // This layer's AdaLN projection adds to the gradient of SiLU(class embedding).
    linear_backward(B, W, 6 * W, {A.c_act, nullptr}, layer_param(l, "ada.w"),
                    layer_param(l, "ada.b"), A.dada, A.dc_tmp);
    op.add_inplace(int64_t(B) * W, A.dc_act, A.dc_tmp);
  }

  // Class embedding: through SiLU into every AdaLN, and directly as the class token's input.
  op.silu_backward(int64_t(B) * W, A.c_emb, A.dc_act, A.dc_emb);
  op.copy_strided(B, W, A.dx, int64_t(Tn) * W, A.dc_emb, W, true);
  op.zero_strided(B, W, A.dx, int64_t(Tn) * W);
  op.scatter_add_rows(B, W, A.dc_emb, labels_.data(), grad("class_emb"));

  // Eq. 1 inputs.
  linear_backward(n, 4 * W, W, {A.concat, A.concat_16}, "in_proj.w", "in_proj.b", A.dx,
                  A.dconcat);
  op.copy_strided(n, W, A.dconcat, 4 * W, A.dlat, W, false);
  op.copy_strided(n, W, A.dconcat + W, 4 * W, A.dlat + n * W, W, false);
  op.copy_strided(n, W, A.dconcat + 2 * W, 4 * W, A.dpe, W, false);
  op.scatter_add_rows(n, W, A.dpe, pos_p_.data(), grad("pos_emb"));
  op.copy_strided(n, W, A.dconcat + 3 * W, 4 * W, A.dpe, W, false);
  op.scatter_add_rows(n, W, A.dpe, pos_q_.data(), grad("pos_emb"));
  op.fill_masked_rows_backward(n, W, u_learned_.data(), A.dlat, grad("u_start"));
  op.fill_masked_rows_backward(n, W, v_learned_.data(), A.dlat + n * W, grad("v_start"));
  linear_backward(2 * n, W, W, {A.lat_g, A.lat_g_16}, "latent_mlp.fc2.w", "latent_mlp.fc2.b",
                  A.dlat, A.dlat_g);
  op.gelu_backward(2 * n * W, A.lat_h1, A.dlat_g, A.dlat);
  linear_backward(2 * n, Dl, W, {A.u_latent, nullptr}, "latent_mlp.fc1.w", "latent_mlp.fc1.b",
                  A.dlat, nullptr);
}

template <typename Real>
void Model<Real>::zero_grad() {
  grads_.zero();
}

template <typename Real>
void Model<Real>::step(const AdamWSettings& s) {
  check_adamw_settings(s);
  step_++;
  if (mixed_ != nullptr) params16();  // fresh before the step, so in step with params_ after it
  for (const ParamEntry& e : layout_.entries()) {
    if constexpr (std::is_same<Real, float>::value) {
      if (mixed_ != nullptr) {
        mixed_->adamw_mixed(e.size, params_.data() + e.offset, params16_.data() + e.offset,
                            grads_.data() + e.offset, adam_m_.data() + e.offset,
                            adam_v_.data() + e.offset, s.lr, s.beta1, s.beta2, s.eps,
                            e.decay ? s.weight_decay : 0.0f, step_);
        continue;
      }
    }
    ops_->adamw(e.size, params_.data() + e.offset, grads_.data() + e.offset,
                adam_m_.data() + e.offset, adam_v_.data() + e.offset, s.lr, s.beta1, s.beta2,
                s.eps, e.decay ? s.weight_decay : 0.0f, step_);
  }
}

template class Model<float>;
template class Model<double>;

}  // namespace cb
