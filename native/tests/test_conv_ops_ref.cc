// The reference conv ops (RefConvOps<double>, the oracle of the op tables) checked on cases
// small enough to work out by hand, group conv-ops-ref: a 1x1 conv is a matrix product, a 3x3
// conv of a delta image is the kernel flipped (cross-correlation), the downsampler's asymmetric
// padding, GroupNorm's per-group moments, attention's two limits, the quantiser's tie and zero
// rules, nearest upsampling.
#include <cmath>
#include <string>
#include <vector>

#include "harness.h"
#include "vq/conv_ops_ref.h"

namespace {

using Ref = cb::RefConvOps<double>;
using DVec = std::vector<double>;

void expect_near(const std::string& what, double got, double want, double tol = 1e-12) {
  EXPECT(std::fabs(got - want) <= tol,
         what + ": got " + std::to_string(got) + ", want " + std::to_string(want));
}

}  // namespace

CB_TEST("conv-ops-ref", conv_1x1_is_a_matrix_product) {
  Ref ref;
  // x (1, 2, 1, 2): channel 0 = [1, 2], channel 1 = [3, 4]; w (2, 2, 1, 1) = [[1, 2], [3, 4]].
  const DVec x = {1, 2, 3, 4}, w = {1, 2, 3, 4}, bias = {10, 20};
  cb::Conv2dShape s;
  s.Cin = 2, s.H = 1, s.W = 2, s.Cout = 2;
  DVec y(4);
  ref.conv2d(s, x.data(), w.data(), bias.data(), y.data());
  // y[o, p] = bias[o] + sum_c w[o, c] x[c, p]
  const DVec want = {10 + 1 * 1 + 2 * 3, 10 + 1 * 2 + 2 * 4, 20 + 3 * 1 + 4 * 3,
                     20 + 3 * 2 + 4 * 4};
  for (int i = 0; i < 4; i++) expect_near("y[" + std::to_string(i) + "]", y[i], want[i]);
}

CB_TEST("conv-ops-ref", conv_3x3_of_a_delta_is_the_flipped_kernel) {
  Ref ref;
  // A 5x5 image, 1 at (2, 2); kernel values 1..9. Cross-correlation: y[oy, ox] =
  // sum w[ky, kx] x[oy + ky - 1, ox + kx - 1] = w[3 - oy, 3 - ox] for oy, ox in 1..3, else 0.
  DVec x(25, 0.0), w(9), y(25);
  x[2 * 5 + 2] = 1;
  for (int i = 0; i < 9; i++) w[i] = i + 1;
  cb::Conv2dShape s;
  s.Cin = 1, s.H = 5, s.W = 5, s.Cout = 1, s.k = 3, s.pad_begin = 1, s.pad_end = 1;
  ref.conv2d(s, x.data(), w.data(), nullptr, y.data());
  for (int oy = 0; oy < 5; oy++) {
    for (int ox = 0; ox < 5; ox++) {
      const bool inside = oy >= 1 && oy <= 3 && ox >= 1 && ox <= 3;
      const double want = inside ? w[(3 - oy) * 3 + (3 - ox)] : 0.0;
      expect_near("y[" + std::to_string(oy) + "," + std::to_string(ox) + "]", y[oy * 5 + ox],
                  want);
    }
  }
}

