// The VQ-16 network (vq/vq_config.h, vq/vq_model.h); the fixture parity against PyTorch is
// tests/vq_parity.test.ts (it needs the torch checkpoint reader). Group `vq-model`:
// - the configuration: ds16's tensor list derives back to ds16 (with and without the
//   training-only codebook_used), and a wrong, missing or unexpected tensor is an error naming
//   the key and both shapes;
// - the network on a small random model: float against double on cpu-ref and cpu, a batch run
//   in chunks of one image equal to one pass, non-square images, bad sizes and codes refused.
// Group `cuda`: the same small network on the GPU against cpu-ref in double.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "harness.h"
#include "vq/conv_ops.h"
#include "vq/vq_config.h"
#include "vq/vq_model.h"
#include "vq_images.h"

namespace {

using cbt::random_images;

cb::ShapeTable table_of(const cb::VqConfig& c) {
  cb::ShapeTable t;
  for (const auto& [name, shape] : c.tensor_shapes()) t[name] = shape;
  return t;
}

// The message of the cb::Error fn throws ("" when it does not throw).
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const cb::Error& e) {
    return e.what();
  }
  return "";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT(text.find(part) != std::string::npos, "expected '" + part + "' in: '" + text + "'");
}

// Two levels (downsample 2), attention at the second; nin_shortcuts both ways.
cb::VqConfig small_config() {
  cb::VqConfig c;
  c.ch = 32;
  c.ch_mult = {1, 2};
  c.z_channels = 16;
  c.codebook_size = 24;
  c.code_dim = 4;
  c.encoder_blocks = 1;
  c.decoder_blocks = 2;
  c.validate();
  return c;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  EXPECT(a.size() == b.size(), "size mismatch");
  double m = 0;
  for (size_t i = 0; i < a.size(); i++) {
    EXPECT(std::isfinite(a[i]), "NaN or Inf at " + std::to_string(i));
    m = std::max(m, std::fabs(a[i] - b[i]));
  }
  return m;
}

// The small network on `backend` in float against cpu-ref in double: latents, indices and the
// decoded images of a 2-image non-square batch.
void expect_matches_double(const std::string& backend) {
  const cb::VqConfig c = small_config();
  const int B = 2, H = 6, W = 10, h = 3, w = 5;
  cb::VqModel<float> model(cb::make_conv_ops<float>(backend), c, 11);
  cb::VqModel<double> truth(cb::make_conv_ops<double>("cpu-ref"), c, 11);
  const std::vector<float> x = random_images(B * 3 * H * W, 4);
  const std::vector<double> xd(x.begin(), x.end());
  std::vector<float> latent(B * c.code_dim * h * w), images(x.size());
  std::vector<double> latent_d(latent.size()), images_d(x.size());
  std::vector<int32_t> index(B * h * w), index_d(index.size());
  model.encode(x.data(), B, H, W, latent.data());
  truth.encode(xd.data(), B, H, W, latent_d.data());
  const double latent_err = max_abs_diff(latent, latent_d);
  EXPECT(latent_err < 1e-5, backend + ": latent max abs error " + std::to_string(latent_err));
  model.quantize(latent.data(), B, h, w, index.data(), nullptr, nullptr);
  truth.quantize(latent_d.data(), B, h, w, index_d.data(), nullptr, nullptr);
  EXPECT(index == index_d, backend + ": indices differ from the double reference");
  model.decode_codes(index_d.data(), B, h, w, images.data());
  truth.decode_codes(index_d.data(), B, h, w, images_d.data());
  const double image_err = max_abs_diff(images, images_d);
  EXPECT(image_err < 1e-4, backend + ": image max abs error " + std::to_string(image_err));
}

}  // namespace

CB_TEST("vq-model", vq_config_ds16_round_trip) {
  const cb::VqConfig ds16 = cb::VqConfig::ds16(4096);
  cb::ShapeTable t = table_of(ds16);
  EXPECT(t.size() == 343, "ds16 implies " + std::to_string(t.size()) + " tensors, expected 343");
  EXPECT(t.at("encoder.conv_blocks.4.attn.1.proj_out.weight") == cb::TensorShape({512, 512, 1, 1}),
         "the last encoder level's second attention");
  EXPECT(t.at("decoder.conv_blocks.3.upsample.conv.weight") == cb::TensorShape({128, 128, 3, 3}),
         "the decoder's last upsample");
  t["quantize.codebook_used"] = {65536};
  const cb::VqConfig back = cb::VqConfig::from_shapes(t, "ds16");
  EXPECT(back.ch == 128 && back.ch_mult == std::vector<int>({1, 1, 2, 2, 4}) &&
             back.z_channels == 256 && back.codebook_size == 4096 && back.code_dim == 8 &&
             back.encoder_blocks == 2 && back.decoder_blocks == 3,
         "ds16 derived back from its own tensor list");
  EXPECT(back.downsample() == 16, "ds16 downsamples 16x");
}

