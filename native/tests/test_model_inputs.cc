// The Eq. 1 inputs the model builds from a batch's index arrays and its codebook (Model::
// forward, DESIGN.md "Sequence and inputs"): u is the previous scale's latents upsampled
// bilinearly (half-pixel centres) and read at the slot's position, v the latent of the code at
// the fed position. (These checks were the TypeScript input builder's, src/train/inputs.ts,
// before the engine built the inputs.)
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "harness.h"
#include "model/backends.h"
#include "model/model.h"
#include "model_fixture.h"

namespace {

// A small model whose code c has the latent [c, 10 c + 1].
cb::ModelConfig inputs_config(std::vector<int> scales) {
  cb::ModelConfig c;
  c.vocab = 32;
  c.latent_dim = 2;
  c.classes = 3;
  c.depth = 1;
  c.width = 16;
  c.heads = 2;
  c.scales = std::move(scales);
  return c;
}

void set_linear_codebook(cb::Model<double>& model) {
  const cb::ModelConfig& c = model.config();
  std::vector<float> rows;
  for (int k = 0; k < c.vocab; k++) {
    rows.push_back(float(k));
    rows.push_back(float(10 * k + 1));
  }
  model.set_codebook(rows.data(), (int64_t)rows.size());
}

// Bilinear resize of a (s_in, s_in, D) grid to s_out, half-pixel centres (PyTorch
// align_corners=False), written out here from the definition.
std::vector<double> upsample(const std::vector<double>& src, int s_in, int s_out, int D) {
  auto taps = [&](int d, int* i0, int* i1, double* w) {
    const double at = std::min(std::max((d + 0.5) * s_in / s_out - 0.5, 0.0), double(s_in - 1));
    *i0 = int(std::floor(at));
    *i1 = std::min(*i0 + 1, s_in - 1);
    *w = at - *i0;
  };
  std::vector<double> out(size_t(s_out) * s_out * D);
  for (int y = 0; y < s_out; y++) {
    int y0, y1;
    double wy;
    taps(y, &y0, &y1, &wy);
    for (int x = 0; x < s_out; x++) {
      int x0, x1;
      double wx;
      taps(x, &x0, &x1, &wx);
      for (int d = 0; d < D; d++) {
        auto v = [&](int yy, int xx) { return src[(size_t(yy) * s_in + xx) * D + d]; };
        out[(size_t(y) * s_out + x) * D + d] =
            (1 - wy) * ((1 - wx) * v(y0, x0) + wx * v(y0, x1)) +
            wy * ((1 - wx) * v(y1, x0) + wx * v(y1, x1));
      }
    }
  }
  return out;
}

void expect_close(double got, double want, const std::string& what) {
  EXPECT(std::fabs(got - want) <= 1e-9 * (1 + std::fabs(want)),
         what + ": got " + std::to_string(got) + ", want " + std::to_string(want));
}

}  // namespace

// Every slot of a random-order batch: u upsampled from the previous scale's codes (a learned
// start vector at the first scale, whose gathered row only has to be finite), v the fed code.
CB_TEST("model", eq1_inputs_are_upsampled_previous_scale_and_fed_code_latents) {
  const cb::ModelConfig c = inputs_config({1, 2, 4});
  cb::Model<double> model(c, cb::make_model_ops<double>("cpu-ref"), 1);
  set_linear_codebook(model);
  const cbt::SlotPlan plan = cbt::plan_slots(c, {1, 2, 2});
  const int B = 2, T = plan.T, D = c.latent_dim;
  const int64_t L = c.grid_positions();
  const cb::Batch<double> batch = cbt::random_batch<double>(c, plan, B, 3);
  model.forward(batch, false);
  const int64_t n = int64_t(B) * T;
  std::vector<double> lat(size_t(2 * n) * D);
  model.read_input_latents(lat.data());
  const double* u = lat.data();
  const double* v = lat.data() + n * D;
  auto latent = [&](int32_t code, int d) { return d == 0 ? double(code) : 10.0 * code + 1; };
  int checked_u = 0, checked_v = 0;
  for (int r = 0; r < B; r++) {
    for (int t = 1; t < T; t++) {
      const int64_t row = int64_t(r) * T + t;
      const int64_t g = batch.pos_p[row] - 2;
      int k = 0;
      while (k + 1 < (int)c.scales.size() && g >= c.scale_offset(k + 1)) k++;
      const int side = c.scales[k];
      const int64_t p = g - c.scale_offset(k);
      const std::string at = "row " + std::to_string(r) + ", slot " + std::to_string(t);
      if (k == 0) {
        for (int d = 0; d < D; d++) EXPECT(std::isfinite(u[row * D + d]), at + ": u finite");
      } else {
        const int prev = c.scales[k - 1];
        std::vector<double> grid(size_t(prev) * prev * D);
        for (int i = 0; i < prev * prev; i++) {
          const int32_t code = batch.codes[r * L + c.scale_offset(k - 1) + i];
          for (int d = 0; d < D; d++) grid[size_t(i) * D + d] = latent(code, d);
        }
        const std::vector<double> up = upsample(grid, prev, side, D);
        for (int d = 0; d < D; d++) expect_close(u[row * D + d], up[p * D + d], at + ": u");
        checked_u++;
      }
      if (batch.pos_q[row] >= 2) {
        const int32_t code = batch.codes[r * L + batch.pos_q[row] - 2];
        for (int d = 0; d < D; d++) expect_close(v[row * D + d], latent(code, d), at + ": v");
        checked_v++;
      }
    }
  }
  EXPECT(checked_u == B * (4 + 16) && checked_v > 0, "every later-scale slot was checked");
}

