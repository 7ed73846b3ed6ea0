#include "model.h"

#include <algorithm>
#include <new>
#include <stdexcept>

#include <unistd.h>

#include "../error.h"
#include "init.h"

namespace cb {
namespace {

double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? double(pages) * double(page) : 1e300;
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
  const int64_t needed = counting.plan(config_, B, T_, nullptr);
  if (needed > (int64_t)arena_.size()) {
    const double bytes = double(needed) * sizeof(Real);
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
    arena_.resize(0);
    try {
      arena_.resize(needed);
    } catch (const std::bad_alloc&) {
      refuse("out of memory");
    } catch (const Error& e) {
      refuse(e.what());
    }
  }
  act_.plan(config_, B, T_, arena_.data());
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

  // The batch into the backend's memory.
  auto put = [](auto& array, const auto& values) {
    array.resize((int64_t)values.size());
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
  op.linear(2 * n, Dl, W, A.u_latent, param("latent_mlp.fc1.w"), param("latent_mlp.fc1.b"),
            A.lat_h1);
  op.gelu(2 * n * W, A.lat_h1, A.lat_g);
  op.linear(2 * n, W, W, A.lat_g, param("latent_mlp.fc2.w"), param("latent_mlp.fc2.b"),
            A.lat_out);
  op.fill_masked_rows(n, W, u_learned_.data(), param("u_start"), A.lat_out);
  op.fill_masked_rows(n, W, v_learned_.data(), param("v_start"), A.lat_out + n * W);
  op.gather_rows(n, W, param("pos_emb"), pos_p_.data(), A.pe_p);
  op.gather_rows(n, W, param("pos_emb"), pos_q_.data(), A.pe_q);
  op.copy_strided(n, W, A.lat_out, W, A.concat, 4 * W, false);
  op.copy_strided(n, W, A.lat_out + n * W, W, A.concat + W, 4 * W, false);
  op.copy_strided(n, W, A.pe_p, W, A.concat + 2 * W, 4 * W, false);
  op.copy_strided(n, W, A.pe_q, W, A.concat + 3 * W, 4 * W, false);
  Real* x0 = A.layers[0].x_in;  // (n, W)
  op.linear(n, 4 * W, W, A.concat, param("in_proj.w"), param("in_proj.b"), x0);
  // Slot 0 of every sequence is the class token: its input is the class embedding.
  op.copy_strided(B, W, A.c_emb, W, x0, int64_t(Tn) * W, false);

  for (int l = 0; l < c.depth; l++) {
    LayerActivations<Real>& L = A.layers[l];
    Real* x_out = l + 1 < c.depth ? A.layers[l + 1].x_in : A.x_final;  // (n, W)
    const int ld = 6 * W;  // AdaLN chunks: shift1, scale1, gate1, shift2, scale2, gate2
    op.linear(B, W, 6 * W, A.c_act, param(layer_param(l, "ada.w")),
              param(layer_param(l, "ada.b")), L.ada);
    // attention
    op.layernorm(n, W, L.x_in, L.xn1, L.mean1, L.rstd1);
    op.modulate(B, Tn, W, L.xn1, L.ada, L.ada + W, ld, L.h1);
    op.linear(n, W, 3 * W, L.h1, param(layer_param(l, "qkv.w")), param(layer_param(l, "qkv.b")),
              L.qkv);
    const Real* mix = l < c.rope_mix_layers ? param(layer_param(l, "rope_mix")) : nullptr;
    op.rope(n, H, hd, L.qkv, 3 * W, param("rope_angles"), pos_p_.data(), pos_p_.data(), nullptr,
            L.qr);
    op.rope(n, H, hd, L.qkv + W, 3 * W, param("rope_angles"), pos_p_.data(), pos_q_.data(), mix,
            L.kr);
    op.copy_strided(n, W, L.qkv + 2 * W, 3 * W, L.v, W, false);
    op.attention(B, Tn, H, hd, L.qr, L.kr, L.v, visible_end_.data(), L.att, L.lse);
    op.linear(n, W, W, L.att, param(layer_param(l, "attn_out.w")),
              param(layer_param(l, "attn_out.b")), L.ao);
    op.copy_strided(n, W, L.x_in, W, L.x_mid, W, false);
    op.gated_residual(B, Tn, W, L.x_mid, L.ada + 2 * W, ld, L.ao);
    // MLP
    op.layernorm(n, W, L.x_mid, L.xn2, L.mean2, L.rstd2);
    op.modulate(B, Tn, W, L.xn2, L.ada + 3 * W, L.ada + 4 * W, ld, L.h2);
    op.linear(n, W, F, L.h2, param(layer_param(l, "fc1.w")), param(layer_param(l, "fc1.b")), L.f1);
    op.gelu(n * F, L.f1, L.g);
    op.linear(n, F, W, L.g, param(layer_param(l, "fc2.w")), param(layer_param(l, "fc2.b")), L.f2);
    op.copy_strided(n, W, L.x_mid, W, x_out, W, false);
    op.gated_residual(B, Tn, W, x_out, L.ada + 5 * W, ld, L.f2);
  }

  // Head: AdaLN (shift, scale) then codebook logits, and the fused loss.
  op.linear(B, W, 2 * W, A.c_act, param("head_ada.w"), param("head_ada.b"), A.head_ada);
  op.layernorm(n, W, A.x_final, A.xnf, A.meanf, A.rstdf);
  op.modulate(B, Tn, W, A.xnf, A.head_ada, A.head_ada + W, 2 * W, A.hf);
  op.linear(n, W, K, A.hf, param("head.w"), param("head.b"), A.logits);
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
  op.linear_backward(n, W, K, A.hf, param("head.w"), A.dlogits, A.dh, grad("head.w"),
                     grad("head.b"));
  op.zero_strided(B, 2 * W, A.dada, 2 * W);
  op.modulate_backward(B, Tn, W, A.xnf, A.head_ada + W, 2 * W, A.dh, A.dtmp, A.dada,
                       A.dada + W);
  op.layernorm_backward(n, W, A.x_final, A.meanf, A.rstdf, A.dtmp, A.dx);
  op.linear_backward(B, W, 2 * W, A.c_act, param("head_ada.w"), A.dada, A.dc_act,
                     grad("head_ada.w"), grad("head_ada.b"));

  for (int l = c.depth - 1; l >= 0; l--) {
    LayerActivations<Real>& L = A.layers[l];
    const int ld = 6 * W;
    op.zero_strided(B, 6 * W, A.dada, 6 * W);
    // MLP branch: x_out = x_mid + gate2 * f2; A.dx holds d x_out and becomes d x_mid.
    op.gated_residual_backward(B, Tn, W, A.dx, L.ada + 5 * W, ld, L.f2, A.dh, A.dada + 5 * W);
    op.linear_backward(n, F, W, L.g, param(layer_param(l, "fc2.w")), A.dh, A.dF1,
                       grad(layer_param(l, "fc2.w")), grad(layer_param(l, "fc2.b")));
    op.gelu_backward(n * F, L.f1, A.dF1, A.dF2);
    op.linear_backward(n, W, F, L.h2, param(layer_param(l, "fc1.w")), A.dF2, A.dh,
                       grad(layer_param(l, "fc1.w")), grad(layer_param(l, "fc1.b")));
    op.modulate_backward(B, Tn, W, L.xn2, L.ada + 4 * W, ld, A.dh, A.dtmp, A.dada + 3 * W,
                         A.dada + 4 * W);
    op.layernorm_backward(n, W, L.x_mid, L.mean2, L.rstd2, A.dtmp, A.dh);
    op.add_inplace(n * W, A.dx, A.dh);
    // Attention branch: x_mid = x_in + gate1 * ao; A.dx becomes d x_in.
    op.gated_residual_backward(B, Tn, W, A.dx, L.ada + 2 * W, ld, L.ao, A.dh, A.dada + 2 * W);
    op.linear_backward(n, W, W, L.att, param(layer_param(l, "attn_out.w")), A.dh, A.datt,
                       grad(layer_param(l, "attn_out.w")), grad(layer_param(l, "attn_out.b")));
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
    op.linear_backward(n, W, 3 * W, L.h1, param(layer_param(l, "qkv.w")), A.dqkv, A.dh,
                       grad(layer_param(l, "qkv.w")), grad(layer_param(l, "qkv.b")));
    op.modulate_backward(B, Tn, W, L.xn1, L.ada + W, ld, A.dh, A.dtmp, A.dada, A.dada + W);
    op.layernorm_backward(n, W, L.x_in, L.mean1, L.rstd1, A.dtmp, A.dh);
    op.add_inplace(n * W, A.dx, A.dh);
    // This layer's AdaLN projection adds to the gradient of SiLU(class embedding).
    op.linear_backward(B, W, 6 * W, A.c_act, param(layer_param(l, "ada.w")), A.dada, A.dc_tmp,
                       grad(layer_param(l, "ada.w")), grad(layer_param(l, "ada.b")));
    op.add_inplace(int64_t(B) * W, A.dc_act, A.dc_tmp);
  }

  // Class embedding: through SiLU into every AdaLN, and directly as the class token's input.
  op.silu_backward(int64_t(B) * W, A.c_emb, A.dc_act, A.dc_emb);
  op.copy_strided(B, W, A.dx, int64_t(Tn) * W, A.dc_emb, W, true);
  op.zero_strided(B, W, A.dx, int64_t(Tn) * W);
  op.scatter_add_rows(B, W, A.dc_emb, labels_.data(), grad("class_emb"));

  // Eq. 1 inputs.
  op.linear_backward(n, 4 * W, W, A.concat, param("in_proj.w"), A.dx, A.dconcat,
                     grad("in_proj.w"), grad("in_proj.b"));
  op.copy_strided(n, W, A.dconcat, 4 * W, A.dlat, W, false);
  op.copy_strided(n, W, A.dconcat + W, 4 * W, A.dlat + n * W, W, false);
  op.copy_strided(n, W, A.dconcat + 2 * W, 4 * W, A.dpe, W, false);
  op.scatter_add_rows(n, W, A.dpe, pos_p_.data(), grad("pos_emb"));
  op.copy_strided(n, W, A.dconcat + 3 * W, 4 * W, A.dpe, W, false);
  op.scatter_add_rows(n, W, A.dpe, pos_q_.data(), grad("pos_emb"));
  op.fill_masked_rows_backward(n, W, u_learned_.data(), A.dlat, grad("u_start"));
  op.fill_masked_rows_backward(n, W, v_learned_.data(), A.dlat + n * W, grad("v_start"));
  op.linear_backward(2 * n, W, W, A.lat_g, param("latent_mlp.fc2.w"), A.dlat, A.dlat_g,
                     grad("latent_mlp.fc2.w"), grad("latent_mlp.fc2.b"));
  op.gelu_backward(2 * n * W, A.lat_h1, A.dlat_g, A.dlat);
  op.linear_backward(2 * n, Dl, W, A.u_latent, param("latent_mlp.fc1.w"), A.dlat, nullptr,
                     grad("latent_mlp.fc1.w"), grad("latent_mlp.fc1.b"));
}

template <typename Real>
void Model<Real>::zero_grad() {
  grads_.zero();
}

template <typename Real>
void Model<Real>::step(const AdamWSettings& s) {
  step_++;
  for (const ParamEntry& e : layout_.entries()) {
    ops_->adamw(e.size, params_.data() + e.offset, grads_.data() + e.offset,
                adam_m_.data() + e.offset, adam_v_.data() + e.offset, s.lr, s.beta1, s.beta2,
                s.eps, e.decay ? s.weight_decay : 0.0f, step_);
  }
}

template class Model<float>;
template class Model<double>;

}  // namespace cb