CB_TEST("vq-model", vq_config_errors_name_the_key_and_shapes) {
  const cb::ShapeTable good = table_of(small_config());
  cb::ShapeTable t = good;
  t["decoder.mid.1.q.weight"] = {64, 64, 3, 3};
  const std::string wrong = error_of([&] { cb::VqConfig::from_shapes(t, "m.pt"); });
  expect_contains(wrong, "m.pt: tensor 'decoder.mid.1.q.weight' has shape [64, 64, 3, 3]");
  expect_contains(wrong, "expected [64, 64, 1, 1]");
  t = good;
  t.erase("decoder.conv_blocks.0.attn.1.norm.bias");
  expect_contains(error_of([&] { cb::VqConfig::from_shapes(t, "m.pt"); }),
                  "tensor 'decoder.conv_blocks.0.attn.1.norm.bias' is missing");
  t = good;
  t["encoder.extra.weight"] = {3};
  expect_contains(error_of([&] { cb::VqConfig::from_shapes(t, "m.pt"); }),
                  "unexpected tensor 'encoder.extra.weight' [3]");
  t = good;
  t.erase("encoder.conv_in.weight");
  expect_contains(error_of([&] { cb::VqConfig::from_shapes(t, "m.pt"); }),
                  "tensor 'encoder.conv_in.weight' is missing");
  EXPECT(error_of([&] { cb::VqConfig::from_shapes(good, "m.pt"); }).empty(), "the good table loads");
}

CB_TEST("vq-model", vq_model_float_matches_double_on_cpu_ref_and_cpu) {
  expect_matches_double("cpu-ref");
  expect_matches_double("cpu");
}

CB_TEST("vq-model", vq_model_chunked_batch_equals_one_pass) {
  const cb::VqConfig c = small_config();
  const int B = 3, H = 8, W = 8, h = 4, w = 4;
  cb::VqModel<float> model(cb::make_conv_ops<float>("cpu"), c, 2);
  const std::vector<float> x = random_images(B * 3 * H * W, 9);
  std::vector<float> one(B * c.code_dim * h * w), chunked(one.size());
  std::vector<float> images_one(x.size()), images_chunked(x.size());
  std::vector<float> mid_one(B * c.mid_channels() * h * w), mid_chunked(mid_one.size());
  std::vector<int32_t> index(B * h * w);
  EXPECT(model.images_per_pass(H, W) >= B, "the default budget runs the batch at once");
  model.encode(x.data(), B, H, W, one.data());
  model.quantize(one.data(), B, h, w, index.data(), nullptr, nullptr);
  model.decode_codes(index.data(), B, h, w, images_one.data(), nullptr, nullptr, mid_one.data());
  model.set_scratch_budget(1);  // one image per pass
  EXPECT(model.images_per_pass(H, W) == 1, "a tiny budget runs one image per pass");
  model.encode(x.data(), B, H, W, chunked.data());
  model.decode_codes(index.data(), B, h, w, images_chunked.data(), nullptr, nullptr,
                     mid_chunked.data());
  EXPECT(one == chunked, "chunked latents equal one pass");
  EXPECT(images_one == images_chunked && mid_one == mid_chunked, "chunked decode equals one pass");
}

CB_TEST("vq-model", vq_model_refuses_bad_sizes_and_codes) {
  cb::VqModel<float> model(cb::make_conv_ops<float>("cpu-ref"), small_config(), 1);
  std::vector<float> buf(3 * 16 * 16);
  expect_contains(error_of([&] { model.encode(buf.data(), 1, 5, 4, buf.data()); }),
                  "image sides must be positive multiples of 2");
  std::vector<int32_t> codes = {0, 24, 3, 1};
  expect_contains(error_of([&] { model.decode_codes(codes.data(), 1, 2, 2, buf.data()); }),
                  "code 24 at position 1 is outside the codebook [0, 24)");
  expect_contains(error_of([&] { model.set_codebook(2, 5, buf.data()); }),
                  "the codes have 5 dimensions, the model's latent has 4");
  // A replaced codebook of two opposite directions: every index is 0 or 1.
  const std::vector<float> book = {1, 0, 0, 0, -3, 0, 0, 0};
  model.set_codebook(2, 4, book.data());
  EXPECT(model.config().codebook_size == 2, "set_codebook sets K");
  std::vector<float> latent = {2, -1, 0, 0.5f}, zq(4);  // (1, 4, 1, 1)
  std::vector<int32_t> index(1);
  std::vector<float> dist2(1);
  model.quantize(latent.data(), 1, 1, 1, index.data(), zq.data(), dist2.data());
  EXPECT(index[0] == 0, "the latent points along +x");
  EXPECT(zq == std::vector<float>({1, 0, 0, 0}), "zq is the normalised row");
}

CB_TEST("cuda", vq_model_cuda_matches_double) { expect_matches_double("cuda"); }
