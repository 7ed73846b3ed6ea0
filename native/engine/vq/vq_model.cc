// VqModel: loading, chunking, and the encoder / quantiser / decoder call sequences, mirroring
// LlamaGen's vq_model.py (Encoder.forward, VectorQuantizer.forward, Decoder.forward).
#include "vq/vq_model.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "error.h"

namespace cb {
namespace {

constexpr float kNormEps = 1e-6f;  // LlamaGen's Normalize: GroupNorm(32, eps=1e-6, affine)

// Deterministic on every platform (std's distributions are implementation-defined).
double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

double standard_normal(std::mt19937_64& rng) {
  const double u = 1.0 - uniform01(rng), v = uniform01(rng);  // u in (0, 1]
  return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
}

int64_t element_count(const TensorShape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// "encoder.mid.0.norm1.weight" -> "norm1": the module a parameter belongs to.
std::string module_of(const std::string& name) {
  const size_t last = name.rfind('.');
  const size_t before = name.rfind('.', last - 1);
  return name.substr(before + 1, last - before - 1);
}

std::string block(const std::string& prefix, int i) { return prefix + "." + std::to_string(i); }

}  // namespace

template <typename Real>
VqModel<Real>::VqModel(std::unique_ptr<ConvOps<Real>> ops, const HostTensors& tensors,
                       const std::string& source)
    : ops_(std::move(ops)) {
  ShapeTable shapes;
  for (const auto& [name, t] : tensors) shapes[name] = t.shape;
  config_ = VqConfig::from_shapes(shapes, source);
  const auto layout = config_.tensor_shapes();
  std::vector<const float*> data;
  for (const auto& [name, shape] : layout) {
    const HostTensor& t = tensors.at(name);
    CB_CHECK(t.data != nullptr || element_count(shape) == 0,
             source + ": tensor '" + name + "' has no data");
    data.push_back(t.data);
  }
  build_params(layout, data);
  normalise_codebook();
}

template <typename Real>
VqModel<Real>::VqModel(std::unique_ptr<ConvOps<Real>> ops, const VqConfig& config, uint64_t seed)
    : config_(config), ops_(std::move(ops)) {
  config_.validate();
  init_random(seed);
  normalise_codebook();
}

template <typename Real>
void VqModel<Real>::init_random(uint64_t seed) {
  std::mt19937_64 rng(seed);
  double conv_bound = 0;  // of the conv whose weight came last: its bias uses the same bound
  const auto layout = config_.tensor_shapes();
  std::vector<std::vector<float>> values;
  for (const auto& [name, shape] : layout) {
    values.emplace_back((size_t)element_count(shape));
    std::vector<float>& v = values.back();
    const bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    if (name == "quantize.embedding.weight") {
      for (float& x : v) x = (float)standard_normal(rng);
    } else if (module_of(name).compare(0, 4, "norm") == 0) {
      std::fill(v.begin(), v.end(), is_weight ? 1.0f : 0.0f);
    } else {
      if (is_weight) conv_bound = 1.0 / std::sqrt(double(shape[1] * shape[2] * shape[3]));
      for (float& x : v) x = (float)((2 * uniform01(rng) - 1) * conv_bound);
    }
  }
  std::vector<const float*> data;
  for (const auto& v : values) data.push_back(v.data());
  build_params(layout, data);
}

template <typename Real>
template <typename Src>
void VqModel<Real>::build_params(const std::vector<std::pair<std::string, TensorShape>>& shapes,
                                 const std::vector<const Src*>& data) {
  slots_.clear();
  slot_index_.clear();
  int64_t total = 0;
  for (const auto& [name, shape] : shapes) {
    slot_index_[name] = slots_.size();
    slots_.push_back({name, shape, total, element_count(shape)});
    total += element_count(shape);
  }
  std::vector<Real> host((size_t)total);
  for (size_t i = 0; i < slots_.size(); i++) {
    if (slots_[i].count > 0) {
      std::copy(data[i], data[i] + slots_[i].count, host.begin() + slots_[i].offset);
    }
  }
  params_.bind(ops_->memory());
  params_.resize(total);
  params_.upload(host.data(), total);
  codebook_.bind(ops_->memory());
  codebook_.resize(slot("quantize.embedding.weight").count);
}

template <typename Real>
const VqParamSlot& VqModel<Real>::slot(const std::string& name) const {
  auto it = slot_index_.find(name);
  CB_CHECK(it != slot_index_.end(), "VQ model: no weight '" + name + "'");  // a bug, not input
  return slots_[it->second];
}

template <typename Real>
const Real* VqModel<Real>::param(const std::string& name) const {
  return params_.data() + slot(name).offset;
}

template <typename Real>
Real* VqModel<Real>::grad(Real* grads, const std::string& name) const {
  return grads + slot(name).offset;
}

// The codebook the quantiser uses: the stored rows, l2-normalised.
template <typename Real>
void VqModel<Real>::normalise_codebook() {
  ops_->l2_normalize_rows(config_.codebook_size, config_.code_dim,
                          param("quantize.embedding.weight"), codebook_.data());
}

template <typename Real>
void VqModel<Real>::set_codebook(int K, int D, const float* rows) {
  CB_CHECK(D == config_.code_dim, "set_codebook: the codes have " + std::to_string(D) +
                                      " dimensions, the model's latent has " +
                                      std::to_string(config_.code_dim));
  CB_CHECK(K >= 1 && K <= (1 << 30), "set_codebook: K must be in [1, 2^30], got " +
                                         std::to_string(K));
  // The other tensors keep their values; the array is laid out again for the new K.
  std::vector<Real> old((size_t)params_.size());
  params_.download(old.data(), params_.size());
  const std::vector<Real> new_rows(rows, rows + int64_t(K) * D);
  const std::vector<VqParamSlot> old_slots = slots_;
  config_.codebook_size = K;
  const auto layout = config_.tensor_shapes();
  std::vector<const Real*> data;
  for (const auto& [name, shape] : layout) {
    if (name == "quantize.embedding.weight") {
      data.push_back(new_rows.data());
      continue;
    }
    for (const VqParamSlot& s : old_slots) {
      if (s.name == name) data.push_back(old.data() + s.offset);
    }
  }
  build_params(layout, data);
  normalise_codebook();
}

// ---- sizes and scratch ----------------------------------------------------------------------

template <typename Real>
void VqModel<Real>::check_image_size(int H, int W, const char* call) const {
  const int f = config_.downsample();
  CB_CHECK(H >= f && W >= f && H % f == 0 && W % f == 0 && H <= (1 << 15) && W <= (1 << 15),
           std::string(call) + ": image sides must be positive multiples of " +
               std::to_string(f) + " up to 32768, got " + std::to_string(H) + " x " +
               std::to_string(W));
}

template <typename Real>
void VqModel<Real>::check_grid(int B, int h, int w, const char* call) const {
  CB_CHECK(B >= 0 && h >= 1 && w >= 1 && int64_t(h) * config_.downsample() <= (1 << 15) &&
               int64_t(w) * config_.downsample() <= (1 << 15),
           std::string(call) + ": bad latent grid " + std::to_string(B) + " x " +
               std::to_string(h) + " x " + std::to_string(w));
}

template <typename Real>
int64_t VqModel<Real>::encoder_peak(int H, int W) const {
  int64_t peak = int64_t(config_.in_channels) * H * W;
  int64_t side = int64_t(H) * W;
  int width = config_.ch;
  for (int i = 0; i < config_.levels(); i++) {
    const int out = config_.level_channels(i);
    peak = std::max(peak, int64_t(std::max(width, out)) * side);
    width = out;
    if (i != config_.levels() - 1) side /= 4;
  }
  return std::max(peak, int64_t(config_.z_channels) * side);
}

template <typename Real>
int64_t VqModel<Real>::decoder_peak(int h, int w) const {
  int64_t side = int64_t(h) * w;
  int width = config_.mid_channels();
  int64_t peak = int64_t(std::max(width, std::max(config_.z_channels, config_.code_dim))) * side;
  for (int i = 0; i < config_.levels(); i++) {
    const int out = config_.level_channels(config_.levels() - 1 - i);
    peak = std::max(peak, int64_t(std::max(width, out)) * side);
    width = out;
    if (i != config_.levels() - 1) {
      side *= 4;
      peak = std::max(peak, int64_t(width) * side);  // the upsampled tensor
    }
  }
  return std::max(peak, int64_t(config_.out_channels) * side);
}

template <typename Real>
int VqModel<Real>::images_per_pass(int H, int W) const {
  const int f = config_.downsample();
  const int64_t peak = std::max(encoder_peak(H, W), decoder_peak(H / f, W / f));
  const int64_t fit = scratch_budget_ / (3 * int64_t(sizeof(Real)) * peak);
  return (int)std::max<int64_t>(1, std::min<int64_t>(fit, 1 << 20));
}

template <typename Real>
typename VqModel<Real>::Acts VqModel<Real>::acts_for(int64_t values) {
  for (DeviceArray<Real>& a : act_) {
    a.bind(ops_->memory());
    a.reserve(values);
  }
  return Acts{act_[0].data(), act_[1].data(), act_[2].data()};
}

template <typename Real>
Real* VqModel<Real>::attn_scratch(int64_t values) {
  attn_.bind(ops_->memory());
  return attn_.reserve(values);
}

// ---- blocks ---------------------------------------------------------------------------------

Conv2dShape vq_conv_shape(int B, int cin, int cout, int H, int W, int k) {
  Conv2dShape s;
  s.B = B;
  s.Cin = cin;
  s.H = H;
  s.W = W;
  s.Cout = cout;
  s.k = k;
  s.pad_begin = s.pad_end = k / 2;
  return s;
}

template <typename Real>
void VqModel<Real>::conv(const std::string& name, int B, int cin, int cout, int H, int W, int k,
                         const Real* x,  // (B, cin, H, W)
                         Real* y) {      // (B, cout, H, W)
  ops_->conv2d(vq_conv_shape(B, cin, cout, H, W, k), x, param(name + ".weight"),
               param(name + ".bias"), y);
}

// ResnetBlock: x + conv2(swish(norm2(conv1(swish(norm1(x)))))), x through nin_shortcut (1x1)
// when the width changes. a.cur (B, cin, H, W) -> a.cur (B, cout, H, W).
// Saved for the backward: x, the two convs' inputs and conv1's output (norm2's input).
template <typename Real>
void VqModel<Real>::resnet_block(const std::string& name, int B, int cin, int cout, int H, int W,
                                 Acts& a, VqTape<Real>* tape) {
  const int64_t HW = int64_t(H) * W, n_in = int64_t(B) * cin * HW, n_out = int64_t(B) * cout * HW;
  const int G = config_.groups;
  save(tape, a.cur, n_in);
  ops_->group_norm_swish(B, cin, HW, G, kNormEps, a.cur, param(name + ".norm1.weight"),
                         param(name + ".norm1.bias"), a.next);                 // (B, cin, H, W)
  save(tape, a.next, n_in);
  conv(name + ".conv1", B, cin, cout, H, W, 3, a.next, a.spare);           // (B, cout, H, W)
  save(tape, a.spare, n_out);
  ops_->group_norm_swish(B, cout, HW, G, kNormEps, a.spare, param(name + ".norm2.weight"),
                         param(name + ".norm2.bias"), a.spare);                // (B, cout, H, W)
  save(tape, a.spare, n_out);
  conv(name + ".conv2", B, cout, cout, H, W, 3, a.spare, a.next);          // (B, cout, H, W)
  if (cin != cout) {
    conv(name + ".nin_shortcut", B, cin, cout, H, W, 1, a.cur, a.spare);   // (B, cout, H, W)
    ops_->add_inplace(n_out, a.next, a.spare);
  } else {
    ops_->add_inplace(n_out, a.next, a.cur);
  }
  a.advance();
}

// AttnBlock: x + proj_out(attention(q, k, v)), q/k/v 1x1 convs of norm(x); one head over the
// H*W positions. a.cur (B, C, H, W) -> a.cur (B, C, H, W).
// Saved for the backward: x, norm(x), q, k, v and the attention's output.
template <typename Real>
void VqModel<Real>::attn_block(const std::string& name, int B, int C, int H, int W, Acts& a,
                               VqTape<Real>* tape) {
  const int64_t HW = int64_t(H) * W, n = int64_t(B) * C * HW;
  Real* q = attn_scratch(4 * n);  // (B, C, HW) each: q, k, v, attended
  Real* k = q + n;
  Real* v = k + n;
  Real* o = v + n;
  save(tape, a.cur, n);
  ops_->group_norm(B, C, HW, config_.groups, kNormEps, a.cur, param(name + ".norm.weight"),
                   param(name + ".norm.bias"), a.next);                       // (B, C, H, W)
  save(tape, a.next, n);
  conv(name + ".q", B, C, C, H, W, 1, a.next, q);
  conv(name + ".k", B, C, C, H, W, 1, a.next, k);
  conv(name + ".v", B, C, C, H, W, 1, a.next, v);
  save(tape, q, n);
  save(tape, k, n);
  save(tape, v, n);
  ops_->spatial_attention(B, C, HW, q, k, v, o);                          // (B, C, HW)
  save(tape, o, n);
  conv(name + ".proj_out", B, C, C, H, W, 1, o, a.next);                  // (B, C, H, W)
  ops_->add_inplace(n, a.next, a.cur);
  a.advance();
}

Conv2dShape vq_downsampler_shape(int B, int C, int H, int W) {
  Conv2dShape s;
  s.B = B;
  s.Cin = C;
  s.H = H;
  s.W = W;
  s.Cout = C;
  s.k = 3;
  s.stride = 2;
  s.pad_begin = 0;
  s.pad_end = 1;
  return s;
}

// Downsample: a.cur (B, C, H, W) -> a.cur (B, C, H/2, W/2). Saved: x.
template <typename Real>
void VqModel<Real>::downsample(const std::string& name, int B, int C, int H, int W, Acts& a,
                               VqTape<Real>* tape) {
  save(tape, a.cur, int64_t(B) * C * H * W);
  ops_->conv2d(vq_downsampler_shape(B, C, H, W), a.cur, param(name + ".conv.weight"),
               param(name + ".conv.bias"), a.next);
  a.advance();
}

// Upsample: nearest 2x, then a 3x3 conv. a.cur (B, C, H, W) -> a.cur (B, C, 2H, 2W).
// Saved: the upsampled tensor (the conv's input).
template <typename Real>
void VqModel<Real>::upsample(const std::string& name, int B, int C, int H, int W, Acts& a,
                             VqTape<Real>* tape) {
  ops_->upsample_nearest2x(B, C, H, W, a.cur, a.next);        // (B, C, 2H, 2W)
  save(tape, a.next, int64_t(B) * C * 4 * H * W);
  conv(name + ".conv", B, C, C, 2 * H, 2 * W, 3, a.next, a.cur);  // (B, C, 2H, 2W)
}

// ---- encoder and decoder --------------------------------------------------------------------

template <typename Real>
void VqModel<Real>::encoder(int B, int H, int W, Acts& a, VqTape<Real>* tape) {
  const VqConfig& c = config_;
  const int L = c.levels();
  save(tape, a.cur, int64_t(B) * c.in_channels * H * W);
  conv("encoder.conv_in", B, c.in_channels, c.ch, H, W, 3, a.cur, a.next);  // (B, ch, H, W)
  a.advance();
  int width = c.ch;
  for (int i = 0; i < L; i++) {
    const std::string level = block("encoder.conv_blocks", i);
    for (int j = 0; j < c.encoder_blocks; j++) {
      resnet_block(block(level + ".res", j), B, width, c.level_channels(i), H, W, a, tape);
      width = c.level_channels(i);
      if (i == L - 1) attn_block(block(level + ".attn", j), B, width, H, W, a, tape);
    }
    if (i != L - 1) {
      downsample(level + ".downsample", B, width, H, W, a, tape);  // (B, width, H/2, W/2)
      H /= 2;
      W /= 2;
    }
  }
  resnet_block("encoder.mid.0", B, width, width, H, W, a, tape);
  attn_block("encoder.mid.1", B, width, H, W, a, tape);
  resnet_block("encoder.mid.2", B, width, width, H, W, a, tape);
  const int64_t HW = int64_t(H) * W;
  save(tape, a.cur, B * width * HW);
  ops_->group_norm_swish(B, width, HW, c.groups, kNormEps, a.cur,
                         param("encoder.norm_out.weight"), param("encoder.norm_out.bias"), a.cur);
  save(tape, a.cur, B * width * HW);
  conv("encoder.conv_out", B, width, c.z_channels, H, W, 3, a.cur, a.next);  // (B, z, h, w)
  a.advance();
}

template <typename Real>
void VqModel<Real>::decoder(int B, int h, int w, Acts& a, Real* dec_mid_host,
                            VqTape<Real>* tape) {
  const VqConfig& c = config_;
  const int L = c.levels();
  int width = c.mid_channels(), H = h, W = w;
  save(tape, a.cur, int64_t(B) * c.z_channels * H * W);
  conv("decoder.conv_in", B, c.z_channels, width, H, W, 3, a.cur, a.next);  // (B, mid, h, w)
  a.advance();
  resnet_block("decoder.mid.0", B, width, width, H, W, a, tape);
  attn_block("decoder.mid.1", B, width, H, W, a, tape);
  resnet_block("decoder.mid.2", B, width, width, H, W, a, tape);
  if (dec_mid_host != nullptr) {
    ops_->memory().download(dec_mid_host, a.cur, sizeof(Real) * B * width * H * W);
  }
  // conv_blocks[i] runs level L-1-i: index 0 is the lowest resolution, with attention.
  for (int i = 0; i < L; i++) {
    const std::string level = block("decoder.conv_blocks", i);
    const int out = c.level_channels(L - 1 - i);
    for (int j = 0; j < c.decoder_blocks; j++) {
      resnet_block(block(level + ".res", j), B, width, out, H, W, a, tape);
      width = out;
      if (i == 0) attn_block(block(level + ".attn", j), B, width, H, W, a, tape);
    }
    if (i != L - 1) {
      upsample(level + ".upsample", B, width, H, W, a, tape);  // (B, width, 2H, 2W)
      H *= 2;
      W *= 2;
    }
  }
  const int64_t HW = int64_t(H) * W;
  save(tape, a.cur, B * width * HW);
  ops_->group_norm_swish(B, width, HW, c.groups, kNormEps, a.cur,
                         param("decoder.norm_out.weight"), param("decoder.norm_out.bias"), a.cur);
  save(tape, a.cur, B * width * HW);
  conv("decoder.conv_out", B, width, c.out_channels, H, W, 3, a.cur, a.next);  // (B, 3, 16h, 16w)
  a.advance();
}

// ---- the public calls (host arrays, chunked) ------------------------------------------------

template <typename Real>
void VqModel<Real>::encode(const Real* images, int B, int H, int W, Real* latent, Real* enc_out) {
  check_image_size(H, W, "encode");
  CB_CHECK(B >= 0, "encode: negative batch");
  DeviceMemory& mem = ops_->memory();
  const VqConfig& c = config_;
  const int f = c.downsample(), h = H / f, w = W / f;
  const int per_pass = images_per_pass(H, W);
  const int64_t image_values = int64_t(c.in_channels) * H * W;
  const int64_t latent_values = int64_t(c.code_dim) * h * w, z_values = int64_t(c.z_channels) * h * w;
  for (int b0 = 0; b0 < B; b0 += per_pass) {
    const int nb = std::min(per_pass, B - b0);
    Acts a = acts_for(nb * encoder_peak(H, W));
    mem.upload(a.cur, images + b0 * image_values, sizeof(Real) * nb * image_values);
    encoder(nb, H, W, a);  // (nb, z, h, w) in a.cur
    if (enc_out != nullptr) {
      mem.download(enc_out + b0 * z_values, a.cur, sizeof(Real) * nb * z_values);
    }
    conv("quant_conv", nb, c.z_channels, c.code_dim, h, w, 1, a.cur, a.next);  // (nb, D, h, w)
    mem.download(latent + b0 * latent_values, a.next, sizeof(Real) * nb * latent_values);
  }
}

template <typename Real>
void VqModel<Real>::quantize(const Real* latent, int B, int h, int w, int32_t* index, Real* zq,
                             Real* dist2) {
  check_grid(B, h, w, "quantize");
  DeviceMemory& mem = ops_->memory();
  const int D = config_.code_dim;
  const int64_t HW = int64_t(h) * w, n = B * HW;
  in_.bind(mem);
  out_.bind(mem);
  index_.bind(mem);
  Real* z_dev = in_.reserve(n * D);         // (B, D, HW)
  Real* zq_dev = out_.reserve(n * D + n);   // (B, D, HW), then dist2 (B, HW)
  Real* d2_dev = zq_dev + n * D;
  int32_t* index_dev = index_.reserve(n);   // (B, HW)
  mem.upload(z_dev, latent, sizeof(Real) * n * D);
  ops_->quantize_l2(B, D, HW, z_dev, codebook_.data(), config_.codebook_size, index_dev,
                    zq != nullptr ? zq_dev : nullptr, dist2 != nullptr ? d2_dev : nullptr);
  mem.download(index, index_dev, sizeof(int32_t) * n);
  if (zq != nullptr) mem.download(zq, zq_dev, sizeof(Real) * n * D);
  if (dist2 != nullptr) mem.download(dist2, d2_dev, sizeof(Real) * n);
}

template <typename Real>
void VqModel<Real>::decode_device(const Real* zq, int B, int h, int w, Real* images,
                                  Real* post_quant, Real* dec_mid) {
  const VqConfig& c = config_;
  Acts a = acts_for(B * decoder_peak(h, w));
  conv("post_quant_conv", B, c.code_dim, c.z_channels, h, w, 1, zq, a.cur);  // (B, z, h, w)
  if (post_quant != nullptr) {
    ops_->memory().download(post_quant, a.cur, sizeof(Real) * B * c.z_channels * h * w);
  }
  decoder(B, h, w, a, dec_mid);  // (B, 3, 16h, 16w) in a.cur
  const int64_t f = c.downsample();
  ops_->memory().download(images, a.cur, sizeof(Real) * B * c.out_channels * (h * f) * (w * f));
}

template <typename Real>
void VqModel<Real>::decode(const Real* zq, int B, int h, int w, Real* images, Real* post_quant,
                           Real* dec_mid) {
  check_grid(B, h, w, "decode");
  const VqConfig& c = config_;
  const int f = c.downsample();
  const int per_pass = images_per_pass(h * f, w * f);
  const int64_t HW = int64_t(h) * w, image_values = int64_t(c.out_channels) * HW * f * f;
  in_.bind(ops_->memory());
  for (int b0 = 0; b0 < B; b0 += per_pass) {
    const int nb = std::min(per_pass, B - b0);
    Real* zq_dev = in_.reserve(nb * c.code_dim * HW);  // (nb, D, h, w)
    ops_->memory().upload(zq_dev, zq + b0 * c.code_dim * HW, sizeof(Real) * nb * c.code_dim * HW);
    decode_device(zq_dev, nb, h, w, images + b0 * image_values,
                  post_quant != nullptr ? post_quant + b0 * c.z_channels * HW : nullptr,
                  dec_mid != nullptr ? dec_mid + b0 * c.mid_channels() * HW : nullptr);
  }
}

template <typename Real>
void VqModel<Real>::decode_codes(const int32_t* index, int B, int h, int w, Real* images,
                                 Real* quant, Real* post_quant, Real* dec_mid) {
  check_grid(B, h, w, "decode_codes");
  const VqConfig& c = config_;
  const int64_t HW = int64_t(h) * w;
  for (int64_t i = 0; i < B * HW; i++) {
    CB_CHECK(index[i] >= 0 && index[i] < c.codebook_size,
             "decode_codes: code " + std::to_string(index[i]) + " at position " +
                 std::to_string(i) + " is outside the codebook [0, " +
                 std::to_string(c.codebook_size) + ")");
  }
  const int f = c.downsample();
  const int per_pass = images_per_pass(h * f, w * f);
  const int64_t image_values = int64_t(c.out_channels) * HW * f * f;
  DeviceMemory& mem = ops_->memory();
  in_.bind(mem);
  index_.bind(mem);
  for (int b0 = 0; b0 < B; b0 += per_pass) {
    const int nb = std::min(per_pass, B - b0);
    int32_t* index_dev = index_.reserve(nb * HW);         // (nb, h, w)
    Real* zq_dev = in_.reserve(nb * c.code_dim * HW);     // (nb, D, h, w)
    mem.upload(index_dev, index + b0 * HW, sizeof(int32_t) * nb * HW);
    ops_->embed_codes(nb, c.code_dim, HW, index_dev, codebook_.data(), c.codebook_size, zq_dev);
    if (quant != nullptr) {
      mem.download(quant + b0 * c.code_dim * HW, zq_dev, sizeof(Real) * nb * c.code_dim * HW);
    }
    decode_device(zq_dev, nb, h, w, images + b0 * image_values,
                  post_quant != nullptr ? post_quant + b0 * c.z_channels * HW : nullptr,
                  dec_mid != nullptr ? dec_mid + b0 * c.mid_channels() * HW : nullptr);
  }
}

template class VqModel<float>;
template class VqModel<double>;

}  // namespace cb
