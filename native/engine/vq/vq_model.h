// LlamaGen's VQ-16 autoencoder (vq_model.py, FoundationVision/LlamaGen ce98ec4) over the conv
// ops (vq/conv_ops.h): encoder, l2 quantiser and decoder as readable call sequences. Weights
// live in the backend's memory, one DeviceArray per state-dict tensor; the codebook is kept
// l2-normalised (normalised once when it is loaded or replaced).
//
// The public calls take and fill host arrays and run the batch in chunks of images whose
// activations fit the scratch budget, so memory stays bounded whatever B is. Every pointer the
// ops see lies in ops().memory(), so the same code runs cpu-ref, cpu and cuda.
//
// Sizes: images (B, 3, H, W) with H and W multiples of config().downsample() (16); the latent
// grid is (h, w) = (H / 16, W / 16).
//
// Training (`tokenizer train`, vq/vq_trainer.h): every tensor lives in one parameter array
// (params(), laid out as param_slots() says), and train_pass runs the same encoder, quantiser and
// decoder call sequences with a tape (vq/vq_tape.h) that keeps what the backward
// (vq/vq_backward.cc) needs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../model/device_memory.h"
#include "conv_ops.h"
#include "vq_config.h"
#include "vq_tape.h"

namespace cb {

// A float32 tensor on the host, as a state dict holds it (row-major, `shape`'s element count).
struct HostTensor {
  TensorShape shape;
  const float* data = nullptr;
};
using HostTensors = std::map<std::string, HostTensor>;

// Where one state-dict tensor sits in a VqModel's parameter array.
struct VqParamSlot {
  std::string name;
  TensorShape shape;
  int64_t offset = 0;  // values from the start of params()
  int64_t count = 0;
};

// The weights of one training pass's losses (vq/vq_backward.cc), LlamaGen's VQ losses:
//   pixel_l2 mean (rec - x)^2 + pixel_l1 mean |rec - x|
//   + codebook mean (zq - sg(zn))^2 + commit mean (sg(zq) - zn)^2,
// each mean over the values of this pass (images or latents); `scale` multiplies all four
// (one pass per image size, summed: the trainer's weight per size).
struct VqLossWeights {
  double pixel_l2 = 1.0;
  double pixel_l1 = 0.0;
  double codebook = 1.0;
  double commit = 0.25;
  double scale = 1.0;
};

// What one training pass measured, unweighted sums over the pass.
struct VqPassStats {
  double pixel_sq = 0;      // sum (rec - x)^2 over `pixels` values
  double pixel_abs = 0;     // sum |rec - x|
  int64_t pixels = 0;       // B 3 H W
  double latent_sq = 0;     // sum |zq - zn|^2 over the positions (both VQ losses' value)
  int64_t latents = 0;      // B D h w values
};

// A conv of LlamaGen's usual geometry: stride 1, zero padding k/2 on every side.
Conv2dShape vq_conv_shape(int B, int cin, int cout, int H, int W, int k);
// The downsampler's: F.pad(x, (0, 1, 0, 1)) then a 3x3 stride-2 conv without padding.
Conv2dShape vq_downsampler_shape(int B, int C, int H, int W);

template <typename Real>
class VqModel {
 public:
  // The weights of a state dict; the configuration is derived from their shapes and validated
  // (VqConfig::from_shapes; `source` names the file in errors). quantize.codebook_used is ignored.
  VqModel(std::unique_ptr<ConvOps<Real>> ops, const HostTensors& tensors,
          const std::string& source);
  // Random weights from `seed` (the benchmark preset): convs uniform in +-1/sqrt(fan_in) as
  // PyTorch's default init, GroupNorm affine 1 and 0, codebook rows standard normal.
  VqModel(std::unique_ptr<ConvOps<Real>> ops, const VqConfig& config, uint64_t seed);

  const VqConfig& config() const { return config_; }
  ConvOps<Real>& ops() { return *ops_; }

  // Bytes the three activation buffers may take together (default 256 MiB); a batch is run in
  // chunks of as many images as fit (at least one).
  void set_scratch_budget(int64_t bytes) { scratch_budget_ = bytes; }
  // Images of H x W one pass runs at once under the budget.
  int images_per_pass(int H, int W) const;

