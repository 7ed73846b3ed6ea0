// The model's one forward call sequence (model.h, slot_run.h): the conditioning, then Eq. 1,
// the layers and the head over a range of slots, with full blockwise attention (training,
// evaluation) or attention over a KV cache (sampling). In the spirit of llm.c's gpt2_forward
// (one explicit list of op calls) and VAR's autoregressive_infer_cfg (the same block forward
// with caching on or off). Nothing here but op calls and pointer arithmetic, so a backend
// that records op sequences (cuda graphs) can record a sampling step as it is.
#include "../error.h"
#include "adaln.h"
#include "model.h"

namespace cb {

template <typename Real>
void Model<Real>::condition(int rows, const int32_t* labels, Real* c_emb, Real* c_act,
                            const std::vector<LayerActivations<Real>>& layers, Real* head_ada) {
  const int W = config_.width;
  ops_->gather_rows(rows, W, P_.class_emb, labels, c_emb);
  ops_->silu(int64_t(rows) * W, c_emb, c_act);
  for (int l = 0; l < config_.depth; l++) {
    linear(rows, W, kLayerAdaChunks * W, {c_act, nullptr}, P_.layers[l].ada, layers[l].ada);
  }
  linear(rows, W, kHeadAdaChunks * W, {c_act, nullptr}, P_.head_ada, head_ada);
}

template <typename Real>
void Model<Real>::upsample_codes(int B, int s_in, int s_out, const int32_t* codes, Real* lat,
                                 Real* up) {
  const int Dl = config_.latent_dim;
  ops_->gather_rows(int64_t(B) * s_in * s_in, Dl, codebook_.data(), codes, lat);
  ops_->upsample_bilinear(B, s_in, s_out, Dl, lat, up);
}

template <typename Real>
void Model<Real>::gather_latents(int64_t n, const Real* u_table, const int32_t* u_index,
                                 const int32_t* v_index, Real* lat_in) {
  const int Dl = config_.latent_dim;
  ops_->gather_rows(n, Dl, u_table, u_index, lat_in);
  ops_->gather_rows(n, Dl, codebook_.data(), v_index, lat_in + n * Dl);
}

template <typename Real>
void Model<Real>::run_slots(const SlotRun<Real>& run) {
  const ModelConfig& c = config_;
  ModelOps<Real>& op = *ops_;
  const int W = c.width, F = c.hidden(), K = c.vocab, Dl = c.latent_dim, H = c.heads;
  const int hd = c.head_dim();
  const int R = run.rows, m = run.m;
  const int64_t n = int64_t(R) * m, ni = int64_t(run.input_rows) * m;
  const bool cached = run.cache.keys != nullptr;
  CB_CHECK(run.input_rows == R || 2 * run.input_rows == R,
           "run_slots: the input rows must be all rows or their first half");
  CB_CHECK(cached || run.t0 == 0, "run_slots: full attention runs from the first slot");
  std::vector<LayerActivations<Real>>& layers = *run.layers;
  const InputBuffers<Real>& in = run.in;

  // Eq. 1: x = W_proj concat(mlp(u), mlp(v), pos(p), pos(q)). The shared latent MLP runs once
  // over the u rows and the v rows, which sit back to back.
  if (run.fuse_gelu) {
    linear_gelu(2 * ni, Dl, W, {in.lat_in, nullptr}, P_.latent_fc1, in.lat_g, in.lat_g_16);
  } else {
    linear(2 * ni, Dl, W, {in.lat_in, nullptr}, P_.latent_fc1, in.lat_h1);
    gelu_input(2 * ni * W, in.lat_h1, in.lat_g, in.lat_g_16);
  }
  linear(2 * ni, W, W, {in.lat_g, in.lat_g_16}, P_.latent_fc2, in.lat_out);
  op.fill_masked_rows(ni, W, in.u_learned, P_.u_start, in.lat_out);
  op.fill_masked_rows(ni, W, in.v_learned, P_.v_start, in.lat_out + ni * W);
  op.gather_rows(ni, W, P_.pos_emb, run.pos_p, in.pe_p);
  op.gather_rows(ni, W, P_.pos_emb, run.pos_q, in.pe_q);
  // Column block j of concat (ni, 4W) at concat + j W (or concat_16 + j W).
  auto concat_at = [&](int j) { return in.concat ? in.concat + j * W : nullptr; };
  auto concat16_at = [&](int j) { return in.concat_16 ? in.concat_16 + j * W : nullptr; };
  copy_input(ni, W, in.lat_out, concat_at(0), concat16_at(0), 4 * W);
  copy_input(ni, W, in.lat_out + ni * W, concat_at(1), concat16_at(1), 4 * W);
  copy_input(ni, W, in.pe_p, concat_at(2), concat16_at(2), 4 * W);
  copy_input(ni, W, in.pe_q, concat_at(3), concat16_at(3), 4 * W);
  Real* x0 = layers[0].x_in;  // (n, W)
  linear(ni, 4 * W, W, {in.concat, in.concat_16}, P_.in_proj, x0);
  // The null-class rows under CFG are fed the same tokens.
  if (R > run.input_rows) op.copy_strided(ni, W, x0, W, x0 + ni * W, W, false);
  // Slot 0 of every sequence is the class token: its input is the class embedding.
  if (run.t0 == 0) op.copy_strided(R, W, run.c_emb, W, x0, int64_t(m) * W, false);

  for (int l = 0; l < c.depth; l++) {
    LayerActivations<Real>& L = layers[l];
    const LayerView<Real>& p = P_.layers[l];
    Real* x_out = l + 1 < c.depth ? layers[l + 1].x_in : run.x_final;  // (n, W)
    const LayerAda<const Real*> ada{L.ada, W};
    // attention
    op.layernorm(n, W, L.x_in, L.xn1, L.mean1, L.rstd1);
    modulate_input(R, m, W, L.xn1, ada.shift1(), ada.scale1(), ada.ld(), L.h1, L.h1_16);
    linear(n, W, 3 * W, {L.h1, L.h1_16}, p.qkv, L.qkv);
    op.rope(n, H, hd, L.qkv, 3 * W, P_.rope_angles, run.pos_p, run.pos_p, nullptr, L.qr);
    op.rope(n, H, hd, L.qkv + W, 3 * W, P_.rope_angles, run.pos_p, run.pos_q, p.rope_mix, L.kr);
    if (!cached) {
      op.copy_strided(n, W, L.qkv + 2 * W, 3 * W, L.v, W, false);
      op.attention(R, m, H, hd, L.qr, L.kr, L.v, run.visible_end, L.att, L.lse);
    } else {
      const int64_t row_stride = int64_t(run.cache.slots) * W;
      Real* kc = run.cache.keys + l * R * row_stride;    // (R, T, W)
      Real* vc = run.cache.values + l * R * row_stride;  // (R, T, W)
      op.write_kv_cache(R, m, run.t0, H, W, L.kr, W, L.qkv + 2 * W, 3 * W, kc, vc, row_stride);
      op.attention_cached(R, m, H, hd, L.qr, kc, vc, row_stride, run.visible_end, L.att);
    }
    linear(n, W, W, {L.att, nullptr}, p.attn_out, L.ao);
    if (L.x_mid != L.x_in) op.copy_strided(n, W, L.x_in, W, L.x_mid, W, false);
    op.gated_residual(R, m, W, L.x_mid, ada.gate1(), ada.ld(), L.ao);
    // MLP
    op.layernorm(n, W, L.x_mid, L.xn2, L.mean2, L.rstd2);
    modulate_input(R, m, W, L.xn2, ada.shift2(), ada.scale2(), ada.ld(), L.h2, L.h2_16);
    if (run.fuse_gelu) {
      linear_gelu(n, W, F, {L.h2, L.h2_16}, p.fc1, L.g, L.g_16);
    } else {
      linear(n, W, F, {L.h2, L.h2_16}, p.fc1, L.f1);
      gelu_input(n * F, L.f1, L.g, L.g_16);
    }
    linear(n, F, W, {L.g, L.g_16}, p.fc2, L.f2);
    if (x_out != L.x_mid) op.copy_strided(n, W, L.x_mid, W, x_out, W, false);
    op.gated_residual(R, m, W, x_out, ada.gate2(), ada.ld(), L.f2);
  }

  // Head: AdaLN (shift, scale) then codebook logits.
  const HeadAda<const Real*> head{run.head_ada, W};
  op.layernorm(n, W, run.x_final, run.xnf, run.meanf, run.rstdf);
  modulate_input(R, m, W, run.xnf, head.shift(), head.scale(), head.ld(), run.hf, run.hf_16);
  linear(n, W, K, {run.hf, run.hf_16}, P_.head, run.logits);
}

#define CB_INSTANTIATE(Real)                                                                 \
  template void Model<Real>::condition(int, const int32_t*, Real*, Real*,                    \
                                       const std::vector<LayerActivations<Real>>&, Real*);   \
  template void Model<Real>::run_slots(const SlotRun<Real>&);                                \
  template void Model<Real>::upsample_codes(int, int, int, const int32_t*, Real*, Real*);    \
  template void Model<Real>::gather_latents(int64_t, const Real*, const int32_t*,            \
                                            const int32_t*, Real*);
CB_INSTANTIATE(float)
CB_INSTANTIATE(double)
#undef CB_INSTANTIATE

}  // namespace cb
