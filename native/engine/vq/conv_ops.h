// The op interface of the convolutional VQ tokenizer (LlamaGen's VQ-16): every step of the
// encoder, the quantiser and the decoder is one call here, so a backend supplies exactly these
// kernels. Three backends, as for the transformer (model/model_ops.h):
//   cpu-ref  plain loops, templated on the scalar (float, and double for ground truth)
//   cpu      fast and threaded (im2col + cpu_sgemm, fused row loops); float
//   cuda     own kernels (no cuBLAS); float
//
// Conventions (all backends):
// - Tensors are NCHW, dense: x[((b * C + c) * H + y) * W + x].
// - Conv weights are (Cout, Cin, k, k), applied as cross-correlation (PyTorch's conv2d).
// - Every op overwrites its output; no op allocates (scratch is the backend's own, grown on
//   demand); every pointer points into memory().
// - In-place is allowed where an op says so (y == x).
// - Backward ops (for `tokenizer train`) OVERWRITE activation gradients (dx) and ACCUMULATE
//   (+=) parameter gradients (dw, dbias, dgamma, dbeta, dcodebook), as the transformer's ops do
//   (model/model_ops.h); zeroing the parameter gradients happens outside the ops. A backward
//   recomputes what it needs from the forward's inputs (GroupNorm's statistics, attention's
//   probabilities); nothing is saved between calls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../model/device_memory.h"

namespace cb {

// A 2-d convolution's geometry. Output side: (H + pad_top + pad_bottom - k) / stride + 1.
// LlamaGen uses: 3x3 stride 1 pad 1/1 (most convs), 1x1 stride 1 pad 0 (nin_shortcut, q/k/v,
// proj_out, quant_conv), and the downsampler's 3x3 stride 2 with pad 0 before and 1 after
// (F.pad(x, (0, 1, 0, 1)): right and bottom only).
struct Conv2dShape {
  int B = 1;
  int Cin = 0, H = 0, W = 0;  // input (B, Cin, H, W)
  int Cout = 0;
  int k = 1;       // kernel side (1 or 3; any odd or even k >= 1 must work in cpu-ref)
  int stride = 1;  // 1 or 2
  int pad_begin = 0;  // zero rows/columns added at the top and the left
  int pad_end = 0;    // zero rows/columns added at the bottom and the right
  int out_h() const { return (H + pad_begin + pad_end - k) / stride + 1; }
  int out_w() const { return (W + pad_begin + pad_end - k) / stride + 1; }
};

template <typename Real>
class ConvOps {
 public:
  virtual ~ConvOps() = default;
  virtual const char* name() const = 0;
  virtual DeviceMemory& memory() = 0;

  // y (B, Cout, Ho, Wo) = conv(x (B, Cin, H, W), w (Cout, Cin, k, k)) + bias (Cout; may be null).
  // y must not alias x.
  virtual void conv2d(const Conv2dShape& s, const Real* x, const Real* w, const Real* bias,
                      Real* y) = 0;

  // GroupNorm over x (B, C, HW): `groups` groups of C/groups contiguous channels; per (b, group)
  // mean and biased variance over (C/groups) * HW values, y = (x - mean) / sqrt(var + eps) *
  // gamma[c] + beta[c]. C % groups == 0. In-place allowed.
  virtual void group_norm(int B, int C, int64_t HW, int groups, float eps, const Real* x,
                          const Real* gamma, const Real* beta, Real* y) = 0;

  // GroupNorm followed by swish (the fused pair every ResnetBlock and the decoder's output use).
  // Same arguments and result as group_norm then swish. In-place allowed.
  virtual void group_norm_swish(int B, int C, int64_t HW, int groups, float eps, const Real* x,
                                const Real* gamma, const Real* beta, Real* y) = 0;

  // swish(x) = x * sigmoid(x), elementwise. In-place allowed.
  virtual void swish(int64_t count, const Real* x, Real* y) = 0;

