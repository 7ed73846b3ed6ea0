#include "param_layout.h"

#include "../error.h"
#include "adaln.h"

namespace cb {

std::string layer_param(int layer, const char* suffix) {
  return "blocks." + std::to_string(layer) + "." + suffix;
}

void ParamLayout::add(const std::string& name, std::vector<int64_t> shape, bool decay,
                      Init init) {
  ParamEntry e;
  e.name = name;
  e.size = 1;
  for (int64_t d : shape) e.size *= d;
  e.shape = std::move(shape);
  e.offset = total_;
  e.decay = decay;
  e.init = init;
  total_ += e.size;
  entries_.push_back(std::move(e));
}

ParamLayout::ParamLayout(const ModelConfig& c) {
  const int64_t W = c.width, F = c.hidden(), P = c.positions();
  // A linear layer: weight (out, in) with decay, bias (out) without.
  auto linear = [&](const std::string& name, int64_t out, int64_t in, Init weight_init) {
    add(name + ".w", {out, in}, true, weight_init);
    add(name + ".b", {out}, false, Init::Zeros);
  };
  add("class_emb", {c.classes + 1, W}, false, Init::Normal);
  add("pos_emb", {P, W}, false, Init::Normal);
  add("rope_angles", {P, c.rope_pairs()}, false, Init::RopeAxial);
  add("u_start", {W}, false, Init::Normal);  // replaces mlp(u) at the first scale
  add("v_start", {W}, false, Init::Normal);  // replaces mlp(v) in a scale's first block
  linear("latent_mlp.fc1", W, c.latent_dim, Init::Normal);
  linear("latent_mlp.fc2", W, W, Init::Normal);
  linear("in_proj", W, 4 * W, Init::Normal);  // W_proj of Eq. 1 over concat(u, v, pos p, pos q)
  for (int l = 0; l < c.depth; l++) {
    // AdaLN-Zero: shift, scale, gate for attention and for the MLP; zero so blocks start as identity.
    linear(layer_param(l, "ada"), kLayerAdaChunks * W, W, Init::Zeros);
    linear(layer_param(l, "qkv"), 3 * W, W, Init::Normal);
    if (l < c.rope_mix_layers) add(layer_param(l, "rope_mix"), {c.heads}, false, Init::Zeros);
    linear(layer_param(l, "attn_out"), W, W, Init::Normal);
    linear(layer_param(l, "fc1"), F, W, Init::Normal);
    linear(layer_param(l, "fc2"), W, F, Init::Normal);
  }
  linear("head_ada", kHeadAdaChunks * W, W, Init::Zeros);
  linear("head", c.vocab, W, Init::Normal);
}

const ParamEntry& ParamLayout::find(const std::string& name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return e;
  }
  CB_FAIL("unknown parameter '" + name + "'");
}

}  // namespace cb
