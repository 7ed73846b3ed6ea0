// Every activation the forward saves for the backward, and the backward's scratch, carved out of
// one arena sized from (B, T) and the config. Planning runs twice over the same code: once to
// count (base == nullptr), once to hand out pointers, so sizes and pointers cannot disagree.
//
// With mixed precision (mixed_ops.h) the activations that are only matmul inputs (h1, h2, g,
// hf, concat, lat_g) live in a second arena of bf16 values (their *16 pointers; the Real
// pointers are null), and the rest stays Real. Without it the *16 pointers are null.
#pragma once

#include <cstdint>
#include <vector>

#include "adaln.h"
#include "config.h"
#include "mixed_ops.h"

namespace cb {

template <typename Real>
struct LayerActivations {
  Real* x_in;      // (n, W) residual stream into the layer
  Real* xn1;       // (n, W) layernorm(x_in)
  Real* mean1;     // (n)
  Real* rstd1;     // (n)
  Real* h1;        // (n, W) modulated
  bf16_t* h1_16;   // (n, W) the same in bf16 (mixed precision)
  Real* qkv;       // (n, 3W) before RoPE
  Real* qr;        // (n, W) queries after RoPE
  Real* kr;        // (n, W) keys after RoPE (and mixing)
  Real* v;         // (n, W) values, dense
  Real* att;       // (n, W) attention output
  Real* lse;       // (B, H, T) log-sum-exp of the scores
  Real* ao;        // (n, W) attention projection
  Real* x_mid;     // (n, W) x_in + gate1 * ao
  Real* xn2;       // (n, W)
  Real* mean2;     // (n)
  Real* rstd2;     // (n)
  Real* h2;        // (n, W)
  bf16_t* h2_16;   // (n, W)
  Real* f1;        // (n, F) fc1 output, before GELU
  Real* g;         // (n, F) GELU(f1)
  bf16_t* g_16;    // (n, F)
  Real* f2;        // (n, W) fc2 output
  Real* ada;       // (B, 6W) shift1, scale1, gate1, shift2, scale2, gate2
};

template <typename Real>
struct Activations {
  int B = 0, T = 0;
  int64_t n = 0;  // B * T
  // Eq. 1 latents, built from the batch's codes (Model::forward)
  Real* code_lat;  // (B*L, Dl) the codes' latents, scale-major: scale k at B*scale_offset(k)
  Real* up_lat;    // (B*L, Dl) scale k's u grid (scale k-1 upsampled) at the same place
  Real* u_latent;  // (n, Dl) followed directly by v_latent: the latent MLP runs on 2n rows
  Real* v_latent;  // (n, Dl)
  // conditioning
  Real* c_emb;     // (B, W) class embedding
  Real* c_act;     // (B, W) SiLU(c_emb), input of every AdaLN projection
  // Eq. 1 inputs
  Real* lat_h1;    // (2n, W) latent MLP hidden, before GELU
  Real* lat_g;     // (2n, W)
  bf16_t* lat_g_16;  // (2n, W)
  Real* lat_out;   // (2n, W) mlp(u) rows then mlp(v) rows, start vectors filled in
  Real* pe_p;      // (n, W)
  Real* pe_q;      // (n, W)
  Real* concat;    // (n, 4W) [mlp(u) | mlp(v) | pos p | pos q]
  bf16_t* concat_16;  // (n, 4W)
  std::vector<LayerActivations<Real>> layers;
  Real* x_final;   // (n, W) output of the last layer
  Real* xnf;       // (n, W)
  Real* meanf;     // (n)
  Real* rstdf;     // (n)
  Real* hf;        // (n, W)
  bf16_t* hf_16;   // (n, W)
  Real* head_ada;  // (B, 2W) shift, scale
  Real* logits;    // (n, K)
  Real* dlogits;   // (n, K) filled by the fused loss when a backward follows
  Real* loss_rows; // (n)
  // backward scratch
  Real* dx;        // (n, W) gradient of the residual stream
  Real* dtmp;      // (n, W)
  Real* dh;        // (n, W)
  Real* dqkv;      // (n, 3W)
  Real* dq;        // (n, W)
  Real* dk;        // (n, W)
  Real* dv;        // (n, W)
  Real* datt;      // (n, W)
  Real* dF1;       // (n, F)
  Real* dF2;       // (n, F)
  Real* dada;      // (B, 6W)
  Real* dc_act;    // (B, W) summed over every AdaLN projection
  Real* dc_tmp;    // (B, W)
  Real* dc_emb;    // (B, W)
  Real* dconcat;   // (n, 4W)
  Real* dlat;      // (2n, W)
  Real* dlat_g;    // (2n, W)
  Real* dpe;       // (n, W)