  // y += x, elementwise (residual connections).
  virtual void add_inplace(int64_t count, Real* y, const Real* x) = 0;

  // Nearest 2x upsampling: x (B, C, H, W) -> y (B, C, 2H, 2W), y[.., Y, X] = x[.., Y/2, X/2].
  virtual void upsample_nearest2x(int B, int C, int H, int W, const Real* x, Real* y) = 0;

  // Single-head attention over the HW positions of each image, channels as features (LlamaGen's
  // AttnBlock core, after the q/k/v 1x1 convs and before proj_out):
  //   w[i, j] = sum_c q[b, c, i] k[b, c, j] / sqrt(C), softmax over j,
  //   out[b, c, i] = sum_j v[b, c, j] w[i, j].
  // q, k, v, out are (B, C, HW); out must not alias q, k or v.
  virtual void spatial_attention(int B, int C, int64_t HW, const Real* q, const Real* k,
                                 const Real* v, Real* out) = 0;

  // Rows of x (n, d) divided by max(|row|, 1e-12) (torch.nn.functional.normalize). In-place
  // allowed. Used on the codebook once at load.
  virtual void l2_normalize_rows(int64_t n, int d, const Real* x, Real* y) = 0;

  // The l2 quantiser. z (B, D, HW) latent (not normalised); codebook (K, D) rows ALREADY
  // l2-normalised. At each (b, i) the latent column z[b, :, i] is l2-normalised and the nearest
  // row in squared Euclidean distance wins (|z|^2 + |e|^2 - 2 z.e; the first index wins a tie).
  // index (B, HW) out; zq (B, D, HW) out: the chosen normalised rows, or null;
  // dist2 (B, HW) out: that squared distance between the normalised vectors, or null.
  virtual void quantize_l2(int B, int D, int64_t HW, const Real* z, const Real* codebook, int K,
                           int32_t* index, Real* zq, Real* dist2) = 0;

  // zq (B, D, HW) = codebook rows (K, D) at index (B, HW), laid out NCHW (decode_code).
  // Indices must lie in [0, K): callers check them on the host before the call (VqModel does);
  // a backend may clamp an index outside that range but never reads out of bounds.
  virtual void embed_codes(int B, int D, int64_t HW, const int32_t* index, const Real* codebook,
                           int K, Real* zq) = 0;

  // ---- backward (training) ------------------------------------------------------------------
  // Of conv2d: x (B, Cin, H, W) and w (Cout, Cin, k, k) as in the forward, dy (B, Cout, Ho, Wo).
  // dx (B, Cin, H, W) = the input's gradient (overwritten; skipped when null; must not alias
  // dy); dw (Cout, Cin, k, k) += the weight's; dbias (Cout) += the sums of dy per channel
  // (skipped when null).
  virtual void conv2d_backward(const Conv2dShape& s, const Real* x, const Real* w, const Real* dy,
                               Real* dx, Real* dw, Real* dbias) = 0;

  // Of group_norm: x, gamma as in the forward, dy (B, C, HW) the output's gradient. dx (B, C, HW)
  // overwritten (may alias dy); dgamma, dbeta (C) +=. The statistics are recomputed from x.
  virtual void group_norm_backward(int B, int C, int64_t HW, int groups, float eps, const Real* x,
                                   const Real* gamma, const Real* beta, const Real* dy, Real* dx,
                                   Real* dgamma, Real* dbeta) = 0;

  // Of group_norm_swish: dy is the gradient at the swish's output; the normalised value is
  // recomputed from x, gamma and beta. Same outputs and aliasing as group_norm_backward.
  virtual void group_norm_swish_backward(int B, int C, int64_t HW, int groups, float eps,
                                         const Real* x, const Real* gamma, const Real* beta,
                                         const Real* dy, Real* dx, Real* dgamma,
                                         Real* dbeta) = 0;

