// The sampler's parts: the Philox generator against the published known-answer vectors, the
// token draw (guidance, temperature, top-k, top-p, entropy) against exact probabilities, the
// cached attention against full attention, and the whole sampling loop on cpu against cpu-ref.
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "compare.h"
#include "cpu/attention_amx.h"
#include "cpu/attention_bf16.h"
#include "cpu/cpu_features.h"
#include "cpu/model_ops_cpu.h"
#include "cpu/model_ops_ref.h"
#include "harness.h"
#include "model/backends.h"
#include "model_fixture.h"
#include "sample/philox.h"
#include "sample/raster_plan.h"
#include "sample/sampler.h"
#include "sample/token_sampling.h"

namespace {

using cb::TokenSampling;

// Frequencies of sample_row's draws over many keys, against the probabilities `want`: each
// within 5 standard deviations of a binomial count.
void expect_frequencies(const std::vector<float>& cond, const std::vector<float>* uncond,
                        float w, const TokenSampling& s, const std::vector<double>& want,
                        const std::string& what) {
  const int K = (int)cond.size(), draws = 200000;
  std::vector<int> count(K, 0);
  cb::TokenSamplingScratch scratch;
  for (int i = 0; i < draws; i++) {
    const int32_t code =
        cb::sample_row(K, cond.data(), uncond ? uncond->data() : nullptr, w, s,
                       cb::sample_uniform(s.seed, 3, i), scratch, nullptr);
    EXPECT(code >= 0 && code < K, what + ": code out of range");
    count[code]++;
  }
  for (int c = 0; c < K; c++) {
    const double expected = want[c] * draws;
    const double sd = std::sqrt(std::max(draws * want[c] * (1 - want[c]), 1.0));
    EXPECT(std::fabs(count[c] - expected) <= 5 * sd,
           what + ": code " + std::to_string(c) + " drawn " + std::to_string(count[c]) +
               " times, expected " + std::to_string(expected));
  }
}

std::vector<double> softmax(const std::vector<double>& z) {
  double mx = z[0], sum = 0;
  for (double v : z) mx = std::max(mx, v);
  std::vector<double> p(z.size());
  for (size_t i = 0; i < z.size(); i++) sum += (p[i] = std::exp(z[i] - mx));
  for (double& v : p) v /= sum;
  return p;
}

double entropy_bits(const std::vector<double>& p) {
  double h = 0;
  for (double v : p) h -= v > 0 ? v * std::log2(v) : 0;
  return h;
}

}  // namespace

CB_TEST("sampling", philox_matches_the_random123_known_answers) {
  struct Kat {
    cb::Philox4x32 counter;
    uint64_t key;
    cb::Philox4x32 want;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       0xffffffffffffffffull,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       (uint64_t(0x299f31d0u) << 32) | 0xa4093822u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) {
    const cb::Philox4x32 got = cb::philox4x32_10(k.counter, k.key);
    for (int i = 0; i < 4; i++) {
      EXPECT(got.v[i] == k.want.v[i], "philox word " + std::to_string(i) + " = " +
                                          std::to_string(got.v[i]) + ", expected " +
                                          std::to_string(k.want.v[i]));
    }
  }
  // Uniforms are in [0, 1), differ between keys, and have mean 1/2.
  double sum = 0;
  for (int i = 0; i < 100000; i++) {
    const double u = cb::sample_uniform(9, i % 7, i);
    EXPECT(u >= 0 && u < 1, "uniform outside [0, 1)");
    sum += u;
  }
  EXPECT(std::fabs(sum / 100000 - 0.5) < 0.005, "uniform mean " + std::to_string(sum / 100000));
  EXPECT(cb::sample_uniform(1, 2, 3) != cb::sample_uniform(2, 2, 3) &&
             cb::sample_uniform(1, 2, 3) != cb::sample_uniform(1, 3, 3) &&
             cb::sample_uniform(1, 2, 3) != cb::sample_uniform(1, 2, 4),
         "seed, image and slot must each change the uniform");
}