  // Host arrays of Real (float, or double for the ground-truth model):
  //   images (B, 3, H, W) -> latent (B, D, H/16, W/16) = quant_conv(encoder(x)), before
  //   quantisation; enc_out (B, z_channels, H/16, W/16) = encoder(x), or null.
  void encode(const Real* images, int B, int H, int W, Real* latent, Real* enc_out = nullptr);
  // latent (B, D, h, w) -> index (B, h, w) of the nearest normalised code to the normalised
  // latent; zq (B, D, h, w) those codebook rows, or null; dist2 (B, h, w) their squared
  // distance, or null.
  void quantize(const Real* latent, int B, int h, int w, int32_t* index, Real* zq, Real* dist2);
  // zq (B, D, h, w) -> images (B, 3, 16h, 16w), unclamped (LlamaGen's decode).
  void decode(const Real* zq, int B, int h, int w, Real* images, Real* post_quant = nullptr,
              Real* dec_mid = nullptr);
  // index (B, h, w) in [0, K) -> quant (B, D, h, w) (or null) and the decoded images
  // (decode_code: embed_codes, then decode). An index out of range is a cb::Error.
  void decode_codes(const int32_t* index, int B, int h, int w, Real* images, Real* quant = nullptr,
                    Real* post_quant = nullptr, Real* dec_mid = nullptr);

  // Replaces the codebook by K rows of D = config().code_dim values (any norm; normalised here),
  // e.g. the paper's retrained 4096 codes.
  void set_codebook(int K, int D, const float* rows);

  // ---- training ----------------------------------------------------------------------------
  // Every tensor of config().tensor_shapes(), in that order, in one array in the backend's
  // memory; quantize.embedding.weight holds the codebook rows as stored (not normalised).
  const std::vector<VqParamSlot>& param_slots() const { return slots_; }
  const VqParamSlot& slot(const std::string& name) const;
  DeviceArray<Real>& params() { return params_; }
  const DeviceArray<Real>& params() const { return params_; }
  // Call after writing params() (an optimizer step, a loaded state): the normalised codebook
  // the quantiser uses is made again from the stored rows.
  void params_changed() { normalise_codebook(); }

  // One training pass over B images of H x W already in the backend's memory (B, 3, H, W): the
  // forward with a tape, the losses of `weights` against the images themselves, and the
  // backward, whose parameter gradients are ADDED to grads (backend memory, params() layout).
  // index_host (B, h, w) receives the chosen codes and latent_host (B, D, h, w) the latents
  // before normalisation, when not null. Needs no chunking: the caller sizes B.
  VqPassStats train_pass(const Real* images, int B, int H, int W, const VqLossWeights& weights,
                         Real* grads, int32_t* index_host, Real* latent_host);

 private:
  // The three activation buffers of a pass: `cur` holds the running tensor; each block writes
  // `next` (using `spare` as scratch) and then swaps it into `cur`.
  struct Acts {
    Real* cur;
    Real* next;
    Real* spare;
    void advance() { std::swap(cur, next); }
  };

  // Gradient buffers of a backward pass (vq/vq_backward.cc): `cur` holds the gradient at the
  // running tensor; each block's backward writes the gradient at its input into `next` (using
  // t1 and t2) and swaps it into `cur`. All four hold the pass's largest activation.
  struct Grads {
    Real* cur;
    Real* next;
    Real* t1;
    Real* t2;
    Real* params;  // (param count) the parameter gradients, accumulated
    void advance() { std::swap(cur, next); }
  };

  void init_random(uint64_t seed);
  // Lays out params_ for `shapes` and fills it from one host array per tensor (float or Real).
  template <typename Src>
  void build_params(const std::vector<std::pair<std::string, TensorShape>>& shapes,
                    const std::vector<const Src*>& data);
  const Real* param(const std::string& name) const;  // a weight's device pointer
  Real* grad(Real* grads, const std::string& name) const;  // its gradient in a params layout
  void normalise_codebook();
  // Copies `count` values at p onto the tape, when there is one (training).
  void save(VqTape<Real>* tape, const Real* p, int64_t count) {
    if (tape != nullptr) tape->save(p, count);
  }
  void check_image_size(int H, int W, const char* call) const;
  void check_grid(int B, int h, int w, const char* call) const;
  int64_t encoder_peak(int H, int W) const;    // largest activation of one image (values)
  int64_t decoder_peak(int h, int w) const;
  Acts acts_for(int64_t values);               // grows the three buffers to `values` each
  Real* attn_scratch(int64_t values);          // four (B, C, HW) buffers for AttnBlock

