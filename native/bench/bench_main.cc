// cb_engine_bench: native benchmarks of the engine, with no Node or Deno (what runs on a GPU
// machine; scripts/device-check.sh). Random weights, the paper's benchmark shapes (DESIGN.md
// "Transformer": codebook 4096, latent 8, 1000 classes, ratio 2 on a 16x16 grid, i.e. scales
// 1,2,4,8,16 = 342 slots; P = 4 steps per scale, 17 sampling steps).
//
//   cb_engine_bench train  --preset S|L [--batch N] [--device D] [--repeats R] [--peak F]
//   cb_engine_bench sample --preset S|L [--batches 1,16,64] [--graphs on|off] [--device D]
//                          [--repeats R] [--peak F]
//   cb_engine_bench gemm   [--m 4096] [--n 4096] [--k 4096] [--device D] [--repeats R] [--peak F]
//                          [--shapes none|S] [--seconds T]
//   cb_engine_bench vq     [--size 256] [--batch 1] [--codes 16384] [--device D] [--repeats R]
//
// --precision fp32|bf16 (train and sample): make_model_ops<float>(device, precision), e.g. the
// cpu backend with oneDNN bf16 matmuls and mixed precision.
// --device: cuda (bf16 tensor-core matmuls; training with bf16 activations and fp32 master
// weights), cuda-fp32, cpu or cpu-ref; default cuda when a GPU is usable, else cpu. --graphs:
// whether the sampler replays each step as a recorded CUDA graph (default on; only the cuda
// backends record). --peak: the FLOP/s that MFU is relative to, default kH200Bf16Dense below.
// gemm on cpu: first the machine's limits (cpu/machine_limits.h: the best fp32 GEMM rate at
// --m^3 over the engine's sgemm paths, the bf16 rate, the memory read bandwidth; --seconds per
// measurement, default 2), then the model's linear on every backend as before, and with
// --shapes S every GEMM shape of the S preset's training and sampling (forward y = x w^T, the
// backward's dx = dy w and dw += dy^T x, attention's products) on every sgemm path, with the
// path the dispatch rule picks marked; each shape's figure is the fastest run in a 0.2 s box.
// Every measurement has a warm-up run (for sampling it also records the step graphs), then the
// median of --repeats timed runs. Each prints one compact line; the last line of the output is
// one JSON object with all of them.
//
// FLOPs (the TypeScript benchmarks' formulas, src/model/config.ts and src/bench/*.ts), with
// M = matmul parameters per slot = 2 (Dl W + W^2) + 4 W^2 + depth (4 + 2 mlp) W^2 + W K:
//   train, per slot:   6 M + depth * 12 * meanVisible * W      (forward + backward)
//   sample, per image: rows * sum_t (2 M + depth * 4 * visible(t) * W), rows = 2 under CFG
//   gemm:              2 m n k
//   vq, per image:     sum over the pass's convolutions of 2 Cout Cin k k Ho Wo (attention,
//                      norms and the quantiser are not counted); the sgemm reference runs the
//                      model's linear on each convolution's GEMM shape (Ho Wo B, Cin k k, Cout)
// The sampling plan is raster order in blocks of even sizes (the larger last): the same block
// sizes, hence the same work, as the checkerboard order.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/machine_limits.h"
#include "cpu/onednn_gemm.h"
#include "cpu/parallel.h"
#include "cpu/sgemm.h"
#include "cuda/cuda.h"
#include "error.h"
#include "model/backends.h"
#include "model/linear_timing.h"
#include "model/model.h"
#include "model_fixture.h"
#include "sample/raster_plan.h"
#include "sample/sampler.h"
#include "vq/conv_ops.h"
#include "vq/vq_config.h"
#include "vq/vq_model.h"

namespace {

using Clock = std::chrono::steady_clock;

// The H200's dense bf16 tensor-core rate, the MFU reference: NVIDIA's H200 datasheet gives
// "BFLOAT16 Tensor Core 1,979 TFLOPS" for the SXM part with structured sparsity, i.e.
// 989.4 TFLOP/s dense (the same tensor cores and clocks as the H100 SXM, whose datasheet lists
// 989.4 dense).
constexpr double kH200Bf16Dense = 989.4e12;

const char* kUsage =
    "usage: cb_engine_bench train  --preset S|L [--batch N] [--steps-per-scale P] [options]\n"
    "       cb_engine_bench sample --preset S|L [--batches 1,16,64] [--graphs on|off] [options]\n"
    "       cb_engine_bench gemm   [--m 4096] [--n 4096] [--k 4096] [--shapes none|S] "
    "[--seconds T] [options]\n"
    "       cb_engine_bench vq     [--size 256] [--batch 1] [--codes 16384] [options]\n"
    "options: --device cuda|cuda-fp32|cpu|cpu-ref (default cuda when a GPU is usable, else cpu)\n"
    "         --precision fp32|bf16 (train, sample; default: the device's own)\n"
    "         --repeats R (timed runs after one warm-up; default 5, train 3, vq 2)\n"
    "         --peak FLOP/s for MFU (default 989.4e12, the H200's dense bf16 rate)\n";

bool on_off(const std::string& v, const char* name) {
  CB_CHECK(v == "on" || v == "off",
           std::string("--") + name + " must be on or off, got '" + v + "'");
  return v == "on";
}

// --name value pairs.
struct Args {
  std::string command;
  std::map<std::string, std::string> values;