CB_TEST("sampling", draws_follow_softmax_temperature_top_k_and_top_p) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.0f, 1.5f};
  std::vector<double> z(logits.begin(), logits.end());
  TokenSampling s;
  s.seed = 42;
  expect_frequencies(logits, nullptr, 0, s, softmax(z), "plain");

  s.temperature = 0.5f;
  std::vector<double> sharp = z;
  for (double& v : sharp) v /= 0.5;
  expect_frequencies(logits, nullptr, 0, s, softmax(sharp), "temperature 0.5");

  s.temperature = 1.0f;
  s.top_k = 2;  // codes 1 and 4
  std::vector<double> top2 = softmax({2.0, 1.5});
  expect_frequencies(logits, nullptr, 0, s, {0, top2[0], 0, 0, top2[1]}, "top-k 2");

  // top-p 0.6: the softmax is about (.11, .41, .02, .18, .28); 1 then 4 reach 0.6.
  s.top_k = 0;
  s.top_p = 0.6f;
  expect_frequencies(logits, nullptr, 0, s, {0, top2[0], 0, 0, top2[1]}, "top-p 0.6");
  s.top_p = 0.3f;  // code 1 alone already reaches it
  expect_frequencies(logits, nullptr, 0, s, {0, 1, 0, 0, 0}, "top-p 0.3");
}

CB_TEST("sampling", guidance_extrapolates_from_the_unconditional_logits) {
  const std::vector<float> cond = {0.0f, 1.0f, 0.5f}, uncond = {1.0f, 0.0f, 0.5f};
  const float w = 1.5f;
  std::vector<double> z(3);
  for (int i = 0; i < 3; i++) z[i] = cond[i] + w * (cond[i] - uncond[i]);
  TokenSampling s;
  s.seed = 5;
  expect_frequencies(cond, &uncond, w, s, softmax(z), "guided");
  // w = 0 ignores the unconditional logits.
  expect_frequencies(cond, &uncond, 0, s, softmax({0.0, 1.0, 0.5}), "w = 0");
}

CB_TEST("sampling", entropy_is_that_of_the_final_distribution_in_bits) {
  cb::TokenSamplingScratch scratch;
  float h = -1;
  const std::vector<float> flat(8, 0.25f);
  TokenSampling s;
  cb::sample_row(8, flat.data(), (const float*)nullptr, 0, s, 0.5, scratch, &h);
  EXPECT(std::fabs(h - 3.0f) < 1e-5f, "uniform over 8: " + std::to_string(h) + " bits");
  s.top_k = 2;
  cb::sample_row(8, flat.data(), (const float*)nullptr, 0, s, 0.5, scratch, &h);
  EXPECT(std::fabs(h - 1.0f) < 1e-5f, "top-2 of uniform: " + std::to_string(h) + " bits");
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.0f, 1.5f};
  s = TokenSampling{};
  s.temperature = 0.7f;
  cb::sample_row(5, logits.data(), (const float*)nullptr, 0, s, 0.5, scratch, &h);
  std::vector<double> z(logits.begin(), logits.end());
  for (double& v : z) v /= 0.7;
  const double want = entropy_bits(softmax(z));
  EXPECT(std::fabs(h - want) < 1e-5, "entropy " + std::to_string(h) + ", want " +
                                         std::to_string(want));
  s.temperature = 0;  // greedy: the first largest logit, no uncertainty left
  const std::vector<float> tie = {1.0f, 3.0f, 3.0f};
  EXPECT(cb::sample_row(3, tie.data(), (const float*)nullptr, 0, s, 0.99, scratch, &h) == 1 &&
             h == 0.0f,
         "temperature 0 must pick the first argmax with entropy 0");
}