  // The call sequences, on device pointers. B images of C channels at H x W.
  void conv(const std::string& name, int B, int cin, int cout, int H, int W, int k,
            const Real* x, Real* y);
  // The blocks and the encoder and decoder save what their backward needs on `tape` when it is
  // not null (training), and nothing otherwise.
  void resnet_block(const std::string& name, int B, int cin, int cout, int H, int W, Acts& a,
                    VqTape<Real>* tape);
  void attn_block(const std::string& name, int B, int C, int H, int W, Acts& a,
                  VqTape<Real>* tape);
  void downsample(const std::string& name, int B, int C, int H, int W, Acts& a,
                  VqTape<Real>* tape);
  void upsample(const std::string& name, int B, int C, int H, int W, Acts& a,
                VqTape<Real>* tape);
  // x (B, 3, H, W) in a.cur -> encoder output (B, z, H/16, W/16) in a.cur.
  void encoder(int B, int H, int W, Acts& a, VqTape<Real>* tape = nullptr);
  // z (B, z_channels, h, w) in a.cur -> images (B, 3, 16h, 16w) in a.cur; dec_mid (B, mid,
  // h, w) is downloaded to the host array when given.
  void decoder(int B, int h, int w, Acts& a, Real* dec_mid_host, VqTape<Real>* tape = nullptr);

  // The backward call sequences (vq/vq_backward.cc), each the mirror of its forward: g.cur
  // holds the gradient at the forward's output and ends holding the gradient at its input;
  // the tensors come back off the tape in reverse order.
  void conv_backward(const std::string& name, int B, int cin, int cout, int H, int W, int k,
                     const Real* x, const Real* dy, Real* dx, Real* grads);
  void resnet_block_backward(const std::string& name, int B, int cin, int cout, int H, int W,
                             Grads& g, VqTape<Real>& tape);
  void attn_block_backward(const std::string& name, int B, int C, int H, int W, Grads& g,
                           VqTape<Real>& tape);
  void downsample_backward(const std::string& name, int B, int C, int H, int W, Grads& g,
                           VqTape<Real>& tape);
  void upsample_backward(const std::string& name, int B, int C, int H, int W, Grads& g,
                         VqTape<Real>& tape);
  // Gradient at the encoder output (B, z, h, w) in g.cur -> the parameters' (the images need
  // none).
  void encoder_backward(int B, int H, int W, Grads& g, VqTape<Real>& tape);
  // Gradient at the decoded images in g.cur -> gradient at the decoder input (B, z, h, w).
  void decoder_backward(int B, int h, int w, Grads& g, VqTape<Real>& tape);
  // zq (B, D, h, w) device -> images host; the decode taps downloaded when given.
  void decode_device(const Real* zq, int B, int h, int w, Real* images, Real* post_quant,
                     Real* dec_mid);

  VqConfig config_;
  std::unique_ptr<ConvOps<Real>> ops_;
  DeviceArray<Real> params_;           // every tensor, laid out as slots_
  std::vector<VqParamSlot> slots_;
  std::map<std::string, size_t> slot_index_;
  DeviceArray<Real> codebook_;  // (K, D), rows l2-normalised
  DeviceArray<Real> act_[3];
  DeviceArray<Real> attn_;
  DeviceArray<Real> in_;        // a chunk's input (images, latents or zq)
  DeviceArray<Real> out_;       // a chunk's latent / zq / dist2
  DeviceArray<int32_t> index_;  // a chunk's indices
  int64_t scratch_budget_ = int64_t(256) << 20;
  // Training only (vq/vq_backward.cc): the tape, the gradient buffers, the quantiser's tensors.
  std::unique_ptr<VqTape<Real>> tape_;
  DeviceArray<Real> grad_[4];
  DeviceArray<Real> train_;      // the pass's latent, zq, dist2, dz and codebook gradients
  DeviceArray<Real> loss_sums_;  // (2) pixel_loss's sums
};

extern template class VqModel<float>;
extern template class VqModel<double>;

}  // namespace cb
