// The architecture of LlamaGen's VQ-16 autoencoder (vq_model.py: Encoder, VectorQuantizer,
// Decoder) as a few numbers, derived from a checkpoint's tensor shapes and validated against
// them, so a checkpoint of any width (the real ds16 model, the small test fixture) loads
// without a separate configuration file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cb {

using TensorShape = std::vector<int64_t>;
// Tensor name -> shape, as a state dict lists them.
using ShapeTable = std::map<std::string, TensorShape>;

struct VqConfig {
  int ch = 128;                      // base channels: encoder level i has ch * ch_mult[i]
  std::vector<int> ch_mult{1, 1, 2, 2, 4};  // one entry per resolution level (encoder = decoder)
  int z_channels = 256;              // the encoder's output / the decoder's input channels
  int codebook_size = 16384;         // K
  int code_dim = 8;                  // D: quant_conv's output channels, the codebook's width
  int encoder_blocks = 2;            // ResnetBlocks per encoder level (num_res_blocks)
  int decoder_blocks = 3;            // ResnetBlocks per decoder level (num_res_blocks + 1)
  int in_channels = 3;
  int out_channels = 3;
  int groups = 32;                   // GroupNorm groups (eps 1e-6)
  // Attention sits after every ResnetBlock of the lowest-resolution level (encoder's last
  // level, decoder's first) and in the middle of both mid blocks (res, attn, res).

  int levels() const { return (int)ch_mult.size(); }
  // Total spatial downsampling: 2^(levels - 1) (16 for ds16).
  int downsample() const { return 1 << (levels() - 1); }
  int level_channels(int level) const { return ch * ch_mult[level]; }
  int mid_channels() const { return level_channels(levels() - 1); }

  // LlamaGen's released vq_ds16_c2i: ch 128, ch_mult 1,1,2,2,4, z 256, K codes of D = 8 (16384
  // as released; 4096 after the paper's retraining).
  static VqConfig ds16(int codebook_size = 16384);

  // Derives the configuration from a state dict's shapes: ch from encoder.conv_in.weight, the
  // levels and ch_mult from encoder.conv_blocks.N.res.0.conv1.weight, block counts from the key
  // names, z_channels from encoder.conv_out.weight, (K, D) from quantize.embedding.weight. Then
  // validates the whole table (validate_shapes). Throws cb::Error naming `source` and the key.
  static VqConfig from_shapes(const ShapeTable& shapes, const std::string& source);

  // Every tensor the configuration implies, in LlamaGen's state-dict order (the order of
  // vq_ds16_keys.json), without the training-only quantize.codebook_used.
  std::vector<std::pair<std::string, TensorShape>> tensor_shapes() const;

  // Every implied tensor present with exactly its shape, and nothing else except
  // quantize.codebook_used. The error names `source`, the key, and both shapes.
  void validate_shapes(const ShapeTable& shapes, const std::string& source) const;

  // Throws cb::Error naming the first impossible setting (channels not divisible by the group
  // count, no levels, ...).
  void validate() const;
};

// "[128, 3, 3, 3]"
std::string shape_text(const TensorShape& shape);

}  // namespace cb