  std::string get(const std::string& name, const std::string& fallback) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  long long integer(const std::string& name, long long fallback) const {
    const std::string v = get(name, "");
    if (v.empty()) return fallback;
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    CB_CHECK(end && *end == 0 && x > 0,
             "--" + name + " must be a positive integer, got '" + v + "'");
    return x;
  }
  double real(const std::string& name, double fallback) const {
    const std::string v = get(name, "");
    if (v.empty()) return fallback;
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    CB_CHECK(end && *end == 0 && x > 0,
             "--" + name + " must be a positive number, got '" + v + "'");
    return x;
  }
};

Args parse(int argc, char** argv) {
  Args a;
  CB_CHECK(argc >= 2, "no command");
  a.command = argv[1];
  for (int i = 2; i < argc; i += 2) {
    const std::string key = argv[i];
    CB_CHECK(key.size() > 2 && key.compare(0, 2, "--") == 0 && i + 1 < argc,
             "expected --name value, got '" + key + "'");
    a.values[key.substr(2)] = argv[i + 1];
  }
  return a;
}

std::vector<int> int_list(const std::string& text) {
  std::vector<int> out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const int v = std::atoi(text.substr(at, comma - at).c_str());
    CB_CHECK(v > 0, "expected a list of positive integers, got '" + text + "'");
    out.push_back(v);
    at = comma + 1;
  }
  return out;
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  const size_t m = xs.size() / 2;
  return xs.size() % 2 ? xs[m] : 0.5 * (xs[m - 1] + xs[m]);
}

