// VqModel's training pass: the forward of vq_model.cc with a tape, LlamaGen's losses (pixel
// reconstruction, codebook and commitment with the straight-through estimator), and the
// backward call sequences, each the mirror of its forward (read them side by side: the tensors
// come off the tape in the reverse of the order the forward saved them).
#include <algorithm>
#include <vector>

#include "error.h"
#include "vq/vq_model.h"

namespace cb {
namespace {

constexpr float kNormEps = 1e-6f;  // as the forward's (vq_model.cc)

std::string block(const std::string& prefix, int i) { return prefix + "." + std::to_string(i); }

}  // namespace

template <typename Real>
void VqModel<Real>::conv_backward(const std::string& name, int B, int cin, int cout, int H,
                                  int W, int k,
                                  const Real* x,   // (B, cin, H, W) the forward's input
                                  const Real* dy,  // (B, cout, H, W)
                                  Real* dx,        // (B, cin, H, W) or null
                                  Real* grads) {
  ops_->conv2d_backward(vq_conv_shape(B, cin, cout, H, W, k), x, param(name + ".weight"), dy, dx,
                        grad(grads, name + ".weight"), grad(grads, name + ".bias"));
}

// Of resnet_block: out = conv2(a2) + shortcut(x), a2 = gns2(c1), c1 = conv1(a1), a1 = gns1(x).
template <typename Real>
void VqModel<Real>::resnet_block_backward(const std::string& name, int B, int cin, int cout,
                                          int H, int W, Grads& g, VqTape<Real>& tape) {
  const int64_t HW = int64_t(H) * W, n_in = int64_t(B) * cin * HW, n_out = int64_t(B) * cout * HW;
  const int G = config_.groups;
  const Real* a2 = tape.take(n_out);  // (B, cout, H, W)
  const Real* c1 = tape.take(n_out);  // (B, cout, H, W)
  const Real* a1 = tape.take(n_in);   // (B, cin, H, W)
  const Real* x = tape.take(n_in);    // (B, cin, H, W)
  const Real* dy = g.cur;             // (B, cout, H, W)
  Real* P = g.params;
  conv_backward(name + ".conv2", B, cout, cout, H, W, 3, a2, dy, g.t1, P);  // t1: d a2
  ops_->group_norm_swish_backward(B, cout, HW, G, kNormEps, c1, param(name + ".norm2.weight"),
                                  param(name + ".norm2.bias"), g.t1, g.t1,
                                  grad(P, name + ".norm2.weight"), grad(P, name + ".norm2.bias"));
  conv_backward(name + ".conv1", B, cin, cout, H, W, 3, a1, g.t1, g.t2, P);  // t2: d a1
  ops_->group_norm_swish_backward(B, cin, HW, G, kNormEps, x, param(name + ".norm1.weight"),
                                  param(name + ".norm1.bias"), g.t2, g.t2,
                                  grad(P, name + ".norm1.weight"), grad(P, name + ".norm1.bias"));
  // t2 is the residual branch's share of d x; the shortcut's is added.
  if (cin != cout) {
    conv_backward(name + ".nin_shortcut", B, cin, cout, H, W, 1, x, dy, g.next, P);
    ops_->add_inplace(n_in, g.next, g.t2);
  } else {
    ops_->add_inplace(n_in, g.t2, dy);
    std::swap(g.next, g.t2);
  }
  g.advance();
}

// Of attn_block: out = x + proj_out(o), o = attention(q, k, v), q/k/v = 1x1 convs of xn =
// norm(x).
template <typename Real>
void VqModel<Real>::attn_block_backward(const std::string& name, int B, int C, int H, int W,
                                        Grads& g, VqTape<Real>& tape) {
  const int64_t HW = int64_t(H) * W, n = int64_t(B) * C * HW;
  const Real* o = tape.take(n);  // each (B, C, HW)
  const Real* v = tape.take(n);
  const Real* k = tape.take(n);
  const Real* q = tape.take(n);
  const Real* xn = tape.take(n);
  const Real* x = tape.take(n);
  const Real* dy = g.cur;
  Real* P = g.params;
  Real* dq = attn_scratch(3 * n);  // (B, C, HW) each
  Real* dk = dq + n;
  Real* dv = dk + n;
  conv_backward(name + ".proj_out", B, C, C, H, W, 1, o, dy, g.t1, P);  // t1: d o
  ops_->spatial_attention_backward(B, C, HW, q, k, v, g.t1, dq, dk, dv);
  // d xn: the sum of what the three projections pass back.
  conv_backward(name + ".q", B, C, C, H, W, 1, xn, dq, g.t2, P);
  conv_backward(name + ".k", B, C, C, H, W, 1, xn, dk, g.t1, P);
  ops_->add_inplace(n, g.t2, g.t1);
  conv_backward(name + ".v", B, C, C, H, W, 1, xn, dv, g.t1, P);
  ops_->add_inplace(n, g.t2, g.t1);
  ops_->group_norm_backward(B, C, HW, config_.groups, kNormEps, x, param(name + ".norm.weight"),
                            param(name + ".norm.bias"), g.t2, g.t2, grad(P, name + ".norm.weight"),
                            grad(P, name + ".norm.bias"));
  ops_->add_inplace(n, g.t2, dy);  // the residual
  std::swap(g.next, g.t2);
  g.advance();
}

// Of downsample: g.cur (B, C, H/2, W/2) -> (B, C, H, W).
template <typename Real>
void VqModel<Real>::downsample_backward(const std::string& name, int B, int C, int H, int W,
                                        Grads& g, VqTape<Real>& tape) {
  const Real* x = tape.take(int64_t(B) * C * H * W);
  ops_->conv2d_backward(vq_downsampler_shape(B, C, H, W), x, param(name + ".conv.weight"), g.cur,
                        g.next, grad(g.params, name + ".conv.weight"),
                        grad(g.params, name + ".conv.bias"));
  g.advance();
}

// Of upsample: g.cur (B, C, 2H, 2W) -> (B, C, H, W).
template <typename Real>
void VqModel<Real>::upsample_backward(const std::string& name, int B, int C, int H, int W,
                                      Grads& g, VqTape<Real>& tape) {
  const Real* up = tape.take(int64_t(B) * C * 4 * H * W);  // (B, C, 2H, 2W)
  conv_backward(name + ".conv", B, C, C, 2 * H, 2 * W, 3, up, g.cur, g.t1, g.params);
  ops_->upsample_nearest2x_backward(B, C, H, W, g.t1, g.next);
  g.advance();
}

template <typename Real>
void VqModel<Real>::encoder_backward(int B, int H, int W, Grads& g, VqTape<Real>& tape) {
  const VqConfig& c = config_;
  const int L = c.levels();
  int h = H / c.downsample(), w = W / c.downsample(), width = c.mid_channels();
  const int64_t hw = int64_t(h) * w;
  const Real* s = tape.take(B * width * hw);  // conv_out's input
  conv_backward("encoder.conv_out", B, width, c.z_channels, h, w, 3, s, g.cur, g.next, g.params);
  g.advance();
  const Real* x = tape.take(B * width * hw);  // norm_out's input
  ops_->group_norm_swish_backward(B, width, hw, c.groups, kNormEps, x,
                                  param("encoder.norm_out.weight"), param("encoder.norm_out.bias"),
                                  g.cur, g.cur, grad(g.params, "encoder.norm_out.weight"),
                                  grad(g.params, "encoder.norm_out.bias"));
  resnet_block_backward("encoder.mid.2", B, width, width, h, w, g, tape);
  attn_block_backward("encoder.mid.1", B, width, h, w, g, tape);
  resnet_block_backward("encoder.mid.0", B, width, width, h, w, g, tape);
  for (int i = L - 1; i >= 0; i--) {
    const std::string level = block("encoder.conv_blocks", i);
    const int out = c.level_channels(i);
    if (i != L - 1) {  // this level's downsampler took (2h, 2w) to (h, w)
      h *= 2;
      w *= 2;
      downsample_backward(level + ".downsample", B, out, h, w, g, tape);
    }
    for (int j = c.encoder_blocks - 1; j >= 0; j--) {
      if (i == L - 1) attn_block_backward(block(level + ".attn", j), B, out, h, w, g, tape);
      const int cin = j > 0 ? out : (i > 0 ? c.level_channels(i - 1) : c.ch);
      resnet_block_backward(block(level + ".res", j), B, cin, out, h, w, g, tape);
    }
  }
  const Real* images = tape.take(int64_t(B) * c.in_channels * H * W);
  conv_backward("encoder.conv_in", B, c.in_channels, c.ch, H, W, 3, images, g.cur, nullptr,
                g.params);  // the images need no gradient
}

template <typename Real>
void VqModel<Real>::decoder_backward(int B, int h, int w, Grads& g, VqTape<Real>& tape) {
  const VqConfig& c = config_;
  const int L = c.levels();
  int H = h * c.downsample(), W = w * c.downsample(), width = c.level_channels(0);
  const int64_t HW = int64_t(H) * W;
  const Real* s = tape.take(B * width * HW);  // conv_out's input
  conv_backward("decoder.conv_out", B, width, c.out_channels, H, W, 3, s, g.cur, g.next,
                g.params);
  g.advance();
  const Real* x = tape.take(B * width * HW);  // norm_out's input
  ops_->group_norm_swish_backward(B, width, HW, c.groups, kNormEps, x,
                                  param("decoder.norm_out.weight"), param("decoder.norm_out.bias"),
                                  g.cur, g.cur, grad(g.params, "decoder.norm_out.weight"),
                                  grad(g.params, "decoder.norm_out.bias"));
  for (int i = L - 1; i >= 0; i--) {
    const std::string level = block("decoder.conv_blocks", i);
    const int out = c.level_channels(L - 1 - i);
    if (i != L - 1) {  // this level's upsampler took (H, W) to (2H, 2W)
      H /= 2;
      W /= 2;
      upsample_backward(level + ".upsample", B, out, H, W, g, tape);
    }
    for (int j = c.decoder_blocks - 1; j >= 0; j--) {
      if (i == 0) attn_block_backward(block(level + ".attn", j), B, out, H, W, g, tape);
      const int cin = j > 0 ? out : (i > 0 ? c.level_channels(L - i) : c.mid_channels());
      resnet_block_backward(block(level + ".res", j), B, cin, out, H, W, g, tape);
    }
  }
  const int mid = c.mid_channels();
  resnet_block_backward("decoder.mid.2", B, mid, mid, h, w, g, tape);
  attn_block_backward("decoder.mid.1", B, mid, h, w, g, tape);
  resnet_block_backward("decoder.mid.0", B, mid, mid, h, w, g, tape);
  const Real* z = tape.take(int64_t(B) * c.z_channels * h * w);  // conv_in's input
  conv_backward("decoder.conv_in", B, c.z_channels, mid, h, w, 3, z, g.cur, g.next, g.params);
  g.advance();
}

template <typename Real>
VqPassStats VqModel<Real>::train_pass(const Real* images,  // (B, 3, H, W) backend memory
                                      int B, int H, int W, const VqLossWeights& weights,
                                      Real* grads,  // (param count) backend memory, +=
                                      int32_t* index_host, Real* latent_host) {
  check_image_size(H, W, "train_pass");
  CB_CHECK(B >= 1, "train_pass: the batch is empty");
  DeviceMemory& mem = ops_->memory();
  const VqConfig& c = config_;
  const int f = c.downsample(), h = H / f, w = W / f, D = c.code_dim, K = c.codebook_size;
  const int64_t hw = int64_t(h) * w, positions = B * hw, latents = positions * D;
  const int64_t pixels = int64_t(B) * c.in_channels * H * W;
  if (!tape_) tape_ = std::make_unique<VqTape<Real>>(mem);
  VqTape<Real>& tape = *tape_;
  tape.clear();

  // ---- forward --------------------------------------------------------------------------
  const int64_t peak = B * std::max(encoder_peak(H, W), decoder_peak(h, w));
  Acts a = acts_for(peak);
  train_.bind(mem);
  Real* latent = train_.reserve(4 * latents + positions + 2 * int64_t(K) * D);  // (B, D, hw)
  Real* zq = latent + latents;           // (B, D, hw)
  Real* dz = zq + latents;               // (B, D, hw)
  Real* dzq = dz + latents;              // (B, D, hw)
  Real* dist2 = dzq + latents;           // (B, hw)
  Real* dcodes = dist2 + positions;      // (K, D) gradient of the normalised rows
  Real* dcodes_raw = dcodes + int64_t(K) * D;  // (K, D) of the stored rows
  index_.bind(mem);
  int32_t* index = index_.reserve(positions);  // (B, hw)
  mem.copy(a.cur, images, sizeof(Real) * pixels);
  encoder(B, H, W, a, &tape);                                // (B, z, h, w)
  save(&tape, a.cur, B * c.z_channels * hw);
  conv("quant_conv", B, c.z_channels, D, h, w, 1, a.cur, latent);  // (B, D, h, w)
  ops_->quantize_l2(B, D, hw, latent, codebook_.data(), K, index, zq, dist2);
  // The decoder sees zn + sg(zq - zn), whose value is zq.
  conv("post_quant_conv", B, D, c.z_channels, h, w, 1, zq, a.cur);  // (B, z, h, w)
  decoder(B, h, w, a, nullptr, &tape);                              // (B, 3, H, W)

  // ---- losses and backward --------------------------------------------------------------
  Real* gbuf[4];
  for (int i = 0; i < 4; i++) {
    grad_[i].bind(mem);
    gbuf[i] = grad_[i].reserve(peak);
  }
  Grads g{gbuf[0], gbuf[1], gbuf[2], gbuf[3], grads};
  loss_sums_.bind(mem);
  Real* sums = loss_sums_.reserve(2);
  ops_->pixel_loss(pixels, a.cur, images, float(weights.scale * weights.pixel_l2 / pixels),
                   float(weights.scale * weights.pixel_l1 / pixels), g.cur, sums);
  decoder_backward(B, h, w, g, tape);  // g.cur: d post_quant_conv output (B, z, h, w)
  conv_backward("post_quant_conv", B, D, c.z_channels, h, w, 1, zq, g.cur, dzq, grads);
  mem.zero(dcodes, sizeof(Real) * K * D);
  ops_->quantize_l2_backward(B, D, hw, latent, codebook_.data(), K, index, dzq,
                             float(weights.scale * weights.codebook / latents),
                             float(weights.scale * weights.commit / latents), dz, dcodes);
  const VqParamSlot& codes = slot("quantize.embedding.weight");
  ops_->l2_normalize_rows_backward(K, D, params_.data() + codes.offset, dcodes, dcodes_raw);
  ops_->add_inplace(int64_t(K) * D, grads + codes.offset, dcodes_raw);
  const Real* enc_out = tape.take(B * c.z_channels * hw);
  conv_backward("quant_conv", B, c.z_channels, D, h, w, 1, enc_out, dz, g.cur, grads);
  encoder_backward(B, H, W, g, tape);
  CB_CHECK(tape.size() == 0, "VQ tape: the backward left " + std::to_string(tape.size()) +
                                 " saved tensors");  // forward and backward disagree: a bug

  // ---- what the pass measured -----------------------------------------------------------
  VqPassStats stats;
  Real host_sums[2];
  mem.download(host_sums, sums, sizeof host_sums);
  std::vector<Real> d2((size_t)positions);
  mem.download(d2.data(), dist2, sizeof(Real) * positions);
  stats.pixel_sq = double(host_sums[0]);
  stats.pixel_abs = double(host_sums[1]);
  stats.pixels = pixels;
  for (Real v : d2) stats.latent_sq += double(v);
  stats.latents = latents;
  if (index_host != nullptr) mem.download(index_host, index, sizeof(int32_t) * positions);
  if (latent_host != nullptr) mem.download(latent_host, latent, sizeof(Real) * latents);
  return stats;
}

// vq_model.h declares the class's instantiation extern (it lives in vq_model.cc), so the
// members defined here are instantiated here, one by one.
#define CB_VQ_BACKWARD_MEMBERS(Real)                                                           \
  template void VqModel<Real>::conv_backward(const std::string&, int, int, int, int, int, int, \
                                             const Real*, const Real*, Real*, Real*);          \
  template void VqModel<Real>::resnet_block_backward(const std::string&, int, int, int, int,   \
                                                     int, Grads&, VqTape<Real>&);              \
  template void VqModel<Real>::attn_block_backward(const std::string&, int, int, int, int,     \
                                                   Grads&, VqTape<Real>&);                     \
  template void VqModel<Real>::downsample_backward(const std::string&, int, int, int, int,     \
                                                   Grads&, VqTape<Real>&);                     \
  template void VqModel<Real>::upsample_backward(const std::string&, int, int, int, int,       \
                                                 Grads&, VqTape<Real>&);                       \
  template void VqModel<Real>::encoder_backward(int, int, int, Grads&, VqTape<Real>&);         \
  template void VqModel<Real>::decoder_backward(int, int, int, Grads&, VqTape<Real>&);         \
  template VqPassStats VqModel<Real>::train_pass(const Real*, int, int, int,                   \
                                                 const VqLossWeights&, Real*, int32_t*, Real*);
CB_VQ_BACKWARD_MEMBERS(float)
CB_VQ_BACKWARD_MEMBERS(double)
#undef CB_VQ_BACKWARD_MEMBERS

}  // namespace cb