  // Carves every buffer from `base` and, with `mixed`, the bf16 ones from `base16` (nullptr:
  // only counts); returns the Real values needed and sets *halves to the bf16 values needed.
  int64_t plan(const ModelConfig& c, int B, int T, Real* base, bool mixed, bf16_t* base16,
               int64_t* halves);
};

template <typename Real>
int64_t Activations<Real>::plan(const ModelConfig& c, int B_, int T_, Real* base, bool mixed,
                                bf16_t* base16, int64_t* halves) {
  B = B_;
  T = T_;
  n = int64_t(B) * T;
  const int64_t W = c.width, F = c.hidden(), K = c.vocab, Dl = c.latent_dim, H = c.heads;
  int64_t used = 0;
  auto take = [&](int64_t count) -> Real* {
    Real* p = base ? base + used : nullptr;
    used += count;
    return p;
  };
  int64_t used16 = 0;
  // A matmul input: bf16 with mixed precision, else Real.
  auto take_input = [&](int64_t count, Real** full, bf16_t** half) {
    *full = mixed ? nullptr : take(count);
    *half = nullptr;
    if (!mixed) return;
    *half = base16 ? base16 + used16 : nullptr;
    used16 += count;
  };
  const int64_t L = c.sequence_length() - 1;
  code_lat = take(B * L * Dl);
  up_lat = take(B * L * Dl);
  u_latent = take(n * Dl);
  v_latent = take(n * Dl);
  c_emb = take(B * W);
  c_act = take(B * W);
  lat_h1 = take(2 * n * W);
  take_input(2 * n * W, &lat_g, &lat_g_16);
  lat_out = take(2 * n * W);
  pe_p = take(n * W);
  pe_q = take(n * W);
  take_input(n * 4 * W, &concat, &concat_16);
  layers.assign(c.depth, LayerActivations<Real>{});
  for (auto& L : layers) {
    L.x_in = take(n * W);
    L.xn1 = take(n * W);
    L.mean1 = take(n);
    L.rstd1 = take(n);
    take_input(n * W, &L.h1, &L.h1_16);
    L.qkv = take(n * 3 * W);
    L.qr = take(n * W);
    L.kr = take(n * W);
    L.v = take(n * W);
    L.att = take(n * W);
    L.lse = take(B * H * T);
    L.ao = take(n * W);
    L.x_mid = take(n * W);
    L.xn2 = take(n * W);
    L.mean2 = take(n);
    L.rstd2 = take(n);
    take_input(n * W, &L.h2, &L.h2_16);
    L.f1 = take(n * F);
    take_input(n * F, &L.g, &L.g_16);
    L.f2 = take(n * W);
    L.ada = take(B * kLayerAdaChunks * W);
  }
  x_final = take(n * W);
  xnf = take(n * W);
  meanf = take(n);
  rstdf = take(n);
  take_input(n * W, &hf, &hf_16);
  head_ada = take(B * kHeadAdaChunks * W);
  logits = take(n * K);
  dlogits = take(n * K);
  loss_rows = take(n);
  dx = take(n * W);
  dtmp = take(n * W);
  dh = take(n * W);
  dqkv = take(n * 3 * W);
  dq = take(n * W);
  dk = take(n * W);
  dv = take(n * W);
  datt = take(n * W);
  dF1 = take(n * F);
  dF2 = take(n * F);
  dada = take(B * kLayerAdaChunks * W);
  dc_act = take(B * W);
  dc_tmp = take(B * W);
  dc_emb = take(B * W);
  dconcat = take(n * 4 * W);
  dlat = take(2 * n * W);
  dlat_g = take(2 * n * W);
  dpe = take(n * W);
  *halves = used16;
  return used;
}

}  // namespace cb