  // Of swish: dx = dy (s + x s (1 - s)), s = sigmoid(x). In-place allowed (dx == dy).
  virtual void swish_backward(int64_t count, const Real* x, const Real* dy, Real* dx) = 0;

  // Of upsample_nearest2x: dx (B, C, H, W) = the sum of each 2x2 block of dy (B, C, 2H, 2W).
  // dx overwritten.
  virtual void upsample_nearest2x_backward(int B, int C, int H, int W, const Real* dy,
                                           Real* dx) = 0;

  // Of spatial_attention: q, k, v (B, C, HW) as in the forward, dout (B, C, HW). dq, dk, dv
  // (B, C, HW) overwritten (none aliases another or an input); the softmax weights are
  // recomputed from q and k.
  virtual void spatial_attention_backward(int B, int C, int64_t HW, const Real* q, const Real* k,
                                          const Real* v, const Real* dout, Real* dq, Real* dk,
                                          Real* dv) = 0;

  // Of l2_normalize_rows (y = x / max(|x|, 1e-12) per row of x (n, d)): dx (n, d) = (dy -
  // y (y . dy)) / |x| where |x| > 1e-12, dy / 1e-12 otherwise. Overwritten; must not alias dy.
  virtual void l2_normalize_rows_backward(int64_t n, int d, const Real* x, const Real* dy,
                                          Real* dx) = 0;

  // The quantiser's training backward: the straight-through estimator with LlamaGen's codebook
  // and commitment losses (VectorQuantizer.forward, l2-normalised codes). With zn the
  // l2-normalised latent columns of z (B, D, HW) (as quantize_l2 computes them) and zq the
  // chosen rows codebook[index] (codebook (K, D) rows l2-normalised, index (B, HW) from
  // quantize_l2):
  //   loss = codebook_scale sum (zq - sg(zn))^2 + commit_scale sum (sg(zq) - zn)^2,
  //   the decoder's input is zn + sg(zq - zn), so its gradient dzq (B, D, HW) reaches zn whole.
  // (sg: stop gradient; sums over all B D HW values: a caller wanting LlamaGen's means passes
  // 1 / (B D HW) and beta / (B D HW).)
  //   dz (B, D, HW) overwritten = the column normalisation's Jacobian applied to
  //     dzq + commit_scale 2 (zn - zq);
  //   dcodebook (K, D) += codebook_scale 2 (zq - zn), summed over the positions that chose
  //     each row: the gradient of the NORMALISED rows (a caller with raw rows applies
  //     l2_normalize_rows_backward).
  virtual void quantize_l2_backward(int B, int D, int64_t HW, const Real* z, const Real* codebook,
                                    int K, const int32_t* index, const Real* dzq,
                                    float codebook_scale, float commit_scale, Real* dz,
                                    Real* dcodebook) = 0;

  // The pixel reconstruction loss of rec against target (count values each) and its gradient:
  //   loss = l2_scale sum (rec - target)^2 + l1_scale sum |rec - target|,
  //   drec (count) overwritten = l2_scale 2 (rec - target) + l1_scale sign(rec - target)
  //   (sign(0) = 0); sums (2) overwritten = {sum (rec - target)^2, sum |rec - target|}, summed in
  //   an order that depends on count alone (so a run repeats bit for bit).
  virtual void pixel_loss(int64_t count, const Real* rec, const Real* target, float l2_scale,
                          float l1_scale, Real* drec, Real* sums) = 0;
};

// The names make_conv_ops accepts, in order: "cpu-ref", "cpu", "cuda" (cuda also in a build
// without CUDA, where it is refused with the reason).
const std::vector<std::string>& conv_backend_names();

// Creates the conv ops of a backend by name (vq/conv_backends.cc). double exists for cpu-ref
// only. Throws cb::Error for an unknown name or an unusable cuda.
template <typename Real>
std::unique_ptr<ConvOps<Real>> make_conv_ops(const std::string& name);

}  // namespace cb