CB_TEST("conv-ops-ref", downsampler_pads_right_and_bottom_only) {
  Ref ref;
  // x (1, 1, 4, 4) = 0..15, all-ones 3x3 kernel, stride 2, pad (0, 1): output 2x2, window
  // rows/cols {2 oy, 2 oy + 1, 2 oy + 2} with index 4 the zero padding.
  DVec x(16), w(9, 1.0), y(4);
  for (int i = 0; i < 16; i++) x[i] = i;
  cb::Conv2dShape s;
  s.Cin = 1, s.H = 4, s.W = 4, s.Cout = 1, s.k = 3, s.stride = 2, s.pad_begin = 0, s.pad_end = 1;
  EXPECT(s.out_h() == 2 && s.out_w() == 2, "output side");
  ref.conv2d(s, x.data(), w.data(), nullptr, y.data());
  auto at = [&](int r, int c) { return x[r * 4 + c]; };
  // (0,0): rows 0..2, cols 0..2. (1,1): rows 2..3, cols 2..3 (row and column 4 are padding).
  double w00 = 0;
  for (int r = 0; r < 3; r++) {
    for (int c = 0; c < 3; c++) w00 += at(r, c);
  }
  expect_near("y[0,0]", y[0], w00);
  expect_near("y[1,1]", y[3], at(2, 2) + at(2, 3) + at(3, 2) + at(3, 3));
  expect_near("y[0,1]", y[1], at(0, 2) + at(0, 3) + at(1, 2) + at(1, 3) + at(2, 2) + at(2, 3));
}

CB_TEST("conv-ops-ref", group_norm_gives_zero_mean_unit_variance_per_group) {
  Ref ref;
  const int B = 2, C = 8, groups = 4;
  const int64_t HW = 5;
  DVec x(B * C * HW), gamma(C, 1.0), beta(C, 0.0), y(x.size());
  for (size_t i = 0; i < x.size(); i++) x[i] = 100.0 + std::sin(0.7 * double(i)) * (1 + i % 3);
  const float eps = 1e-6f;
  ref.group_norm(B, C, HW, groups, eps, x.data(), gamma.data(), beta.data(), y.data());
  const int64_t n = (C / groups) * HW;
  for (int pair = 0; pair < B * groups; pair++) {
    double mean = 0, var = 0, xmean = 0, xvar = 0;
    for (int64_t t = 0; t < n; t++) xmean += x[pair * n + t] / double(n);
    for (int64_t t = 0; t < n; t++) {
      xvar += (x[pair * n + t] - xmean) * (x[pair * n + t] - xmean) / double(n);
    }
    for (int64_t t = 0; t < n; t++) mean += y[pair * n + t] / double(n);
    for (int64_t t = 0; t < n; t++) var += (y[pair * n + t] - mean) * (y[pair * n + t] - mean);
    var /= double(n);
    const std::string g = "group " + std::to_string(pair);
    expect_near(g + " mean", mean, 0.0);
    expect_near(g + " variance", var, xvar / (xvar + double(eps)));  // eps inside the sqrt
  }
  // The affine step: gamma scales, beta shifts, per channel; with swish on top.
  DVec gamma2(C), beta2(C), y2(x.size()), y3(x.size());
  for (int c = 0; c < C; c++) gamma2[c] = 0.5 + c, beta2[c] = -1.0 + 0.25 * c;
  ref.group_norm(B, C, HW, groups, eps, x.data(), gamma2.data(), beta2.data(), y2.data());
  ref.group_norm_swish(B, C, HW, groups, eps, x.data(), gamma2.data(), beta2.data(), y3.data());
  for (size_t i = 0; i < x.size(); i++) {
    const int c = int((i / HW) % C);
    expect_near("affine " + std::to_string(i), y2[i], y[i] * gamma2[c] + beta2[c], 1e-10);
    expect_near("swish " + std::to_string(i), y3[i], y2[i] / (1 + std::exp(-y2[i])), 1e-12);
  }
}