// Seconds of each of `repeats` runs of fn after one warm-up run.
std::vector<double> time_runs(int repeats, const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  for (int r = 0; r < repeats; r++) {
    const auto t0 = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return t;
}

std::string num(double v, const char* f = "%.4g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

cb::ModelConfig preset(const std::string& name) {
  cb::ModelConfig c;
  c.vocab = 4096;
  c.latent_dim = 8;
  c.classes = 1000;
  c.mlp_ratio = 4;
  c.scales = {1, 2, 4, 8, 16};
  c.heads = 16;
  if (name == "S") {
    c.depth = 12;
    c.width = 512;
  } else if (name == "L") {
    c.depth = 20;
    c.width = 1024;
  } else {
    CB_FAIL("--preset must be S or L, got '" + name + "'");
  }
  c.validate();
  return c;
}

// src/model/config.ts matmulParamsPerSlot.
double matmul_params_per_slot(const cb::ModelConfig& c) {
  const double W = c.width;
  return 2 * (c.latent_dim * W + W * W) + 4 * W * W + c.depth * (4 + 2.0 * c.mlp_ratio) * W * W +
         W * c.vocab;
}

std::string default_device() { return cb::cuda_status().available ? "cuda" : "cpu"; }

// The backend for --device and --precision (fp32 | bf16; none: the device's own precision).
std::unique_ptr<cb::ModelOps<float>> bench_ops(const Args& a, const std::string& device) {
  const std::string precision = a.get("precision", "");
  if (precision.empty()) return cb::make_model_ops<float>(device);
  return cb::make_model_ops<float>(device, cb::parse_precision(precision));
}

// ---- train ------------------------------------------------------------------------------------

// A random codebook (K, Dl) for the model's Eq. 1 inputs.
void set_bench_codebook(cb::Model<float>& model) {
  const cb::ModelConfig& c = model.config();
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uni(-0.5f, 0.5f);
  std::vector<float> rows(size_t(c.vocab) * c.latent_dim);
  for (float& v : rows) v = uni(rng);
  model.set_codebook(rows.data(), (int64_t)rows.size());
}

std::string bench_train(const Args& a, const std::string& device, int repeats, double peak) {
  const std::string name = a.get("preset", "S");
  const cb::ModelConfig c = preset(name);
  const int B = (int)a.integer("batch", 8), P = (int)a.integer("steps-per-scale", 4);
  const cbt::SlotPlan plan = cbt::plan_slots(c, std::vector<int>(c.scales.size(), P));
  const cb::Batch<float> batch = cbt::random_batch<float>(c, plan, B, 7);
  cb::Model<float> model(c, bench_ops(a, device), 0);
  set_bench_codebook(model);
  cb::AdamWSettings adamw;
  const std::vector<double> t = time_runs(repeats, [&] {
    model.zero_grad();
    model.forward(batch, true);
    model.backward();
    model.step(adamw);
    model.ops().memory().synchronize();
  });
  const double seconds = median(t);
  double mean_visible = 0;
  for (int32_t v : plan.visible_end) mean_visible += v;
  mean_visible /= plan.T;
  const double flops = (6 * matmul_params_per_slot(c) + c.depth * 12.0 * mean_visible * c.width) *
                       double(B) * plan.T;
  const double tokens = double(B) * (plan.T - 1), rate = flops / seconds;
  const char* precision = model.mixed_precision() ? "bf16 activations" : "fp32 activations";
  std::printf("train %s on %s (%s): batch %d x %d slots, %s s/step (min %s, max %s), "
              "%s tokens/s, %s TFLOP/s, MFU %s%%\n",
              name.c_str(), device.c_str(), precision, B, plan.T, num(seconds).c_str(),
              num(*std::min_element(t.begin(), t.end())).c_str(),
              num(*std::max_element(t.begin(), t.end())).c_str(),
              num(tokens / seconds, "%.0f").c_str(),
              num(rate / 1e12, "%.2f").c_str(), num(100 * rate / peak, "%.2f").c_str());
  return "{\"bench\":\"train\",\"preset\":\"" + name + "\",\"device\":\"" + device +
         "\",\"mixedPrecision\":" + (model.mixed_precision() ? "true" : "false") +
         ",\"batch\":" + std::to_string(B) + ",\"slots\":" + std::to_string(plan.T) +
         ",\"stepsPerScale\":" + std::to_string(P) + ",\"params\":" +
         std::to_string(model.layout().total()) + ",\"stepSeconds\":" + num(seconds, "%.6g") +
         ",\"tokensPerSec\":" + num(tokens / seconds, "%.6g") + ",\"tflops\":" +
         num(rate / 1e12, "%.6g") + ",\"mfu\":" + num(rate / peak, "%.6g") +
         ",\"repeats\":" + std::to_string(repeats) + "}";
}

// ---- sample -----------------------------------------------------------------------------------

// Raster order, `steps` blocks per scale of even sizes (the larger last), prev positions paired
// by index, as the sampler's tests build it.
cb::SampleRequest sample_request(const cb::ModelConfig& c, int steps, int B) {
  cb::SampleRequest r;
  for (int i = 0; i < B; i++) {
    r.labels.push_back((i * 7919) % c.classes);
    r.image_index.push_back(i);
  }
  cb::set_raster_plan(c, steps, r);
  r.guidance = 2.0f;
  r.guidance_start = 5;
  r.sampling.seed = 0;
  return r;
}

std::string bench_sample(const Args& a, const std::string& device, int repeats, double peak) {
  const std::string name = a.get("preset", "S");
  const cb::ModelConfig c = preset(name);
  const int P = (int)a.integer("steps-per-scale", 4);
  const std::vector<int> batches = int_list(a.get("batches", "1,16,64"));
  const bool graphs = on_off(a.get("graphs", "on"), "graphs");
  cb::Model<float> model(c, bench_ops(a, device), 0);
  set_bench_codebook(model);
  cb::SampleWorkspace<float> workspace;
  workspace.set_recording(graphs);
  const bool recorded = workspace.recorder(model.ops()) != nullptr;
  std::string points;
  for (int B : batches) {
    const cb::SampleRequest req = sample_request(c, P, B);
    const int steps = (int)req.block_start.size() - 1;
    // visible(t) = the end of slot t's block (1 for the class token).
    double per_image = 0;
    for (size_t b = 0; b < req.block_start.size(); b++) {
      const double slots = req.block_end[b] - req.block_start[b];
      per_image += slots * (2 * matmul_params_per_slot(c) +
                            c.depth * 4.0 * req.block_end[b] * c.width);
    }
    per_image *= req.guidance != 0 ? 2 : 1;
    const std::vector<double> t = time_runs(repeats, [&] {
      cb::sample_images(model, req, workspace, nullptr);
      model.ops().memory().synchronize();
    });
    const double s = median(t) / B, rate = per_image / s;
    std::printf("sample %s on %s (%s): batch %d, %d steps, cfg %g from step %d: %s ms/image "
                "(min %s, max %s), %s images/s, %s TFLOP/s, MFU %s%%\n",
                name.c_str(), device.c_str(), recorded ? "graphs" : "no graphs", B, steps,
                req.guidance, req.guidance_start,
                num(1e3 * s, "%.3f").c_str(),
                num(1e3 * *std::min_element(t.begin(), t.end()) / B, "%.3f").c_str(),
                num(1e3 * *std::max_element(t.begin(), t.end()) / B, "%.3f").c_str(),
                num(1 / s, "%.1f").c_str(), num(rate / 1e12, "%.2f").c_str(),
                num(100 * rate / peak, "%.2f").c_str());
    points += std::string(points.empty() ? "" : ",") + "{\"batch\":" + std::to_string(B) +
              ",\"secondsPerImage\":" + num(s, "%.6g") + ",\"imagesPerSec\":" +
              num(1 / s, "%.6g") + ",\"tflops\":" + num(rate / 1e12, "%.6g") + ",\"mfu\":" +
              num(rate / peak, "%.6g") + "}";
  }
  return "{\"bench\":\"sample\",\"preset\":\"" + name + "\",\"device\":\"" + device +
         "\",\"graphs\":" + (recorded ? "true" : "false") + ",\"stepsPerScale\":" +
         std::to_string(P) + ",\"cfg\":2,\"cfgStart\":5,\"repeats\":" +
         std::to_string(repeats) + ",\"points\":[" + points + "]}";
}

// ---- gemm -------------------------------------------------------------------------------------

// The machine's limits (cpu/machine_limits.h), printed and as JSON.
std::string bench_limits(int size, double seconds) {
  cb::LimitOptions o;
  o.gemm_size = size;
  o.seconds_each = seconds;
  const cb::MachineLimits lim = cb::measure_machine_limits(o);
  std::string fp32;
  for (const cb::GemmRate& r : lim.fp32) {
    std::printf("limit fp32 gemm %d^3 on %s: %s GFLOP/s (%d runs)\n", size, r.path.c_str(),
                num(r.gflops, "%.1f").c_str(), r.runs);
    fp32 += std::string(fp32.empty() ? "" : ",") + "{\"path\":\"" + r.path + "\",\"gflops\":" +
            num(r.gflops, "%.6g") + "}";
  }
  std::printf("limit fp32 peak: %s GFLOP/s (%s); the dispatch: %s\n",
              num(lim.fp32_best.gflops, "%.1f").c_str(), lim.fp32_best.path.c_str(),
              lim.fp32_rule.c_str());
  if (lim.bf16_available) {
    std::printf("limit bf16 gemm %d^3 on %s: %s GFLOP/s (%d runs)\n", size, lim.bf16.path.c_str(),
                num(lim.bf16.gflops, "%.1f").c_str(), lim.bf16.runs);
  } else {
    std::printf("limit bf16: unavailable (%s)\n", lim.bf16_unavailable.c_str());
  }
  std::printf("limit memory read: %s GB/s (%d threads, %s MiB buffer, %d passes)\n",
              num(lim.read_gb_per_s, "%.1f").c_str(), lim.threads,
              num(double(lim.read_bytes) / (1 << 20), "%.0f").c_str(), lim.read_passes);
  return "{\"threads\":" + std::to_string(lim.threads) + ",\"size\":" + std::to_string(size) +
         ",\"fp32\":[" + fp32 + "],\"fp32PeakGflops\":" + num(lim.fp32_best.gflops, "%.6g") +
         ",\"fp32PeakPath\":\"" + lim.fp32_best.path + "\",\"bf16Gflops\":" +
         (lim.bf16_available ? num(lim.bf16.gflops, "%.6g") : std::string("null")) +
         ",\"readGBps\":" + num(lim.read_gb_per_s, "%.6g") + ",\"cpu\":\"" + lim.cpu_features +
         "\",\"onednn\":\"" + lim.onednn + "\"}";
}

// Every GEMM shape of the preset's training (batch 8 x 342 slots) and sampling (batch 1 and 16
// with CFG: 2 and 32 rows per slot, blocks of 1 to 64 slots) on every sgemm path.
std::string bench_gemm_shapes(const std::string& name) {
  const cb::ModelConfig c = preset(name);
  const int W = c.width, F = c.hidden(), K = c.vocab, hd = c.head_dim(), C = 3 * W;
  struct Shape {
    std::string what;
    bool ta, tb;
    int m, n, k, lda, ldb;
    bool in_parallel;  // run from inside parallel_for ranges, as attention does
  };
  std::vector<Shape> shapes;
  // forward y (rows, out) = x (rows, in) . w^T, dense operands.
  auto fwd = [&](const std::string& what, int rows, int in, int out) {
    shapes.push_back({what, false, true, rows, out, in, in, in, false});
  };
  for (int rows : {2, 8, 32, 128, 2736}) {
    const std::string r = " rows " + std::to_string(rows);
    fwd("qkv" + r, rows, W, 3 * W);
    fwd("fc1" + r, rows, W, F);
    fwd("fc2" + r, rows, F, W);
    fwd("head" + r, rows, W, K);
  }
  fwd("in_proj rows 2736", 2736, 4 * W, W);
  fwd("ada rows 2", 2, W, 6 * W);
  fwd("ada rows 32", 32, W, 6 * W);
  fwd("latent fc1 rows 5472", 5472, c.latent_dim, W);
  // backward at batch 8: dx (rows, in) = dy (rows, out) . w; dw (out, in) += dy^T x.
  const int rows = 2736;
  for (auto [in, out, what] : {std::make_tuple(W, 3 * W, "qkv"), std::make_tuple(W, F, "fc1"),
                               std::make_tuple(F, W, "fc2"), std::make_tuple(W, K, "head")}) {
    shapes.push_back({std::string("dx ") + what, false, false, rows, in, out, out, in, false});
    shapes.push_back({std::string("dw ") + what, true, false, out, in, rows, out, in, false});
  }
  // attention per (sequence, head): scores (m, vis) = q k^T, out (m, hd) = p v, strided q/k/v.
  for (auto [m, vis] : {std::make_pair(1, 5), std::make_pair(16, 85), std::make_pair(64, 342)}) {
    const std::string mv = " m " + std::to_string(m) + " vis " + std::to_string(vis);
    shapes.push_back({"attn scores" + mv, false, true, m, vis, hd, C, C, true});
    shapes.push_back({"attn out" + mv, false, false, m, hd, vis, vis, C, true});
  }
  std::string points;
  std::printf("gemm shapes of %s (GFLOP/s, fastest run; * the dispatch's pick):\n", name.c_str());
  for (const Shape& s : shapes) {
    const int a_rows = s.ta ? s.k : s.m, b_rows = s.tb ? s.n : s.k;
    std::vector<float> A(size_t(a_rows) * s.lda, 0.5f), B(size_t(b_rows) * s.ldb, 0.25f);
    // Attention runs one product per (sequence, head): 2 parallel ranges, one C each.
    std::vector<float> C0(size_t(s.m) * s.n), C1(size_t(s.m) * s.n);
    const cb::SgemmPath pick = cb::sgemm_path_for(s.ta, s.tb, s.m, s.n, s.k);
    std::string line, rates;
    for (cb::SgemmPath path : cb::sgemm_paths()) {
      const double flops = 2.0 * s.m * s.n * s.k * (s.in_parallel ? 2 : 1);
      if (path == cb::SgemmPath::blocked && flops > 2e9) continue;  // minutes: not a contender
      auto run = [&] {
        if (s.in_parallel) {
          cb::parallel_for(2, 1, [&](int64_t i, int64_t) {
            cb::sgemm_on(path, s.ta, s.tb, s.m, s.n, s.k, 1.0f, A.data(), s.lda, B.data(), s.ldb,
                         0.0f, i ? C1.data() : C0.data(), s.n);
          });
        } else {
          cb::sgemm_on(path, s.ta, s.tb, s.m, s.n, s.k, 1.0f, A.data(), s.lda, B.data(), s.ldb,
                       0.0f, C0.data(), s.n);
        }
      };
      run();
      double best = 1e300;
      const auto start = Clock::now();
      int runs = 0;
      while (runs < 3 || std::chrono::duration<double>(Clock::now() - start).count() < 0.2) {
        const auto t0 = Clock::now();
        run();
        best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
        if (++runs > 100000) break;
      }
      const double gflops = flops / best / 1e9;
      line += std::string("  ") + cb::sgemm_path_name(path) + (path == pick ? "*" : "") + " " +
              num(gflops, "%.1f");
      rates += std::string(rates.empty() ? "" : ",") + "\"" + cb::sgemm_path_name(path) +
               "\":" + num(gflops, "%.6g");
    }
    std::printf("  %-28s %5d x %5d x %5d %c%c:%s\n", s.what.c_str(), s.m, s.n, s.k,
                s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', line.c_str());
    points += std::string(points.empty() ? "" : ",") + "{\"shape\":\"" + s.what + "\",\"m\":" +
              std::to_string(s.m) + ",\"n\":" + std::to_string(s.n) + ",\"k\":" +
              std::to_string(s.k) + ",\"pick\":\"" + cb::sgemm_path_name(pick) +
              "\",\"gflops\":{" + rates + "}}";
  }
  return "[" + points + "]";
}

std::string bench_gemm(const Args& a, const std::string& device, int repeats, double peak) {
  const int m = (int)a.integer("m", 4096), n = (int)a.integer("n", 4096);
  const int k = (int)a.integer("k", 4096);
  const bool cpu = device == "cpu" || device == "cpu-ref";
  const std::string limits = cpu ? bench_limits(m, a.real("seconds", 2.0)) : "null";
  const std::string shapes_preset = a.get("shapes", "none");
  const std::string shapes = shapes_preset != "none" ? bench_gemm_shapes(shapes_preset) : "null";
  // The model's own linear, y (m, n) = x (m, k) . w^T + b (w: (n, k)), as its forward runs it
  // (model/linear_timing.h: bf16 linear_mixed on cuda, fp32 on cuda-fp32 and the CPU).
  std::vector<std::string> backends = {device};
  if (device == "cuda" || device == "cuda-fp32") backends = {"cuda", "cuda-fp32"};
  std::string points;
  for (const std::string& backend : backends) {
    std::unique_ptr<cb::ModelOps<float>> ops = cb::make_model_ops<float>(backend);
    const std::string precision = cb::model_linear_precision(*ops);
    const std::vector<double> t = cb::time_model_linear(*ops, m, k, n, repeats);
    const double s = median(t), rate = 2.0 * m * n * k / s;
    std::printf("gemm on %s (%s, the model's linear): %d x %d x %d: %s ms, %s TFLOP/s, "
                "%s%% of peak\n",
                backend.c_str(), precision.c_str(), m, n, k, num(1e3 * s, "%.3f").c_str(),
                num(rate / 1e12, "%.2f").c_str(), num(100 * rate / peak, "%.2f").c_str());
    points += std::string(points.empty() ? "" : ",") + "{\"backend\":\"" + backend +
              "\",\"precision\":\"" + precision + "\",\"seconds\":" + num(s, "%.6g") +
              ",\"tflops\":" + num(rate / 1e12, "%.6g") + ",\"fractionOfPeak\":" +
              num(rate / peak, "%.6g") + "}";
  }
  return "{\"bench\":\"gemm\",\"m\":" + std::to_string(m) + ",\"n\":" + std::to_string(n) +
         ",\"k\":" + std::to_string(k) + ",\"repeats\":" + std::to_string(repeats) +
         ",\"limits\":" + limits + ",\"shapes\":" + shapes + ",\"points\":[" + points + "]}";
}


// ---- vq ---------------------------------------------------------------------------------------

// Forwards every op to a backend and, while armed, records each conv2d's geometry: the list of
// convolutions a VQ pass runs, for its FLOP count and the sgemm reference on the same shapes.
class RecordingConvOps final : public cb::ConvOps<float> {
 public:
  explicit RecordingConvOps(std::unique_ptr<cb::ConvOps<float>> inner) : inner_(std::move(inner)) {}
  std::vector<cb::Conv2dShape> convs;
  bool armed = false;

  const char* name() const override { return inner_->name(); }
  cb::DeviceMemory& memory() override { return inner_->memory(); }
  void conv2d(const cb::Conv2dShape& s, const float* x, const float* w, const float* bias,
              float* y) override {
    if (armed) convs.push_back(s);
    inner_->conv2d(s, x, w, bias, y);
  }
  void group_norm(int B, int C, int64_t HW, int groups, float eps, const float* x,
                  const float* gamma, const float* beta, float* y) override {
    inner_->group_norm(B, C, HW, groups, eps, x, gamma, beta, y);
  }
  void group_norm_swish(int B, int C, int64_t HW, int groups, float eps, const float* x,
                        const float* gamma, const float* beta, float* y) override {
    inner_->group_norm_swish(B, C, HW, groups, eps, x, gamma, beta, y);
  }
  void swish(int64_t count, const float* x, float* y) override { inner_->swish(count, x, y); }
  void add_inplace(int64_t count, float* y, const float* x) override {
    inner_->add_inplace(count, y, x);
  }
  void upsample_nearest2x(int B, int C, int H, int W, const float* x, float* y) override {
    inner_->upsample_nearest2x(B, C, H, W, x, y);
  }
  void spatial_attention(int B, int C, int64_t HW, const float* q, const float* k, const float* v,
                         float* out) override {
    inner_->spatial_attention(B, C, HW, q, k, v, out);
  }
  void l2_normalize_rows(int64_t n, int d, const float* x, float* y) override {
    inner_->l2_normalize_rows(n, d, x, y);
  }
  void quantize_l2(int B, int D, int64_t HW, const float* z, const float* codebook, int K,
                   int32_t* index, float* zq, float* dist2) override {
    inner_->quantize_l2(B, D, HW, z, codebook, K, index, zq, dist2);
  }
  void embed_codes(int B, int D, int64_t HW, const int32_t* index, const float* codebook, int K,
                   float* zq) override {
    inner_->embed_codes(B, D, HW, index, codebook, K, zq);
  }
  // The backward ops (VQ training) pass straight through: the bench times inference passes.
  void conv2d_backward(const cb::Conv2dShape& s, const float* x, const float* w, const float* dy,
                       float* dx, float* dw, float* dbias) override {
    inner_->conv2d_backward(s, x, w, dy, dx, dw, dbias);
  }
  void group_norm_backward(int B, int C, int64_t HW, int groups, float eps, const float* x,
                           const float* gamma, const float* beta, const float* dy, float* dx,
                           float* dgamma, float* dbeta) override {
    inner_->group_norm_backward(B, C, HW, groups, eps, x, gamma, beta, dy, dx, dgamma, dbeta);
  }
  void group_norm_swish_backward(int B, int C, int64_t HW, int groups, float eps, const float* x,
                                 const float* gamma, const float* beta, const float* dy,
                                 float* dx, float* dgamma, float* dbeta) override {
    inner_->group_norm_swish_backward(B, C, HW, groups, eps, x, gamma, beta, dy, dx, dgamma,
                                      dbeta);
  }
  void swish_backward(int64_t count, const float* x, const float* dy, float* dx) override {
    inner_->swish_backward(count, x, dy, dx);
  }
  void upsample_nearest2x_backward(int B, int C, int H, int W, const float* dy,
                                   float* dx) override {
    inner_->upsample_nearest2x_backward(B, C, H, W, dy, dx);
  }
  void spatial_attention_backward(int B, int C, int64_t HW, const float* q, const float* k,
                                  const float* v, const float* dout, float* dq, float* dk,
                                  float* dv) override {
    inner_->spatial_attention_backward(B, C, HW, q, k, v, dout, dq, dk, dv);
  }
  void l2_normalize_rows_backward(int64_t n, int d, const float* x, const float* dy,
                                  float* dx) override {
    inner_->l2_normalize_rows_backward(n, d, x, dy, dx);
  }
  void quantize_l2_backward(int B, int D, int64_t HW, const float* z, const float* codebook,
                            int K, const int32_t* index, const float* dzq, float codebook_scale,
                            float commit_scale, float* dz, float* dcodebook) override {
    inner_->quantize_l2_backward(B, D, HW, z, codebook, K, index, dzq, codebook_scale,
                                 commit_scale, dz, dcodebook);
  }
  void pixel_loss(int64_t count, const float* rec, const float* target, float l2_scale,
                  float l1_scale, float* drec, float* sums) override {
    inner_->pixel_loss(count, rec, target, l2_scale, l1_scale, drec, sums);
  }

 private:
  std::unique_ptr<cb::ConvOps<float>> inner_;
};

// One network pass (encoder or decoder) timed, beside the model's linear (sgemm on cpu, fp32 on
// cuda) on each of its convolutions' GEMM shapes: y (Ho Wo B, Cout) = x (Ho Wo B, Cin k k) w^T.
struct VqPassTiming {
  double seconds = 0;      // median of the pass
  double conv_flops = 0;   // 2 Cout Cin k k Ho Wo B, summed over the pass's convolutions
  double sgemm_seconds = 0;  // the reference linear on the same shapes, summed
  size_t convs = 0, shapes = 0;
};

VqPassTiming time_vq_pass(RecordingConvOps& rec, const std::string& linear_backend, int repeats,
                          const std::function<void()>& pass) {
  VqPassTiming t;
  bool first = true;
  const std::vector<double> runs = time_runs(repeats, [&] {
    rec.armed = first;  // the warm-up run records the convolutions
    pass();
    rec.armed = first = false;
  });
  t.seconds = median(runs);
  // (rows, in, out) -> how many convolutions of that GEMM shape the pass runs.
  std::map<std::vector<int64_t>, int> shapes;
  for (const cb::Conv2dShape& s : rec.convs) {
    const int64_t rows = int64_t(s.B) * s.out_h() * s.out_w(), in = int64_t(s.Cin) * s.k * s.k;
    t.conv_flops += 2.0 * double(rows) * double(in) * s.Cout;
    shapes[{rows, in, s.Cout}]++;
  }
  t.convs = rec.convs.size();
  t.shapes = shapes.size();
  rec.convs.clear();
  std::unique_ptr<cb::ModelOps<float>> ops = cb::make_model_ops<float>(linear_backend);
  for (const auto& [shape, count] : shapes) {
    const std::vector<double> s =
        cb::time_model_linear(*ops, shape[0], (int)shape[1], (int)shape[2], std::max(1, repeats));
    t.sgemm_seconds += median(s) * count;
  }
  return t;
}

// LlamaGen's full ds16 tokenizer with random weights at --size px: encoder and decoder images/s
// and their conv FLOP rate as a fraction of the model's linear (sgemm) on the same GEMM shapes.
std::string bench_vq(const Args& a, const std::string& device, int repeats) {
  const int B = (int)a.integer("batch", 1), S = (int)a.integer("size", 256);
  const int codes = (int)a.integer("codes", 16384);
  const cb::VqConfig config = cb::VqConfig::ds16(codes);
  auto recorder = std::make_unique<RecordingConvOps>(cb::make_conv_ops<float>(device));
  RecordingConvOps& rec = *recorder;
  cb::VqModel<float> model(std::move(recorder), config, 0);
  const std::string linear_backend = device == "cuda" ? "cuda-fp32" : device;
  const int h = S / config.downsample();
  std::vector<float> images(size_t(B) * 3 * S * S), latent(size_t(B) * config.code_dim * h * h);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> pixel(-1.0f, 1.0f);
  for (float& v : images) v = pixel(rng);
  std::vector<int32_t> index(size_t(B) * h * h);
  std::vector<float> decoded(images.size());
  const VqPassTiming enc = time_vq_pass(rec, linear_backend, repeats, [&] {
    model.encode(images.data(), B, S, S, latent.data());
    model.quantize(latent.data(), B, h, h, index.data(), nullptr, nullptr);
  });
  const VqPassTiming dec = time_vq_pass(rec, linear_backend, repeats, [&] {
    model.decode_codes(index.data(), B, h, h, decoded.data());
  });
  std::string points;
  for (const auto& [pass, t] : {std::make_pair("encoder", enc), std::make_pair("decoder", dec)}) {
    const double rate = t.conv_flops / t.seconds, sgemm = t.conv_flops / t.sgemm_seconds;
    std::printf("vq %s ds16 on %s: %d x %d px, batch %d: %s s/pass, %s images/s, %s GFLOP/image "
                "in %zu convs (%zu GEMM shapes), %s GFLOP/s = %s%% of sgemm on the same shapes "
                "(%s GFLOP/s)\n",
                pass, device.c_str(), S, S, B, num(t.seconds).c_str(),
                num(B / t.seconds, "%.3f").c_str(), num(t.conv_flops / B / 1e9, "%.1f").c_str(),
                t.convs, t.shapes, num(rate / 1e9, "%.1f").c_str(),
                num(100 * rate / sgemm, "%.0f").c_str(), num(sgemm / 1e9, "%.1f").c_str());
    points += std::string(points.empty() ? "" : ",") + "{\"pass\":\"" + pass +
              "\",\"seconds\":" + num(t.seconds, "%.6g") + ",\"imagesPerSec\":" +
              num(B / t.seconds, "%.6g") + ",\"convFlopsPerImage\":" +
              num(t.conv_flops / B, "%.6g") + ",\"gflops\":" + num(rate / 1e9, "%.6g") +
              ",\"sgemmGflops\":" + num(sgemm / 1e9, "%.6g") + ",\"fractionOfSgemm\":" +
              num(rate / sgemm, "%.6g") + "}";
  }
  return "{\"bench\":\"vq\",\"model\":\"ds16\",\"device\":\"" + device + "\",\"size\":" +
         std::to_string(S) + ",\"batch\":" + std::to_string(B) + ",\"codes\":" +
         std::to_string(codes) + ",\"repeats\":" + std::to_string(repeats) + ",\"points\":[" +
         points + "]}";
}

}  // namespace

int main(int argc, char** argv) {
  bool arguments_read = false;  // errors before this are usage errors
  try {
    const Args a = parse(argc, argv);
    const std::string device = a.get("device", default_device());
    const double peak = a.real("peak", kH200Bf16Dense);
    const int repeats =
        (int)a.integer("repeats", a.command == "train" ? 3 : a.command == "vq" ? 2 : 5);
    if (a.command != "train" && a.command != "sample" && a.command != "gemm" &&
        a.command != "vq") {
      std::fputs(kUsage, stderr);
      return 2;
    }
    arguments_read = true;
    const cb::CudaStatus cuda = cb::cuda_status();
    if (device.compare(0, 4, "cuda") == 0 && cuda.available) {
      const cb::CudaDevice& d = cuda.devices[0];
      std::printf("device: %s (compute %d.%d, %.0f GiB); peak %s TFLOP/s\n", d.name.c_str(),
                  d.major, d.minor, double(d.memory_bytes) / (1u << 30),
                  num(peak / 1e12, "%.1f").c_str());
    }
    std::string json;
    if (a.command == "train") json = bench_train(a, device, repeats, peak);
    if (a.command == "sample") json = bench_sample(a, device, repeats, peak);
    if (a.command == "gemm") json = bench_gemm(a, device, repeats, peak);
    if (a.command == "vq") json = bench_vq(a, device, repeats);
    std::printf("%s\n", json.c_str());
    return 0;
  } catch (const cb::Error& e) {
    std::fprintf(stderr, "cb_engine_bench: %s (%s:%d)\n%s", e.what(), e.file().c_str(), e.line(),
                 arguments_read ? "" : kUsage);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cb_engine_bench: %s\n", e.what());
    return 1;
  }
}