CB_TEST("sampling", cpu_draws_equal_cpu_ref_draws) {
  const int64_t n = 300;
  const int K = 97;
  const std::vector<float> cond = cbt::random_uniform(n * K, 11, -4, 4);
  const std::vector<float> uncond = cbt::random_uniform(n * K, 12, -4, 4);
  std::vector<int32_t> image(n), slot(n);
  for (int64_t i = 0; i < n; i++) {
    image[i] = int32_t(i % 5);
    slot[i] = int32_t(i);
  }
  cb::RefModelOps<float> ref;
  cb::CpuModelOps cpu;
  TokenSampling s;
  s.seed = 77;
  s.top_k = 20;
  s.top_p = 0.9f;
  std::vector<int32_t> a(n), b(n);
  std::vector<float> ha(n), hb(n);
  ref.sample_tokens(n, K, cond.data(), uncond.data(), 2.0f, s, image.data(), slot.data(),
                    a.data(), ha.data());
  cpu.sample_tokens(n, K, cond.data(), uncond.data(), 2.0f, s, image.data(), slot.data(),
                    b.data(), hb.data());
  for (int64_t i = 0; i < n; i++) {
    EXPECT(a[i] == b[i] && ha[i] == hb[i], "row " + std::to_string(i) + " differs");
  }
}

CB_TEST("sampling", cached_attention_equals_full_attention) {
  // Queries of the last block [t0, T) against a cache of all T slots, with the class slot's
  // visibility in front: the same outputs as blockwise attention over the whole sequence.
  // Shapes: tiny and odd; the S preset's last scale (hd 32, 341 slots, 64-slot blocks; enough
  // work to split over threads); hd 64 with a key count that is no multiple of 16.
  struct Shape {
    int B, T, H, hd, t0;
  };
  uint32_t seed = 1;
  for (const Shape& s : {Shape{3, 23, 2, 6, 15}, Shape{2, 341, 4, 32, 277},
                         Shape{2, 101, 3, 64, 37}}) {
    const int B = s.B, T = s.T, H = s.H, hd = s.hd, t0 = s.t0;
    const int64_t C = H * hd;
    const std::vector<float> q = cbt::random_uniform(B * T * C, seed++);
    const std::vector<float> k = cbt::random_uniform(B * T * C, seed++);
    const std::vector<float> v = cbt::random_uniform(B * T * C, seed++);
    std::vector<int32_t> visible(T, T);
    for (int t = 0; t < t0; t++) visible[t] = t < 4 ? 4 : t0;
    visible[0] = 1;
    cb::RefModelOps<float> ref;
    cb::CpuModelOps cpu;
    std::vector<float> full(B * T * C), lse(B * H * T);
    ref.attention(B, T, H, hd, q.data(), k.data(), v.data(), visible.data(), full.data(),
                  lse.data());
    for (int first : {0, t0}) {
      const int m = T - first;
      std::vector<float> qb(B * m * C);
      for (int b = 0; b < B; b++) {
        std::copy(q.begin() + (int64_t(b) * T + first) * C,
                  q.begin() + (int64_t(b) * T + T) * C, qb.begin() + int64_t(b) * m * C);
      }
      for (cb::ModelOps<float>* ops : {(cb::ModelOps<float>*)&ref, (cb::ModelOps<float>*)&cpu}) {
        std::vector<float> out(B * m * C);
        ops->attention_cached(B, m, H, hd, qb.data(), k.data(), v.data(), int64_t(T) * C,
                              visible.data() + first, out.data());
        for (int b = 0; b < B; b++) {
          for (int64_t e = 0; e < m * C; e++) {
            const float want = full[(int64_t(b) * T + first) * C + e];
            const float got = out[int64_t(b) * m * C + e];
            EXPECT(std::fabs(got - want) <= 1e-5f * (1 + std::fabs(want)),
                   std::string(ops->name()) + " T=" + std::to_string(T) + " hd=" +
                       std::to_string(hd) + ": batch " + std::to_string(b) + " value " +
                       std::to_string(e) + " from slot " + std::to_string(first));
          }
        }
      }
    }
  }
}