CB_TEST("conv-ops-ref", attention_limits) {
  Ref ref;
  // One position: softmax of a single score is 1, out = v.
  const DVec q1 = {0.3, -2}, k1 = {5, 1}, v1 = {7, -3};
  DVec o1(2);
  ref.spatial_attention(1, 2, 1, q1.data(), k1.data(), v1.data(), o1.data());
  expect_near("HW 1 c0", o1[0], 7);
  expect_near("HW 1 c1", o1[1], -3);
  // Equal keys: every weight is 1/HW, out[c, i] = mean_j v[c, j].
  const int C = 2;
  const int64_t HW = 4;
  const DVec q = {1, 2, 3, 4, -1, 0, 1, 2}, k = {1, 1, 1, 1, 2, 2, 2, 2};
  const DVec v = {1, 2, 3, 6, 0, 4, 8, 0};
  DVec o(8);
  ref.spatial_attention(1, C, HW, q.data(), k.data(), v.data(), o.data());
  for (int64_t i = 0; i < HW; i++) {
    expect_near("equal keys c0", o[i], 3.0);
    expect_near("equal keys c1", o[HW + i], 3.0);
  }
  // Two keys, scores s and 0 (scale 1/sqrt(C) with C = 1): weights sigmoid(s), 1 - sigmoid(s).
  const DVec k2 = {1.5, 0}, v2 = {10, -10};
  DVec q2x = {2, 0};  // query 0 = 2, query 1 = 0 (HW 2)
  DVec o2x(2);
  ref.spatial_attention(1, 1, 2, q2x.data(), k2.data(), v2.data(), o2x.data());
  const double p = 1 / (1 + std::exp(-3.0));  // query 0: scores 3, 0
  expect_near("two keys", o2x[0], 10 * p - 10 * (1 - p));
  expect_near("two keys, zero query", o2x[1], 0.0);
}

CB_TEST("conv-ops-ref", quantizer_tie_and_zero_rules) {
  Ref ref;
  // Codebook (4, 2): rows 1 and 2 equal; a latent along them ties and takes row 1, the first.
  const double r = std::sqrt(0.5);
  const DVec codebook = {1, 0, r, r, r, r, 0, -1};
  // z (1, 2, 3): positions (3, 3) (ties rows 1, 2), (0, 0) (zero: all distances 1, row 0
  // wins), (0, -0.5) (row 3, exactly).
  const DVec z = {3, 0, 0, 3, 0, -0.5};
  std::vector<int32_t> index(3);
  DVec zq(6), dist2(3);
  ref.quantize_l2(1, 2, 3, z.data(), codebook.data(), 4, index.data(), zq.data(), dist2.data());
  EXPECT(index[0] == 1, "a tie takes the first index, got " + std::to_string(index[0]));
  EXPECT(index[1] == 0, "a zero latent takes row 0, got " + std::to_string(index[1]));
  EXPECT(index[2] == 3, "an exact match, got " + std::to_string(index[2]));
  expect_near("tie distance", dist2[0], 0.0, 1e-14);
  expect_near("zero-latent distance (|e|^2)", dist2[1], 1.0, 1e-14);
  expect_near("zq of the tie, channel 0", zq[0], r);
  expect_near("zq of position 2, channel 1", zq[3 + 2], -1.0);
  // embed_codes gives the same rows, NCHW.
  DVec e(6);
  ref.embed_codes(1, 2, 3, index.data(), codebook.data(), 4, e.data());
  for (int i = 0; i < 6; i++) expect_near("embed " + std::to_string(i), e[i], zq[i]);
  // l2 rows: (3, 4) -> (0.6, 0.8); a zero row stays zero.
  const DVec rows = {3, 4, 0, 0};
  DVec nrows(4);
  ref.l2_normalize_rows(2, 2, rows.data(), nrows.data());
  expect_near("row 0", nrows[0], 0.6);
  expect_near("row 0", nrows[1], 0.8);
  expect_near("zero row", nrows[2], 0.0);
  expect_near("zero row", nrows[3], 0.0);
}

CB_TEST("conv-ops-ref", upsample_repeats_each_value_2x2) {
  Ref ref;
  const DVec x = {1, 2, 3, 4, 5, 6};  // (1, 1, 2, 3)
  DVec y(24);
  ref.upsample_nearest2x(1, 1, 2, 3, x.data(), y.data());
  for (int Y = 0; Y < 4; Y++) {
    for (int X = 0; X < 6; X++) {
      expect_near("y", y[Y * 6 + X], x[(Y / 2) * 3 + X / 2]);
    }
  }
}