// 2 -> 4 of the grid [[1, 2], [3, 4]]: PyTorch's F.interpolate(size=4, mode="bilinear",
// align_corners=False) gives rows [1, 1.25, 1.75, 2] and [1.5, 1.75, 2.25, 2.5] first.
CB_TEST("model", eq1_upsampling_matches_pytorch_half_pixel_bilinear) {
  const cb::ModelConfig c = inputs_config({2, 4});
  cb::Model<double> model(c, cb::make_model_ops<double>("cpu-ref"), 1);
  set_linear_codebook(model);
  const cbt::SlotPlan plan = cbt::plan_slots(c, {1, 1});
  cb::Batch<double> batch = cbt::random_batch<double>(c, plan, 1, 5);
  for (int i = 0; i < 4; i++) batch.codes[i] = i + 1;  // scale 0 holds codes 1, 2, 3, 4
  model.forward(batch, false);
  const int64_t n = plan.T;
  std::vector<double> lat(size_t(2 * n) * c.latent_dim);
  model.read_input_latents(lat.data());
  const double want[2][4] = {{1, 1.25, 1.75, 2}, {1.5, 1.75, 2.25, 2.5}};
  int found = 0;
  for (int t = 1; t < plan.T; t++) {
    const int64_t g = batch.pos_p[t] - 2 - c.scale_offset(1);
    if (g < 0 || g >= 8) continue;  // the first two rows of the 4x4 grid
    expect_close(lat[size_t(t) * c.latent_dim], want[g / 4][g % 4],
                 "u at grid position " + std::to_string(g));
    found++;
  }
  EXPECT(found == 8, "the first two rows of the fine grid were checked");
}

// A code outside the codebook and a forward without a codebook are clear errors.
CB_TEST("model", codes_outside_the_codebook_and_a_missing_codebook_are_clear_errors) {
  const cb::ModelConfig c = inputs_config({1, 2});
  cb::Model<double> model(c, cb::make_model_ops<double>("cpu-ref"), 1);
  const cbt::SlotPlan plan = cbt::plan_slots(c, {1, 1});
  cb::Batch<double> batch = cbt::random_batch<double>(c, plan, 1, 5);
  auto fails_with = [&](const std::string& text) {
    try {
      model.forward(batch, false);
    } catch (const cb::Error& e) {
      EXPECT(std::string(e.what()).find(text) != std::string::npos,
             "expected '" + text + "' in: " + e.what());
      return;
    }
    EXPECT(false, "no error; expected '" + text + "'");
  };
  fails_with("the model has no codebook");
  set_linear_codebook(model);
  batch.codes[2] = c.vocab;
  fails_with("code 32 at 2 outside the codebook of 32");
  std::vector<float> short_book(5);
  try {
    model.set_codebook(short_book.data(), 5);
    EXPECT(false, "a codebook of 5 values was taken");
  } catch (const cb::Error& e) {
    EXPECT(std::string(e.what()).find("the codebook has 5 values") != std::string::npos,
           std::string("unexpected message: ") + e.what());
  }
}