CB_TEST("bf16", cached_attention_in_bf16_is_full_attention_within_the_rounding) {
  // The bf16 cpu backend keeps the cache as bf16 (attention_bf16.h), written block by block
  // through write_kv_cache, as the sampler does, and reads it in attention_cached.
  // The bound: q (scaled), K, V and the weights P each enter a product rounded to bf16, an RMS
  // of 2^-8 / sqrt(3) = 2.3e-3 relative each; the scores carry two roundings (3.2e-3) and
  // their error passes to the output through the softmax at most in proportion, so the
  // output's relative RMS error is about sqrt(3.2^2 + 2.3^2 + 2.3^2) = 4.6e-3 (measured on
  // these inputs: 3.1e-3 to 3.4e-3). Limits: nmse below (4 x 4.6e-3)^2 = 3.4e-4, and every
  // value within 10 of those RMS errors of the output's RMS. A wrong layout, a lost pair or
  // an unscaled query gives an nmse of 1e-2 or more.
  const std::string why = cb::bf16_matmul_unavailable();
  if (!why.empty()) {
    std::printf("SKIP cpu-bf16: %s\n", why.c_str());
    return;
  }
  struct Shape {
    int B, T, H, hd, t0;
  };
  uint32_t seed = 40;
  // hd 32 at the S preset's last scale (341 slots, odd, 64-slot blocks); 64, 96 and 128 with
  // key counts that are no multiple of 16 and blocks of 1 and 3 slots.
  for (const Shape& s : {Shape{2, 341, 4, 32, 277}, Shape{3, 101, 3, 64, 37},
                         Shape{2, 37, 2, 96, 20}, Shape{2, 50, 2, 128, 1}}) {
    const int B = s.B, T = s.T, H = s.H, hd = s.hd, t0 = s.t0;
    const int64_t C = H * hd;
    const std::vector<float> q = cbt::random_uniform(B * T * C, seed++);
    const std::vector<float> k = cbt::random_uniform(B * T * C, seed++);
    const std::vector<float> v = cbt::random_uniform(B * T * C, seed++);
    std::vector<int32_t> visible(T, T);
    for (int t = 0; t < t0; t++) visible[t] = t < 4 ? 4 : t0;
    visible[0] = 1;
    cb::RefModelOps<float> ref;
    std::vector<float> full(B * T * C), lse(B * H * T);
    ref.attention(B, T, H, hd, q.data(), k.data(), v.data(), visible.data(), full.data(),
                  lse.data());
    cb::CpuModelOps cpu(cb::Precision::bf16);
    // The cache the sampler would hold: written in blocks of up to 3 slots of (B, m, C) rows.
    std::vector<float> kc(B * T * C, std::nanf("")), vc(B * T * C, std::nanf(""));
    for (int a = 0; a < T; a += 3) {
      const int m = std::min(3, T - a);
      std::vector<float> kb(B * m * C), vb(B * m * C);
      for (int b = 0; b < B; b++) {
        for (int64_t e = 0; e < m * C; e++) {
          kb[b * m * C + e] = k[(int64_t(b) * T + a) * C + e];
          vb[b * m * C + e] = v[(int64_t(b) * T + a) * C + e];
        }
      }
      cpu.write_kv_cache(B, m, a, H, int(C), kb.data(), C, vb.data(), C, kc.data(), vc.data(),
                         int64_t(T) * C);
    }
    for (int first : {0, t0}) {
      const int m = T - first;
      std::vector<float> qb(B * m * C), out(B * m * C);
      for (int b = 0; b < B; b++) {
        std::copy(q.begin() + (int64_t(b) * T + first) * C, q.begin() + (int64_t(b) * T + T) * C,
                  qb.begin() + int64_t(b) * m * C);
      }
      cpu.attention_cached(B, m, H, hd, qb.data(), kc.data(), vc.data(), int64_t(T) * C,
                           visible.data() + first, out.data());
      double err = 0, energy = 0;
      for (int b = 0; b < B; b++) {
        for (int64_t e = 0; e < m * C; e++) {
          const double d = double(out[b * m * C + e]) - full[(int64_t(b) * T + first) * C + e];
          err += d * d;
          energy += double(full[(int64_t(b) * T + first) * C + e]) * full[(int64_t(b) * T + first) * C + e];
        }
      }
      const double nmse = err / energy, rms = std::sqrt(energy / double(B * m * C));
      const std::string where = "hd=" + std::to_string(hd) + " T=" + std::to_string(T) +
                                " from slot " + std::to_string(first);
      std::printf("  bf16 cached attention %s: relative RMS error %.2e\n", where.c_str(),
                  std::sqrt(nmse));
      EXPECT(nmse < 3.4e-4, where + ": nmse " + std::to_string(nmse) + " over 3.4e-4");
      for (int b = 0; b < B; b++) {
        for (int64_t e = 0; e < m * C; e++) {
          const float want = full[(int64_t(b) * T + first) * C + e];
          const float got = out[b * m * C + e];
          EXPECT(std::fabs(got - want) <= 10 * 4.6e-3 * rms,
                 where + ": batch " + std::to_string(b) + " value " + std::to_string(e) + " is " +
                     std::to_string(got) + ", want " + std::to_string(want));
        }
      }
    }
  }
}

