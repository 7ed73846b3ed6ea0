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

namespace cb {

// A float32 tensor on the host, as a state dict holds it (row-major, `shape`'s element count).
struct HostTensor {
  TensorShape shape;
  const float* data = nullptr;
};
using HostTensors = std::map<std::string, HostTensor>;

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

 private:
  // The three activation buffers of a pass: `cur` holds the running tensor; each block writes
  // `next` (using `spare` as scratch) and then swaps it into `cur`.
  struct Acts {
    Real* cur;
    Real* next;
    Real* spare;
    void advance() { std::swap(cur, next); }
  };

  void init_random(uint64_t seed);
  void upload(const std::string& name, const TensorShape& shape, const float* data);
  const Real* param(const std::string& name) const;  // a weight's device pointer
  void normalise_codebook();
  void check_image_size(int H, int W, const char* call) const;
  void check_grid(int B, int h, int w, const char* call) const;
  int64_t encoder_peak(int H, int W) const;    // largest activation of one image (values)
  int64_t decoder_peak(int h, int w) const;
  Acts acts_for(int64_t values);               // grows the three buffers to `values` each
  Real* attn_scratch(int64_t values);          // four (B, C, HW) buffers for AttnBlock

  // The call sequences, on device pointers. B images of C channels at H x W.
  void conv(const std::string& name, int B, int cin, int cout, int H, int W, int k,
            const Real* x, Real* y);
  void resnet_block(const std::string& name, int B, int cin, int cout, int H, int W, Acts& a);
  void attn_block(const std::string& name, int B, int C, int H, int W, Acts& a);
  void downsample(const std::string& name, int B, int C, int H, int W, Acts& a);
  void upsample(const std::string& name, int B, int C, int H, int W, Acts& a);
  // x (B, 3, H, W) in a.cur -> encoder output (B, z, H/16, W/16) in a.cur.
  void encoder(int B, int H, int W, Acts& a);
  // z (B, z_channels, h, w) in a.cur -> images (B, 3, 16h, 16w) in a.cur; dec_mid (B, mid,
  // h, w) is downloaded to the host array when given.
  void decoder(int B, int h, int w, Acts& a, Real* dec_mid_host);
  // zq (B, D, h, w) device -> images host; the decode taps downloaded when given.
  void decode_device(const Real* zq, int B, int h, int w, Real* images, Real* post_quant,
                     Real* dec_mid);

  VqConfig config_;
  std::unique_ptr<ConvOps<Real>> ops_;
  std::map<std::string, DeviceArray<Real>> weights_;
  DeviceArray<Real> codebook_;  // (K, D), rows l2-normalised
  DeviceArray<Real> act_[3];
  DeviceArray<Real> attn_;
  DeviceArray<Real> in_;        // a chunk's input (images, latents or zq)
  DeviceArray<Real> out_;       // a chunk's latent / zq / dist2
  DeviceArray<int32_t> index_;  // a chunk's indices
  int64_t scratch_budget_ = int64_t(256) << 20;
};

extern template class VqModel<float>;
extern template class VqModel<double>;

}  // namespace cb
