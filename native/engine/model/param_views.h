// Typed views of the parameter buffer (and of the buffers that share its layout: gradients,
// the bf16 copy): one pointer per tensor, resolved from the ParamLayout's names once, so the
// forward and backward never look a name up on the hot path.
#pragma once

#include <vector>

#include "config.h"
#include "param_layout.h"

namespace cb {

// A linear layer's weight (out, in) and bias (out).
template <typename T>
struct LinearView {
  T* w = nullptr;
  T* b = nullptr;
};

// One transformer block (param_layout.cc).
template <typename T>
struct LayerView {
  LinearView<T> ada;       // (6W, W) AdaLN-Zero projection (adaln.h names its chunks)
  LinearView<T> qkv;       // (3W, W)
  LinearView<T> attn_out;  // (W, W)
  LinearView<T> fc1;       // (F, W)
  LinearView<T> fc2;       // (W, F)
  T* rope_mix = nullptr;   // (H) key RoPE mixing logits; null in layers without mixing
};

template <typename T>
struct ParamView {
  T* class_emb = nullptr;    // (classes + 1, W)
  T* pos_emb = nullptr;      // (positions, W)
  T* rope_angles = nullptr;  // (positions, hd / 2)
  T* u_start = nullptr;      // (W) replaces mlp(u) at the first scale
  T* v_start = nullptr;      // (W) replaces mlp(v) in a scale's first block
  LinearView<T> latent_fc1;  // (W, Dl) the shared latent MLP of Eq. 1
  LinearView<T> latent_fc2;  // (W, W)
  LinearView<T> in_proj;     // (W, 4W) W_proj of Eq. 1
  std::vector<LayerView<T>> layers;
  LinearView<T> head_ada;    // (2W, W)
  LinearView<T> head;        // (K, W)
};

// The view of a buffer of layout.total() values at `base` laid out as `layout`.
template <typename T>
ParamView<T> view_params(const ModelConfig& c, const ParamLayout& layout, T* base) {
  auto at = [&](const std::string& name) { return base + layout.offset(name); };
  auto linear = [&](const std::string& name) {
    return LinearView<T>{at(name + ".w"), at(name + ".b")};
  };
  ParamView<T> v;
  v.class_emb = at("class_emb");
  v.pos_emb = at("pos_emb");
  v.rope_angles = at("rope_angles");
  v.u_start = at("u_start");
  v.v_start = at("v_start");
  v.latent_fc1 = linear("latent_mlp.fc1");
  v.latent_fc2 = linear("latent_mlp.fc2");
  v.in_proj = linear("in_proj");
  v.layers.resize(c.depth);
  for (int l = 0; l < c.depth; l++) {
    LayerView<T>& L = v.layers[l];
    L.ada = linear(layer_param(l, "ada"));
    L.qkv = linear(layer_param(l, "qkv"));
    L.attn_out = linear(layer_param(l, "attn_out"));
    L.fc1 = linear(layer_param(l, "fc1"));
    L.fc2 = linear(layer_param(l, "fc2"));
    L.rope_mix = l < c.rope_mix_layers ? at(layer_param(l, "rope_mix")) : nullptr;
  }
  v.head_ada = linear("head_ada");
  v.head = linear("head");
  return v;
}

}  // namespace cb