CB_TEST("bf16", amx_attention_equals_the_avx512_bf16_kernel) {
  // Both kernels read the same bf16 cache and round q, K, V and the weights P the same way;
  // only the order of the fp32 sums differs, which moves a weight across a bf16 rounding
  // boundary about once in 1e4 (a sum's relative error ~1e-7 against the 2^-9 half step).
  // One moved weight changes an output by at most 2^-8 w |v| <= 2^-8 max|v|. Limits: nmse
  // below 1e-6 and every value within 2^-7 max|v| (= 2^-7 here). A wrong tile stride, a lost
  // chunk or a padding key with weight gives errors of order 1. The slots after vis hold NaN:
  // neither kernel may read them into a sum.
  if (!cb::cpu_features().amx_bf16) {
    std::printf("SKIP amx: this CPU (%s) has no AMX-BF16\n", cb::cpu_feature_names().c_str());
    return;
  }
  uint32_t seed = 90;
  for (int hd : {32, 64, 96, 128}) {
    for (int vis : {1, 2, 15, 16, 17, 31, 32, 33, 63, 100, 341}) {
      const int T = vis + 21;  // the cache holds more slots than are visible
      std::vector<cb::bf16_t> kp(cb::bf16_key_pair_values(T, hd), cb::bf16_t{0x7fc0});
      std::vector<cb::bf16_t> vp(cb::bf16_value_pair_values(T, hd), cb::bf16_t{0x7fc0});
      const std::vector<float> k = cbt::random_uniform(int64_t(vis) * hd, seed++);
      const std::vector<float> v = cbt::random_uniform(int64_t(vis) * hd, seed++);
      for (int t = 0; t < vis; t++) {
        cb::store_bf16_key(t, hd, k.data() + int64_t(t) * hd, kp.data());
        cb::store_bf16_value(t, hd, v.data() + int64_t(t) * hd, vp.data());
      }
      for (int m : {1, 5, 16, 17, 40}) {
        const int64_t ld = hd + 8;  // a row stride wider than the head, as in (B, T, H * hd)
        const std::vector<float> q = cbt::random_uniform(m * ld, seed++, -3.0f, 3.0f);
        std::vector<float> amx(m * ld, 0.0f), avx(m * ld, 0.0f);
        std::vector<float> scratch(cb::attend_bf16_scratch_floats(vis, hd));
        const float scale = 1.0f / std::sqrt(float(hd));
        cb::attend_bf16_amx(m, vis, hd, scale, q.data(), ld, kp.data(), vp.data(), scratch.data(),
                            amx.data());
        cb::attend_bf16_avx512(m, vis, hd, scale, q.data(), ld, kp.data(), vp.data(),
                               scratch.data(), avx.data());
        const std::string where = "hd=" + std::to_string(hd) + " vis=" + std::to_string(vis) +
                                  " m=" + std::to_string(m);
        double err = 0, energy = 0;
        for (int i = 0; i < m; i++) {
          for (int d = 0; d < hd; d++) {
            const float a = amx[i * ld + d], b = avx[i * ld + d];
            EXPECT(std::isfinite(a) && std::isfinite(b), where + ": a value is not finite");
            EXPECT(std::fabs(a - b) <= 1.0f / 128, where + ": row " + std::to_string(i) + " dim " +
                                                      std::to_string(d) + ": amx " + std::to_string(a) +
                                                      ", avx512 " + std::to_string(b));
            err += double(a - b) * (a - b);
            energy += double(b) * b;
          }
        }
        EXPECT(err <= 1e-6 * energy, where + ": nmse " + std::to_string(err / energy));
      }
    }
  }
}

