#include "sampler.h"

#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <unistd.h>

#include "../error.h"
#include "../model/adaln.h"
#include "sampling_settings.h"

namespace cb {
namespace {

// Checks the request against the model; returns the slot count T.
int check_request(const ModelConfig& c, const SampleRequest& r) {
  check_sampling_settings(r.guidance, r.guidance_start, r.sampling.temperature, r.sampling.top_k,
                          r.sampling.top_p);
  const int B = (int)r.labels.size();
  CB_CHECK(B >= 1, "sample: no images asked for");
  CB_CHECK((int)r.image_index.size() == B, "sample: imageIndex needs one value per image");
  for (int32_t l : r.labels) {
    CB_CHECK(l >= 0 && l < c.classes, "sample: class " + std::to_string(l) + " outside [0, " +
                                          std::to_string(c.classes) + ")");
  }
  const int64_t T = c.sequence_length();
  const size_t blocks = r.block_start.size();
  CB_CHECK(blocks >= 2 && r.block_end.size() == blocks && r.block_scale.size() == blocks,
           "sample: blockStart, blockEnd and blockScale must have one value per block");
  CB_CHECK(r.block_start[0] == 0 && r.block_end[0] == 1 && r.block_scale[0] == -1,
           "sample: block 0 must be the class token alone");
  int prev_scale = 0;
  for (size_t b = 1; b < blocks; b++) {
    CB_CHECK(r.block_start[b] == r.block_end[b - 1] && r.block_end[b] > r.block_start[b],
             "sample: blocks must be non-empty and follow each other");
    const int k = r.block_scale[b];
    CB_CHECK(k == prev_scale || k == prev_scale + 1, "sample: blocks must go scale by scale");
    CB_CHECK(k >= 0 && k < (int)c.scales.size(), "sample: block scale outside the model's");
    prev_scale = k;
  }
  CB_CHECK(r.block_end[blocks - 1] == T && prev_scale == (int)c.scales.size() - 1,
           "sample: the blocks must cover the " + std::to_string(T) + " slots of every scale");
  CB_CHECK((int64_t)r.pos_of.size() == T || (int64_t)r.pos_of.size() == T * B,
           "sample: posOf needs T or B*T values");
  CB_CHECK(r.prev_pos_of.size() == r.pos_of.size(), "sample: prevPosOf must match posOf");
  return (int)T;
}

}  // namespace

template <typename Real>
void SampleWorkspace<Real>::set_recording(bool on) {
  recording_ = on;
  if (!on) recorder_.reset();
}

template <typename Real>
OpRecorder* SampleWorkspace<Real>::recorder(ModelOps<Real>& ops) {
  if (!recording_) return nullptr;
  if (recorder_ops_ != &ops) {
    recorder_ = ops.make_recorder();
    recorder_ops_ = &ops;
  }
  return recorder_.get();
}

// Recordings name the workspace's arrays; one that moves makes them useless.
template <typename Real>
void SampleWorkspace<Real>::forget_recordings() {
  if (recorder_) recorder_->clear();
}

template <typename Real>
void SampleWorkspace<Real>::use(DeviceMemory& memory) {
  if (memory_ == &memory) return;
  // Another backend's memory: start over there.
  forget_recordings();
  arena_ = DeviceArray<Real>();
  ints_ = DeviceArray<int32_t>();
  flags_ = DeviceArray<uint8_t>();
  floats_ = DeviceArray<float>();
  halves_ = DeviceArray<bf16_t>();
  arena_.bind(memory);
  halves_.bind(memory);
  ints_.bind(memory);
  flags_.bind(memory);
  floats_.bind(memory);
  memory_ = &memory;
}

template <typename Real>
Real* SampleWorkspace<Real>::reserve(DeviceMemory& memory, int64_t count) {
  use(memory);
  if (arena_.size() >= count) return arena_.data();
  const double bytes = double(count) * sizeof(Real);
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  const bool too_large = pages > 0 && page > 0 && bytes > double(pages) * double(page);
  forget_recordings();
  arena_.resize(0);  // release first: the old and new need not coexist
  try {
    if (too_large) throw std::bad_alloc();
    arena_.resize(count);
  } catch (const std::bad_alloc&) {
    CB_FAIL("cannot allocate the sampler's memory: " + std::to_string(int64_t(bytes)) +
            " bytes (KV cache and step buffers) for this batch; use a smaller --batch");
  } catch (const Error& e) {
    CB_FAIL("cannot allocate the sampler's memory: " + std::to_string(int64_t(bytes)) +
            " bytes for this batch (" + e.what() + "); use a smaller --batch");
  }
  return arena_.data();
}

template <typename Real>
int32_t* SampleWorkspace<Real>::reserve_ints(DeviceMemory& memory, int64_t count) {
  use(memory);
  if (count > ints_.size()) forget_recordings();
  return ints_.reserve(count);
}

template <typename Real>
uint8_t* SampleWorkspace<Real>::reserve_flags(DeviceMemory& memory, int64_t count) {
  use(memory);
  if (count > flags_.size()) forget_recordings();
  return flags_.reserve(count);
}

template <typename Real>
float* SampleWorkspace<Real>::reserve_floats(DeviceMemory& memory, int64_t count) {
  use(memory);
  if (count > floats_.size()) forget_recordings();
  return floats_.reserve(count);
}

template <typename Real>
bf16_t* SampleWorkspace<Real>::reserve_halves(DeviceMemory& memory, int64_t count) {
  use(memory);
  if (count > halves_.size()) forget_recordings();
  return halves_.reserve(count);
}

namespace {

// A host array and its copy in the backend's memory: filled on the host, uploaded before an
// op reads it (or downloaded after an op wrote it). Both are views into buffers that hold
// several arrays back to back, so that one copy can move a step's inputs.
template <typename T>
struct Mirrored {
  T* host = nullptr;
  T* device = nullptr;
  void upload(DeviceMemory& m, int64_t count) {
    m.upload(device, host, size_t(count) * sizeof(T));
  }
  void download(DeviceMemory& m, int64_t count) {
    m.download(host, device, size_t(count) * sizeof(T));
  }
};

}  // namespace

template <typename Real>
SampleResult sample_images(Model<Real>& model, const SampleRequest& req,
                           SampleWorkspace<Real>& workspace, const StepCallback& on_step) {
  const ModelConfig& c = model.config();
  const int T = check_request(c, req);
  const Real* codebook = model.codebook();  // (K, Dl)
  CB_CHECK(codebook != nullptr, "sample: the model has no codebook (set_codebook / setCodebook: "
                                "the tokenizer's code vectors)");
  ModelOps<Real>& op = model.ops();
  DeviceMemory& mem = op.memory();
  const int B = (int)req.labels.size();
  const bool guided = req.guidance != 0.0f;
  const int R = guided ? 2 * B : B;  // rows: B conditional, then B with the null class
  const int W = c.width, F = c.hidden(), K = c.vocab, Dl = c.latent_dim, depth = c.depth;
  const int steps = (int)req.block_start.size() - 1;
  const int64_t L = T - 1;
  const bool per_image_layout = (int64_t)req.pos_of.size() != T;
  auto pos_of = [&](int i, int t) { return req.pos_of[per_image_layout ? int64_t(i) * T + t : t]; };
  auto prev_pos_of = [&](int i, int t) {
    return req.prev_pos_of[per_image_layout ? int64_t(i) * T + t : t];
  };
  std::vector<int64_t> offset(c.scales.size());
  for (size_t k = 0; k < c.scales.size(); k++) offset[k] = c.scale_offset((int)k);

  // Rows per step: the first step also runs the class token.
  int m_max = 0;
  for (int s = 0; s < steps; s++) {
    const int t0 = s == 0 ? 0 : req.block_start[s + 1];
    m_max = std::max(m_max, req.block_end[s + 1] - t0);
  }
  const int64_t nb_max = int64_t(B) * m_max, n_max = int64_t(R) * m_max;
  const int s_max = *std::max_element(c.scales.begin(), c.scales.end());
  const int64_t layer_cache = int64_t(R) * T * W;  // one layer's keys (or values) in the cache

  // Every float buffer of the call, carved from the workspace's arena: counted first, then
  // handed out. The arena only grows and is never cleared (each buffer is written before it is
  // read), so repeated calls neither allocate nor touch new pages.
  Real* base = nullptr;
  int64_t used = 0;
  auto take = [&](int64_t count) {
    Real* p = base ? base + used : nullptr;
    used += count;
    return p;
  };
  Real *c_emb, *c_act, *ada, *head_ada, *k_cache, *v_cache, *prev_lat, *up_lat;
  Real *lat_in, *lat_g, *lat_out, *pe_p, *pe_q, *concat, *x, *xn, *mean, *rstd, *h;
  Real *qkv, *qr, *kr, *att, *ao, *g, *f2, *logits;
  for (int pass = 0; pass < 2; pass++) {
    used = 0;
    c_emb = take(int64_t(R) * W);                // (R, W) class embeddings
    c_act = take(int64_t(R) * W);                // (R, W) SiLU of them
    ada = take(int64_t(depth) * R * kLayerAdaChunks * W);  // (depth, R, 6W) AdaLN rows
    head_ada = take(int64_t(R) * kHeadAdaChunks * W);  // (R, 2W)
    k_cache = take(depth * layer_cache);         // (depth, R, T, W) keys after RoPE
    v_cache = take(depth * layer_cache);         // (depth, R, T, W) values
    prev_lat = take(int64_t(B) * s_max * s_max * Dl);  // (B, s_{k-1}^2, Dl)
    up_lat = take(int64_t(B) * s_max * s_max * Dl);    // (B, s_k^2, Dl)
    lat_in = take(2 * nb_max * Dl);              // (2nb, Dl): u rows, then v rows
    lat_g = take(2 * nb_max * W);                // (2nb, W)
    lat_out = take(2 * nb_max * W);              // (2nb, W)
    pe_p = take(nb_max * W);                     // (nb, W)
    pe_q = take(nb_max * W);                     // (nb, W)
    concat = take(nb_max * 4 * W);               // (nb, 4W)
    x = take(n_max * W);                         // (n, W) residual stream
    xn = take(n_max * W);                        // (n, W)
    mean = take(n_max);                          // (n)
    rstd = take(n_max);                          // (n)
    h = take(n_max * W);                         // (n, W)
    qkv = take(n_max * 3 * W);                   // (n, 3W)
    qr = take(n_max * W);                        // (n, W)
    kr = take(n_max * W);                        // (n, W)
    att = take(n_max * W);                       // (n, W)
    ao = take(n_max * W);                        // (n, W)
    g = take(n_max * F);                         // (n, F)
    f2 = take(n_max * W);                        // (n, W)
    logits = take(n_max * K);                    // (n, K)
    if (pass == 0) base = workspace.reserve(mem, used);
  }
  // The integer inputs of the ops, built on the host, used from the backend's memory.
  Mirrored<int32_t> labels_r, pos_p, pos_q, u_index, v_index, draw_image, draw_slot, drawn;
  Mirrored<int32_t> visible, prev_index;
  Mirrored<uint8_t> u_learned, v_learned;
  Mirrored<float> drawn_entropy;
  std::vector<int32_t> ints_host;  // the host side of every int array below
  std::vector<uint8_t> flags_host;
  std::vector<float> entropy_host;
  int64_t step_ints = 0;  // ints of the per-step inputs, carved back to back from pos_p on
  {
    int32_t* ints = nullptr;
    for (int pass = 0; pass < 2; pass++) {
      int64_t at = 0;
      auto carve = [&](Mirrored<int32_t>& a, int64_t count) {
        a.host = ints ? ints_host.data() + at : nullptr;
        a.device = ints ? ints + at : nullptr;
        at += count;
      };
      carve(labels_r, R);                                // (R)
      carve(drawn, nb_max);                              // (nb)
      const int64_t step_begin = at;
      carve(pos_p, n_max);                               // (n)
      carve(pos_q, n_max);                               // (n)
      carve(u_index, nb_max);                            // (nb)
      carve(v_index, nb_max);                            // (nb)
      carve(draw_image, nb_max);                         // (nb)
      carve(draw_slot, nb_max);                          // (nb)
      carve(visible, m_max);                             // (m)
      carve(prev_index, int64_t(B) * s_max * s_max);     // (B, s_{k-1}^2)
      step_ints = at - step_begin;
      if (pass == 0) {
        ints = workspace.reserve_ints(mem, at);
        ints_host.resize(at);
      }
    }
    flags_host.resize(2 * nb_max);
    uint8_t* flags = workspace.reserve_flags(mem, 2 * nb_max);
    u_learned = {flags_host.data(), flags};                    // (nb)
    v_learned = {flags_host.data() + nb_max, flags + nb_max};  // (nb)
    entropy_host.resize(nb_max);
    drawn_entropy = {entropy_host.data(), workspace.reserve_floats(mem, nb_max)};  // (nb)
  }

  // The matmul inputs as bf16, written rounded by the ops that make them (modulate, the fused
  // GELUs, the input concat), where the backend can: under mixed precision every matmul rounds
  // its fp32 input to bf16 first anyway, so the same values, without an fp32 copy in between.
  bf16_t *h16 = nullptr, *g16 = nullptr, *lat_g16 = nullptr, *concat16 = nullptr;
  const MixedPrecisionOps* mixed = op.mixed();
  if (model.mixed_precision() && mixed != nullptr && mixed->bf16_activations()) {
    const int64_t at_g = n_max * W, at_lat = at_g + n_max * F, at_concat = at_lat + 2 * nb_max * W;
    bf16_t* halves = workspace.reserve_halves(mem, at_concat + nb_max * 4 * W);
    h16 = halves;                  // (n, W)
    g16 = halves + at_g;           // (n, F)
    lat_g16 = halves + at_lat;     // (2nb, W)
    concat16 = halves + at_concat; // (nb, 4W)
  }

  // Every layer's buffers for the one call sequence (model/slot_run.h): all layers share the
  // step's buffers and update the residual stream x in place; each has its own AdaLN rows. The
  // GELUs run fused (SlotRun::fuse_gelu), so there are no pre-activation buffers (f1, lat_h1).
  std::vector<LayerActivations<Real>> layers(depth);
  for (int l = 0; l < depth; l++) {
    LayerActivations<Real>& Lb = layers[l];
    Lb = LayerActivations<Real>{};
    Lb.x_in = Lb.x_mid = x;
    Lb.xn1 = Lb.xn2 = xn;
    Lb.mean1 = Lb.mean2 = mean;
    Lb.rstd1 = Lb.rstd2 = rstd;
    Lb.h1 = Lb.h2 = h;
    Lb.h1_16 = Lb.h2_16 = h16;
    Lb.qkv = qkv;
    Lb.qr = qr;
    Lb.kr = kr;
    Lb.att = att;
    Lb.ao = ao;
    Lb.g = g;
    Lb.g_16 = g16;
    Lb.f2 = f2;
    Lb.ada = ada + int64_t(l) * R * kLayerAdaChunks * W;  // (R, 6W)
  }
  // Under mixed precision the matmuls read the model's bf16 weight copy (refreshed here, before
  // any step is recorded): half the bytes, and the same products (the bf16 matmuls round fp32
  // weights to bf16 anyway).
  model.params16();
  // The weights hold still for the call: the backend may read repacked copies of them
  // (ModelOps::begin_frozen_weights), kept across calls while the parameters are unchanged.
  const FrozenWeights<Real> frozen(op, model.params_version());

  // Conditioning, once: class embeddings, every layer's AdaLN rows and the head's.
  for (int r = 0; r < R; r++) labels_r.host[r] = r < B ? req.labels[r] : c.classes;
  labels_r.upload(mem, R);
  model.condition(R, labels_r.device, c_emb, c_act, layers, head_ada);

  std::vector<int32_t> grid(int64_t(B) * L, -1);  // (B, L) codes so far, raster per scale

  // A step's ops run through the workspace's recorder where the backend has one (cuda: one
  // CUDA graph per distinct step, replayed on later calls), else as they are. Its key names
  // every pointer and value the step's launches depend on; the per-step index arrays are
  // uploaded before it runs, at the same addresses each time.
  OpRecorder* recorder = workspace.recorder(op);
  auto step_key = [&](int s, int t0, int t1, int k, int sp, float w) {
    std::string key;
    auto put = [&](const void* v, size_t bytes) {
      key.append(static_cast<const char*>(v), bytes);
    };
    // m_max sizes the buffers carved from the workspace, hence every address after the first.
    const int64_t values[] = {B, R, T, W, depth, K, Dl, m_max, t0, t1, k, sp, s == 0,
                              req.sampling.top_k, req.want_entropy};
    const void* pointers[] = {base, std::as_const(model).params(), codebook, labels_r.device, u_learned.device,
                              drawn_entropy.device};
    const float reals[] = {w, req.sampling.temperature, req.sampling.top_p};
    put(values, sizeof values);
    put(pointers, sizeof pointers);
    put(reals, sizeof reals);
    put(&req.sampling.seed, sizeof req.sampling.seed);
    return key;
  };

  SampleResult out;
  out.codes.assign(int64_t(B) * T, -1);
  if (req.want_entropy) out.entropy.assign(int64_t(B) * T, 0.0f);
  if (req.want_step_codes) out.step_codes.assign(int64_t(steps) * B * T, -1);
  if (req.want_logits) out.logits.assign(int64_t(B) * T * K, 0.0f);

  for (int s = 0; s < steps; s++) {
    const int blk = s + 1, k = req.block_scale[blk], side = c.scales[k];
    const int t0 = s == 0 ? 0 : req.block_start[blk], t1 = req.block_end[blk], m = t1 - t0;
    const int64_t nb = int64_t(B) * m;  // the conditional rows; R * m rows run

    // A scale's first block upsamples the previous scale's latents (u of every slot).
    const int sp = k > 0 && req.block_scale[blk - 1] != k ? c.scales[k - 1] : 0;
    if (sp > 0) {
      for (int i = 0; i < B; i++) {
        for (int p = 0; p < sp * sp; p++) {
          prev_index.host[int64_t(i) * sp * sp + p] = grid[i * L + offset[k - 1] + p];
        }
      }
    }

    // Inputs of the block's slots (Eq. 1), for the B images; the null-class rows share them.
    for (int i = 0; i < B; i++) {
      for (int j = 0; j < m; j++) {
        const int t = t0 + j;
        const int64_t row = int64_t(i) * m + j;
        draw_image.host[row] = req.image_index[i];
        draw_slot.host[row] = t;
        if (t == 0) {  // the class token: its input row is replaced by the class embedding
          pos_p.host[row] = pos_q.host[row] = 0;
          u_learned.host[row] = v_learned.host[row] = 1;
          u_index.host[row] = v_index.host[row] = 0;
          continue;
        }
        const int p = pos_of(i, t), q = prev_pos_of(i, t);
        CB_CHECK(p >= 0 && p < side * side && q < side * side,
                 "sample: posOf/prevPosOf of slot " + std::to_string(t) + " outside the scale");
        pos_p.host[row] = int32_t(2 + offset[k] + p);
        u_learned.host[row] = k == 0;
        u_index.host[row] = k == 0 ? 0 : int32_t(int64_t(i) * side * side + p);
        if (q < 0) {
          v_learned.host[row] = 1;
          v_index.host[row] = 0;
          pos_q.host[row] = 1;
        } else {
          const int32_t code = grid[i * L + offset[k] + q];
          CB_CHECK(code >= 0, "sample: slot " + std::to_string(t) +
                                  " is fed a position its previous block did not sample");
          v_learned.host[row] = 0;
          v_index.host[row] = code;
          pos_q.host[row] = int32_t(2 + offset[k] + q);
        }
      }
    }
    if (guided) {  // the null-class rows have the same positions
      std::copy(pos_p.host, pos_p.host + nb, pos_p.host + nb);
      std::copy(pos_q.host, pos_q.host + nb, pos_q.host + nb);
    }
    // Slot t sees every slot before its block and its own block: [0, t1); the class token
    // sees only itself.
    for (int j = 0; j < m; j++) visible.host[j] = t0 + j == 0 ? 1 : t1;
    // The step's inputs in two copies (each call costs more than its bytes at small batch):
    // the int arrays pos_p through prev_index, and both flag arrays; parts past this step's
    // counts carry values no op reads.
    pos_p.upload(mem, step_ints);
    u_learned.upload(mem, nb_max + nb);
    const float w = s < req.guidance_start ? 0.0f : req.guidance;

    // The step's ops: nothing but op calls (op_recorder.h). The u latents come from the
    // previous scale upsampled (or, at the first scale, any row: u_start replaces them), the v
    // latents from the codebook; then the model's one call sequence over the block's slots.
    SlotRun<Real> run;
    run.rows = R;
    run.input_rows = B;
    run.t0 = t0;
    run.m = m;
    run.pos_p = pos_p.device;
    run.pos_q = pos_q.device;
    run.c_emb = c_emb;
    run.in.lat_in = lat_in;
    run.in.u_learned = u_learned.device;
    run.in.v_learned = v_learned.device;
    run.in.lat_g = lat_g;
    run.in.lat_g_16 = lat_g16;
    run.in.concat_16 = concat16;
    run.in.lat_out = lat_out;
    run.in.pe_p = pe_p;
    run.in.pe_q = pe_q;
    run.in.concat = concat;
    run.layers = &layers;
    run.x_final = x;
    run.head_ada = head_ada;
    run.xnf = xn;
    run.meanf = mean;
    run.rstdf = rstd;
    run.hf = h;
    run.hf_16 = h16;
    run.logits = logits;
    run.visible_end = visible.device;
    run.cache = KvCache<Real>{k_cache, v_cache, T};
    run.fuse_gelu = true;
    auto step_ops = [&] {
      if (sp > 0) model.upsample_codes(B, sp, side, prev_index.device, prev_lat, up_lat);
      model.gather_latents(nb, k == 0 ? codebook : up_lat, u_index.device, v_index.device,
                           lat_in);
      model.run_slots(run);

      // Draw every slot of the block (the class token's row is drawn too and ignored).
      op.sample_tokens(nb, K, logits, guided ? logits + nb * K : nullptr, w, req.sampling,
                       draw_image.device, draw_slot.device, drawn.device,
                       req.want_entropy ? drawn_entropy.device : nullptr);
    };
    if (recorder != nullptr) {
      recorder->run(step_key(s, t0, t1, k, sp, w), step_ops);
    } else {
      step_ops();
    }
    out.forward_passes++;
    drawn.download(mem, nb);
    if (req.want_entropy) drawn_entropy.download(mem, nb);
    std::vector<Real> block_logits;  // (nb, K) the conditional logits, when asked for
    if (req.want_logits) {
      block_logits.resize(size_t(nb) * K);
      mem.download(block_logits.data(), logits, block_logits.size() * sizeof(Real));
    }
    for (int i = 0; i < B; i++) {
      for (int j = 0; j < m; j++) {
        const int t = t0 + j;
        if (t == 0) continue;
        const int64_t row = int64_t(i) * m + j, at = int64_t(i) * T + t;
        if (drawn.host[row] == kNonFiniteLogits) {
          CB_FAIL("the model's logits are not finite (NaN or Inf) at sampling step " +
                  std::to_string(s + 1) + " of " + std::to_string(steps) +
                  ": its weights are damaged or too large (is the checkpoint a trained model?)");
        }
        grid[i * L + offset[k] + pos_of(i, t)] = drawn.host[row];
        out.codes[at] = drawn.host[row];
        if (req.want_entropy) out.entropy[at] = drawn_entropy.host[row];
        if (req.want_logits) {
          std::transform(block_logits.begin() + row * K, block_logits.begin() + (row + 1) * K,
                         out.logits.begin() + at * K, [](Real v) { return float(v); });
        }
      }
    }
    if (req.want_step_codes) {
      std::copy(out.codes.begin(), out.codes.end(),
                out.step_codes.begin() + int64_t(s) * B * T);
    }
    if (on_step) on_step(s, steps);
  }
  return out;
}

template class SampleWorkspace<float>;
template class SampleWorkspace<double>;
template SampleResult sample_images<float>(Model<float>&, const SampleRequest&,
                                           SampleWorkspace<float>&, const StepCallback&);
template SampleResult sample_images<double>(Model<double>&, const SampleRequest&,
                                            SampleWorkspace<double>&, const StepCallback&);

}  // namespace cb
