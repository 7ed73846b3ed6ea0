// The arguments of the model's one forward call sequence (Model::run_slots): Eq. 1, the layers
// and the head over slots [t0, t0 + m) of `rows` sequences, with the attention chosen by the
// caller. Training and evaluation run every slot at once with full blockwise attention and
// keep every activation for the backward (Activations, one set of buffers per layer); the
// sampler runs one block per step against a KV cache and hands every layer the same buffers.
// Rows are (rows, m) flattened to n = rows * m, slot fastest; every pointer is in the model
// backend's memory.
#pragma once

#include <cstdint>
#include <vector>

#include "activations.h"
#include "mixed_ops.h"

namespace cb {

// Eq. 1's buffers over the first input_rows rows (ni = input_rows * m rows).
template <typename Real>
struct InputBuffers {
  const Real* lat_in = nullptr;       // (2ni, Dl) u latents, then v latents (Model::
                                      //   upsample_codes and gather_latents)
  const uint8_t* u_learned = nullptr; // (ni) 1: u_start replaces mlp(u)
  const uint8_t* v_learned = nullptr; // (ni) 1: v_start replaces mlp(v)
  Real* lat_h1 = nullptr;             // (2ni, W) latent MLP hidden, before GELU
  Real* lat_g = nullptr;              // (2ni, W) (null under mixed precision: lat_g_16)
  bf16_t* lat_g_16 = nullptr;         // (2ni, W)
  Real* lat_out = nullptr;            // (2ni, W) mlp(u) rows, then mlp(v) rows
  Real* pe_p = nullptr;               // (ni, W)
  Real* pe_q = nullptr;               // (ni, W)
  Real* concat = nullptr;             // (ni, 4W) [mlp(u) | mlp(v) | pos p | pos q]
  bf16_t* concat_16 = nullptr;        // (ni, 4W)
};

// The keys and values of every layer, for KV-cached attention.
template <typename Real>
struct KvCache {
  Real* keys = nullptr;    // (depth, rows, slots, W) keys after RoPE (and mixing)
  Real* values = nullptr;  // (depth, rows, slots, W)
  int slots = 0;           // T: the cache's slots per row
};

template <typename Real>
struct SlotRun {
  int rows = 0;        // R sequences
  int t0 = 0, m = 0;   // slots [t0, t0 + m) of each
  // Rows whose Eq. 1 inputs are built: rows, or rows / 2 under CFG, where the null-class rows
  // [input_rows, rows) are fed the same tokens as the rows before them.
  int input_rows = 0;
  const int32_t* pos_p = nullptr;  // (n) position index of each slot (0: the class token)
  const int32_t* pos_q = nullptr;  // (n) position index of its fed token (1: learned)
  const Real* c_emb = nullptr;     // (rows, W) class embeddings: the class token's input (t0 = 0)
  InputBuffers<Real> in;
  // (depth) each layer's buffers, its AdaLN rows (rows, 6W) from Model::condition included.
  // Layer l writes layers[l + 1].x_in (or x_final); a buffer may be shared between layers and
  // x_in, x_mid and the next x_in may be one buffer (the residual stream updated in place).
  std::vector<LayerActivations<Real>>* layers = nullptr;
  Real* x_final = nullptr;        // (n, W) output of the last layer
  const Real* head_ada = nullptr; // (rows, 2W) the head's AdaLN rows
  Real* xnf = nullptr;            // (n, W)
  Real* meanf = nullptr;          // (n)
  Real* rstdf = nullptr;          // (n)
  Real* hf = nullptr;             // (n, W) (null under mixed precision: hf_16)
  bf16_t* hf_16 = nullptr;        // (n, W)
  Real* logits = nullptr;         // (n, K)
  // Slot t0 + j attends to slots [0, visible_end[j]) (m values).
  const int32_t* visible_end = nullptr;
  // Null keys: full blockwise attention over the range, which then starts at slot 0; each layer keeps its dense values v and lse for the backward. Else
  // KV-cached: the range's keys and values are written into the cache at slots t0..t0+m-1 and
  // the queries attend over the cache.
  KvCache<Real> cache;
  // True where no backward follows (the sampler): the GELU of the latent MLP and of every
  // layer's MLP then runs fused with the matmul before it (ModelOps::linear_gelu), which writes
  // the GELU's output (lat_g, g, or rounded into lat_g_16, g_16 where they are set) and never
  // the pre-activation (lat_h1, f1).
  bool fuse_gelu = false;
};

}  // namespace cb