CB_TEST("sampling", upsampling_matches_half_pixel_bilinear) {
  // 2x2 -> 4x4 in one dimension of values: the taps of align_corners=False are 1/4 and 3/4.
  const std::vector<float> src = {0, 1, 2, 3};  // (2x2, D=1)
  std::vector<float> dst(16);
  cb::CpuModelOps cpu;
  cpu.upsample_bilinear(1, 2, 4, 1, src.data(), dst.data());
  const float want_row0[4] = {0, 0.25f, 0.75f, 1};
  for (int x = 0; x < 4; x++) EXPECT(std::fabs(dst[x] - want_row0[x]) < 1e-6f, "row 0");
  const float want_col0[4] = {0, 0.5f, 1.5f, 2};
  for (int y = 0; y < 4; y++) EXPECT(std::fabs(dst[y * 4] - want_col0[y]) < 1e-6f, "column 0");
}

namespace {


}  // namespace

CB_TEST("sampling", sampler_on_cpu_matches_cpu_ref) {
  const cb::ModelConfig c = cbt::tiny_config(1);
  cb::Model<float> fast(c, cb::make_model_ops<float>("cpu"), 3);
  cb::Model<double> ref(c, cb::make_model_ops<double>("cpu-ref"), 3);
  cbt::randomize_params(ref, 17);
  for (int64_t i = 0; i < ref.layout().total(); i++) fast.params()[i] = float(ref.params()[i]);
  cbt::set_test_codebook(fast);
  cbt::set_test_codebook(ref);
  for (float guidance : {0.0f, 2.0f}) {
    const cb::SampleRequest req = cbt::plan_request(c, 3, 4, guidance);
    int callbacks = 0;
    cb::SampleWorkspace<float> wa;
    cb::SampleWorkspace<double> wb;
    const cb::SampleResult a =
        cb::sample_images(fast, req, wa, [&](int, int) { callbacks++; });
    const cb::SampleResult b = cb::sample_images(ref, req, wb, nullptr);
    const int steps = (int)req.block_start.size() - 1;
    EXPECT(a.forward_passes == steps && b.forward_passes == steps && callbacks == steps,
           "one forward and one callback per step");
    int same = 0;
    for (size_t i = 0; i < a.codes.size(); i++) same += a.codes[i] == b.codes[i];
    // Float and double logits differ by rounding, which flips a draw only at a boundary.
    EXPECT(same >= (int)a.codes.size() - 1, std::to_string(a.codes.size() - same) +
                                                 " of " + std::to_string(a.codes.size()) +
                                                 " codes differ between cpu and cpu-ref");
    if (same != (int)a.codes.size()) continue;  // the logits then follow different sequences
    std::vector<double> want(b.logits.begin(), b.logits.end()), tol(want.size());
    for (size_t i = 0; i < want.size(); i++) tol[i] = 1e-4 * (1 + std::fabs(want[i]));
    cbt::expect_within("sampled logits", a.logits.data(), want.data(), tol.data(), want.size());
  }
}

