// VqConfig: derivation from a state dict's shapes, validation, and the implied tensor list.
#include "vq/vq_config.h"

#include <set>

#include "error.h"

namespace cb {
namespace {

const char* kCodebookUsed = "quantize.codebook_used";  // training-only usage counts; ignored

// The shape of `key`, or an error naming the missing key.
const TensorShape& need(const ShapeTable& shapes, const std::string& key,
                        const std::string& source) {
  auto it = shapes.find(key);
  CB_CHECK(it != shapes.end(),
           source + ": not a LlamaGen VQ checkpoint: tensor '" + key + "' is missing");
  return it->second;
}

// Dimension `dim` of `key`, checked to exist and to be a positive int.
int dim_of(const ShapeTable& shapes, const std::string& key, size_t dim, size_t rank,
           const std::string& source) {
  const TensorShape& s = need(shapes, key, source);
  CB_CHECK(s.size() == rank, source + ": tensor '" + key + "' has shape " + shape_text(s) +
                                 ", expected " + std::to_string(rank) + " dimensions");
  CB_CHECK(s[dim] >= 1 && s[dim] <= (int64_t(1) << 30),
           source + ": tensor '" + key + "' has shape " + shape_text(s) + " (a bad size)");
  return (int)s[dim];
}

// How many of prefix0., prefix1., ... exist as a prefix of some key (they must be contiguous).
int count_indexed(const ShapeTable& shapes, const std::string& prefix) {
  int n = 0;
  for (;; n++) {
    const std::string p = prefix + std::to_string(n) + ".";
    auto it = shapes.lower_bound(p);
    if (it == shapes.end() || it->first.compare(0, p.size(), p) != 0) return n;
  }
}

using Entries = std::vector<std::pair<std::string, TensorShape>>;

void add_conv(Entries& out, const std::string& name, int cout, int cin, int k) {
  out.push_back({name + ".weight", {cout, cin, k, k}});
  out.push_back({name + ".bias", {cout}});
}

void add_norm(Entries& out, const std::string& name, int c) {
  out.push_back({name + ".weight", {c}});
  out.push_back({name + ".bias", {c}});
}

// ResnetBlock(cin -> cout): norm1, conv1, norm2, conv2, nin_shortcut when the width changes.
void add_resnet(Entries& out, const std::string& name, int cin, int cout) {
  add_norm(out, name + ".norm1", cin);
  add_conv(out, name + ".conv1", cout, cin, 3);
  add_norm(out, name + ".norm2", cout);
  add_conv(out, name + ".conv2", cout, cout, 3);
  if (cin != cout) add_conv(out, name + ".nin_shortcut", cout, cin, 1);
}

// AttnBlock(c): norm, q, k, v, proj_out (1x1 convs).
void add_attn(Entries& out, const std::string& name, int c) {
  add_norm(out, name + ".norm", c);
  for (const char* p : {".q", ".k", ".v", ".proj_out"}) add_conv(out, name + p, c, c, 1);
}

}  // namespace

std::string shape_text(const TensorShape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

VqConfig VqConfig::ds16(int codebook_size) {
  VqConfig c;  // the defaults are ds16's
  c.codebook_size = codebook_size;
  c.validate();
  return c;
}

void VqConfig::validate() const {
  CB_CHECK(!ch_mult.empty() && ch_mult.size() <= 8,
           "VQ config: ch_mult must have 1 to 8 levels, got " + std::to_string(ch_mult.size()));
  CB_CHECK(groups >= 1, "VQ config: groups must be at least 1");
  CB_CHECK(ch >= 1 && ch % groups == 0, "VQ config: ch " + std::to_string(ch) +
                                            " must be a positive multiple of the " +
                                            std::to_string(groups) + " GroupNorm groups");
  for (int m : ch_mult) {
    CB_CHECK(m >= 1 && m <= 64, "VQ config: every ch_mult entry must be in [1, 64], got " +
                                    std::to_string(m));
  }
  CB_CHECK(z_channels >= 1, "VQ config: z_channels must be positive");
  CB_CHECK(codebook_size >= 1 && code_dim >= 1,
           "VQ config: the codebook needs at least one code of at least one dimension");
  CB_CHECK(encoder_blocks >= 1 && decoder_blocks >= 1 && encoder_blocks <= 64 &&
               decoder_blocks <= 64,
           "VQ config: blocks per level must be in [1, 64]");
  CB_CHECK(in_channels >= 1 && out_channels >= 1, "VQ config: image channels must be positive");
}

std::vector<std::pair<std::string, TensorShape>> VqConfig::tensor_shapes() const {
  Entries out;
  const int L = levels();
  // Encoder: level i maps ch * in_mult[i] -> ch * ch_mult[i] (in_mult = (1,) + ch_mult).
  add_conv(out, "encoder.conv_in", ch, in_channels, 3);
  int width = ch;
  for (int i = 0; i < L; i++) {
    const std::string level = "encoder.conv_blocks." + std::to_string(i);
    const int level_out = level_channels(i);
    for (int j = 0; j < encoder_blocks; j++) {
      add_resnet(out, level + ".res." + std::to_string(j), width, level_out);
      width = level_out;
    }
    if (i == L - 1) {
      for (int j = 0; j < encoder_blocks; j++) add_attn(out, level + ".attn." + std::to_string(j), width);
    } else {
      add_conv(out, level + ".downsample.conv", width, width, 3);
    }
  }
  add_resnet(out, "encoder.mid.0", width, width);
  add_attn(out, "encoder.mid.1", width);
  add_resnet(out, "encoder.mid.2", width, width);
  add_norm(out, "encoder.norm_out", width);
  add_conv(out, "encoder.conv_out", z_channels, width, 3);
  // Decoder: conv_blocks[i] runs level L-1-i, widening back out to ch.
  width = mid_channels();
  add_conv(out, "decoder.conv_in", width, z_channels, 3);
  add_resnet(out, "decoder.mid.0", width, width);
  add_attn(out, "decoder.mid.1", width);
  add_resnet(out, "decoder.mid.2", width, width);
  for (int i = 0; i < L; i++) {
    const std::string level = "decoder.conv_blocks." + std::to_string(i);
    const int level_out = level_channels(L - 1 - i);
    for (int j = 0; j < decoder_blocks; j++) {
      add_resnet(out, level + ".res." + std::to_string(j), width, level_out);
      width = level_out;
    }
    if (i == 0) {
      for (int j = 0; j < decoder_blocks; j++) add_attn(out, level + ".attn." + std::to_string(j), width);
    }
    if (i != L - 1) add_conv(out, level + ".upsample.conv", width, width, 3);
  }
  add_norm(out, "decoder.norm_out", width);
  add_conv(out, "decoder.conv_out", out_channels, width, 3);
  out.push_back({"quantize.embedding.weight", {codebook_size, code_dim}});
  add_conv(out, "quant_conv", code_dim, z_channels, 1);
  add_conv(out, "post_quant_conv", z_channels, code_dim, 1);
  return out;
}

void VqConfig::validate_shapes(const ShapeTable& shapes, const std::string& source) const {
  std::set<std::string> expected;
  for (const auto& [key, shape] : tensor_shapes()) {
    const TensorShape& got = need(shapes, key, source);
    CB_CHECK(got == shape, source + ": tensor '" + key + "' has shape " + shape_text(got) +
                               ", expected " + shape_text(shape) +
                               " (from the architecture its other tensors imply)");
    expected.insert(key);
  }
  for (const auto& [key, shape] : shapes) {
    CB_CHECK(expected.count(key) == 1 || key == kCodebookUsed,
             source + ": unexpected tensor '" + key + "' " + shape_text(shape) +
                 " (not part of LlamaGen's VQ model)");
  }
}

VqConfig VqConfig::from_shapes(const ShapeTable& shapes, const std::string& source) {
  VqConfig c;
  c.ch = dim_of(shapes, "encoder.conv_in.weight", 0, 4, source);
  c.in_channels = dim_of(shapes, "encoder.conv_in.weight", 1, 4, source);
  c.out_channels = dim_of(shapes, "decoder.conv_out.weight", 0, 4, source);
  const int levels = count_indexed(shapes, "encoder.conv_blocks.");
  CB_CHECK(levels >= 1 && levels <= 8,
           source + ": expected 1 to 8 encoder levels (encoder.conv_blocks.N), found " +
               std::to_string(levels));
  c.ch_mult.clear();
  for (int i = 0; i < levels; i++) {
    const std::string key = "encoder.conv_blocks." + std::to_string(i) + ".res.0.conv1.weight";
    const int width = dim_of(shapes, key, 0, 4, source);
    CB_CHECK(width % c.ch == 0, source + ": tensor '" + key + "' has " + std::to_string(width) +
                                    " output channels, not a multiple of ch = " +
                                    std::to_string(c.ch));
    c.ch_mult.push_back(width / c.ch);
  }
  c.encoder_blocks = count_indexed(shapes, "encoder.conv_blocks.0.res.");
  c.decoder_blocks = count_indexed(shapes, "decoder.conv_blocks.0.res.");
  c.z_channels = dim_of(shapes, "encoder.conv_out.weight", 0, 4, source);
  c.codebook_size = dim_of(shapes, "quantize.embedding.weight", 0, 2, source);
  c.code_dim = dim_of(shapes, "quantize.embedding.weight", 1, 2, source);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(source + ": " + e.what(), e.file().c_str(), e.line());
  }
  c.validate_shapes(shapes, source);
  return c;
}

}  // namespace cb