// check_request refuses bad scalar settings itself (not only the addon's argument parser), with
// one message per setting naming the value; nothing is sampled.
CB_TEST("sampling", sampler_refuses_bad_temperature_top_k_top_p_and_guidance) {
  const cb::ModelConfig c = cbt::tiny_config(0);
  cb::Model<float> model(c, cb::make_model_ops<float>("cpu"), 3);
  cbt::set_test_codebook(model);
  const float nan = std::nanf(""), inf = INFINITY;
  struct Case {
    const char* what;
    void (*edit)(cb::SampleRequest&, float nan, float inf);
    std::string message;
  };
  const Case cases[] = {
      {"temperature -1", [](cb::SampleRequest& r, float, float) { r.sampling.temperature = -1; },
       "sample: temperature must be a finite number >= 0, got -1"},
      {"temperature NaN", [](cb::SampleRequest& r, float n, float) { r.sampling.temperature = n; },
       "sample: temperature must be a finite number >= 0, got NaN"},
      {"temperature Inf", [](cb::SampleRequest& r, float, float i) { r.sampling.temperature = i; },
       "sample: temperature must be a finite number >= 0, got Infinity"},
      {"top-k -2", [](cb::SampleRequest& r, float, float) { r.sampling.top_k = -2; },
       "sample: topK must be an integer in [0, 2147483647], got -2"},
      {"top-p 0", [](cb::SampleRequest& r, float, float) { r.sampling.top_p = 0; },
       "sample: topP must be in (0, 1], got 0"},
      {"top-p 1.5", [](cb::SampleRequest& r, float, float) { r.sampling.top_p = 1.5f; },
       "sample: topP must be in (0, 1], got 1.5"},
      {"top-p NaN", [](cb::SampleRequest& r, float n, float) { r.sampling.top_p = n; },
       "sample: topP must be in (0, 1], got NaN"},
      {"guidance Inf", [](cb::SampleRequest& r, float, float i) { r.guidance = -i; },
       "sample: guidance must be a finite number, got -Infinity"},
      {"guidance start -1", [](cb::SampleRequest& r, float, float) { r.guidance_start = -1; },
       "sample: guidanceStart must be an integer in [0, 2147483647], got -1"},
  };
  for (const Case& k : cases) {
    cb::SampleRequest req = cbt::plan_request(c, 2, 2, 2.0f);
    k.edit(req, nan, inf);
    cb::SampleWorkspace<float> workspace;
    int steps = 0;
    std::string got = "no error";
    try {
      cb::sample_images(model, req, workspace, [&](int, int) { steps++; });
    } catch (const cb::Error& e) {
      got = e.what();
      EXPECT(std::string(e.file()).find("sample/sampling_settings.cc") != std::string::npos,
             std::string(k.what) + ": raised in " + e.file());
    }
    EXPECT(got == k.message, std::string(k.what) + ": got '" + got + "'");
    EXPECT(steps == 0, std::string(k.what) + ": steps ran before the check");
  }
  // The bounds themselves are accepted: greedy, top-k off, top-p 1, no guidance.
  cb::SampleRequest req = cbt::plan_request(c, 2, 2, 0.0f);
  req.sampling.temperature = 0;
  req.sampling.top_k = 0;
  req.sampling.top_p = 1;
  cb::SampleWorkspace<float> workspace;
  const cb::SampleResult result = cb::sample_images(model, req, workspace, nullptr);
  EXPECT(!result.codes.empty(), "the bounds are valid settings");
}

// Logits that are not all finite (a damaged or overflowing model) never become a code: the draw
// returns kNonFiniteLogits and the sampler stops with a message instead of drawing noise.
CB_TEST("sampling", non_finite_logits_stop_the_sampler) {
  cb::TokenSamplingScratch scratch;
  const std::vector<float> row = {0.5f, std::nanf(""), 1.0f};
  EXPECT(cb::sample_row<float>(3, row.data(), nullptr, 0.0f, TokenSampling{}, 0.5, scratch, nullptr) ==
             cb::kNonFiniteLogits,
         "a NaN logit is reported");
  TokenSampling greedy;
  greedy.temperature = 0;
  EXPECT(cb::sample_row<float>(3, row.data(), nullptr, 0.0f, greedy, 0.5, scratch, nullptr) ==
             cb::kNonFiniteLogits,
         "greedy draws report it as well");

  const cb::ModelConfig c = cbt::tiny_config(0);
  cb::Model<float> model(c, cb::make_model_ops<float>("cpu"), 3);
  cbt::set_test_codebook(model);
  cbt::randomize_params(model, 5);
  model.params()[model.layout().offset("head.b")] = INFINITY;
  cb::SampleWorkspace<float> workspace;
  std::string got = "no error";
  try {
    cb::sample_images(model, cbt::plan_request(c, 2, 2, 2.0f), workspace, nullptr);
  } catch (const cb::Error& e) {
    got = e.what();
  }
  EXPECT(got.find("the model's logits are not finite (NaN or Inf) at sampling step 1 of") == 0,
         "sampling a model with an infinite head bias: got '" + got + "'");
}
