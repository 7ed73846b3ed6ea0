// onednn_gemm.h through oneDNN's C++ API (compiled only when CMake found oneDNN).
#include "onednn_gemm.h"

#include <dnnl.hpp>
#include <dnnl_debug.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
#include <omp.h>
#endif

#include "../error.h"
#include "parallel.h"

namespace cb {
namespace {

using dnnl::memory;

// Never destroyed: a worker thread may still run a GEMM while exit() runs the destructors.
dnnl::engine& cpu_engine() {
  static auto* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

// oneDNN runs every call on the calling thread alone: OpenMP's count is set to 1 for it. (With
// OpenMP teams, libgomp's idle threads spin between regions; on a machine shared with other
// work that cost up to 9 times the time of a small model's training steps, measured.) The
// engine's threads come from splitting a product over parallel_for ranges (split_gemm below).
void single_thread_here() {
#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
  thread_local bool set = false;
  if (!set) {
    omp_set_num_threads(1);
    set = true;
  }
#endif
}

// Below this many multiply-adds a product runs on one thread. A hand-off to the pool's polling
// worker costs a few microseconds; the thin products of batch-1 sampling (2-8 rows) are bound
// by reading their weights, which two cores do faster than one.
constexpr double kSplitMacs = 0.5e6;
constexpr int64_t kSplitAlign = 64;  // rows or columns per part: a multiple of this

// From this many multiply-adds a product is cut into kPiecesPerThread pieces a thread, which
// the threads take in turn: with one piece each, a thread the OS delayed, or a piece slower
// than its twin, left the others waiting (measured: ~5% of a training step).
constexpr double kPieceMacs = 64.0e6;
constexpr int kPiecesPerThread = 3;

// How a product (m, n, k) is cut: into `pieces` blocks of C's columns (or rows, when C has
// more rows than columns) of a multiple of kSplitAlign, for `threads` threads.
struct Split {
  bool by_columns;
  int64_t extent, blocks;  // columns (or rows) and their kSplitAlign blocks
  int threads, pieces;
  // Piece p: columns (or rows) [begin(p), begin(p + 1)).
  int64_t begin(int p) const { return std::min(extent, blocks * p / pieces * kSplitAlign); }
};

Split split_for(int64_t m, int64_t n, int64_t k, bool rows_first = false) {
  Split s;
  s.threads = in_parallel_for() ? 1 : cpu_threads();
  // The pieces follow the thread count the products are cut for, which may exceed the threads
  // that run them (cpu_split_threads, parallel.h); in a parallel_for range one piece.
  const int cut_for = in_parallel_for() ? 1 : cpu_split_threads();
  s.by_columns = !rows_first && n >= m;
  s.extent = s.by_columns ? n : m;
  s.blocks = (s.extent + kSplitAlign - 1) / kSplitAlign;
  const double macs = double(m) * double(n) * double(k);
  const int64_t wanted = macs < kSplitMacs    ? 1
                         : macs < kPieceMacs ? cut_for
                                             : int64_t(cut_for) * kPiecesPerThread;
  s.pieces = (int)std::min<int64_t>(wanted, s.blocks);
  return s;
}

// Runs C = alpha op(A) op(B) + beta C + bias as independent products over column blocks of C
// (or row blocks, when C has more rows than columns), each through `one`, taken by the
// parallel_for threads in turn; with one piece, or on a small product, `one` runs the whole.
// The pieces depend only on the shape and cpu_split_threads(), so the sums do too (which thread runs
// a piece does not change it). elem: bytes per A/B value.
// Calls piece(begin, end) for each piece of `split` (its columns or rows [begin, end)), the
// pieces taken by the parallel_for threads in turn; the whole extent at once for one piece.
template <typename Piece>
void run_pieces(const Split& split, Piece piece) {
  if (split.pieces <= 1) return piece(int64_t(0), split.extent);
  std::atomic<int> next{0};
  parallel_for(std::min(split.threads, split.pieces), 1, [&](int64_t, int64_t) {
    for (int p; (p = next.fetch_add(1, std::memory_order_relaxed)) < split.pieces;) {
      const int64_t begin = split.begin(p), end = split.begin(p + 1);
      if (end > begin) piece(begin, end);
    }
  });
}

template <typename One>
void split_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda,
                const void* b, int64_t ldb, float* c, int64_t ldc, const float* bias,
                size_t elem, One one) {
  const Split split = split_for(m, n, k);
  if (split.pieces <= 1) return one(m, n, a, b, c, bias);
  const char* pa = static_cast<const char*>(a);
  const char* pb = static_cast<const char*>(b);
  run_pieces(split, [&](int64_t begin, int64_t end) {
    if (split.by_columns) {  // columns [begin, end) of op(B) and C
      one(m, end - begin, a, pb + elem * size_t(tb ? begin * ldb : begin), c + begin,
          bias != nullptr ? bias + begin : nullptr);
    } else {  // rows [begin, end) of op(A) and C
      one(end - begin, n, pa + elem * size_t(ta ? begin : begin * lda), b, c + begin * ldc,
          bias);
    }
  });
}

[[noreturn]] void fail(const char* what, const dnnl::error& e) {
  CB_FAIL(std::string("oneDNN ") + what + " failed: " + e.what() + " (status " +
          std::to_string(int(e.status)) + ")");
}

// ---- the primitive cache -------------------------------------------------------------------

struct Key {
  int type, epilogue;
  int c_type;  // GemmType of C: f32, or bf16 (packed weights only)
  bool ta, tb, bias;
  bool packed;  // B in packed_tag(type) (onednn_pack_weights), not strided
  int64_t m, n, k, lda, ldb, ldc;
  uint32_t alpha_bits, beta_bits;
  int threads;
  bool operator==(const Key& o) const {
    return type == o.type && epilogue == o.epilogue && c_type == o.c_type && ta == o.ta &&
           tb == o.tb &&
           bias == o.bias && packed == o.packed && m == o.m &&
           n == o.n && k == o.k && lda == o.lda && ldb == o.ldb && ldc == o.ldc &&
           alpha_bits == o.alpha_bits && beta_bits == o.beta_bits && threads == o.threads;
  }
};

struct KeyHash {
  size_t operator()(const Key& key) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    mix(uint64_t(key.type) | uint64_t(key.ta) << 8 | uint64_t(key.tb) << 9 |
        uint64_t(key.bias) << 10 | uint64_t(key.packed) << 11 | uint64_t(key.epilogue) << 12 |
        uint64_t(key.c_type) << 16);
    for (int64_t v : {key.m, key.n, key.k, key.lda, key.ldb, key.ldc}) mix(uint64_t(v));
    mix(uint64_t(key.alpha_bits) << 32 | key.beta_bits);
    mix(uint64_t(key.threads));
    return size_t(h);
  }
};

struct Entry {
  dnnl::matmul primitive;
  memory::desc a, b, c, bias;
  bool has_bias = false;
  size_t scratch_bytes = 0;
  bool reference = false;  // oneDNN found only its reference implementation for it
};

// The blocked layout of packed weights: 64 columns of op(B) outermost, then 16 rows (pairs of
// rows for bf16), the layout oneDNN 2.6's brgemm matmul picks on AVX-512 for every shape the
// models use (format_tag::any, checked at pack time). Columns outermost: the block of
// columns [64 i, 64 j) is itself a packed matrix, which the threads' pieces use.
memory::format_tag packed_tag(GemmType type) {
  return type == GemmType::bf16 ? memory::format_tag::BA16a64b2a : memory::format_tag::BA16a64b;
}
constexpr int64_t kPackedColumns = 64;
constexpr int64_t kPackedRowSplit = 256;

// Enough for every shape a model's training and sampling use (a few hundred); past it the cache
// starts over rather than grow without bound.
constexpr size_t kMaxCachedPrimitives = 4096;

struct Cache {
  std::mutex mutex;
  std::unordered_map<Key, std::shared_ptr<const Entry>, KeyHash> entries;
};

Cache& cache() {
  static auto* c = new Cache;  // never destroyed, as cpu_engine()
  return *c;
}

uint32_t bits_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

std::shared_ptr<const Entry> create(const Key& key, float alpha, float beta) {
  const memory::data_type in_type =
      key.type == int(GemmType::bf16) ? memory::data_type::bf16 : memory::data_type::f32;
  auto e = std::make_shared<Entry>();
  // op(A) (m, k) and op(B) (k, n) as strided views of the stored matrices.
  e->a = memory::desc({key.m, key.k}, in_type,
                      key.ta ? memory::dims{1, key.lda} : memory::dims{key.lda, 1});
  e->b = key.packed ? memory::desc({key.k, key.n}, in_type, packed_tag(GemmType(key.type)))
                   : memory::desc({key.k, key.n}, in_type,
                                  key.tb ? memory::dims{1, key.ldb} : memory::dims{key.ldb, 1});
  const memory::data_type c_type =
      key.c_type == int(GemmType::bf16) ? memory::data_type::bf16 : memory::data_type::f32;
  e->c = memory::desc({key.m, key.n}, c_type, memory::dims{key.ldc, 1});
  e->bias = memory::desc({1, key.n}, memory::data_type::f32, memory::dims{key.n, 1});
  e->has_bias = key.bias;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per-thread scratch, see below
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  dnnl::post_ops ops;
  if (beta != 0.0f) ops.append_sum(beta);  // C = alpha A B + beta C
  if (key.epilogue == int(GemmEpilogue::gelu_tanh)) {
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_tanh, 0.0f, 0.0f);
  }
  if (ops.len() > 0) attr.set_post_ops(ops);
  const dnnl::matmul::desc desc = key.bias ? dnnl::matmul::desc(e->a, e->b, e->bias, e->c)
                                           : dnnl::matmul::desc(e->a, e->b, e->c);
  const dnnl::matmul::primitive_desc pd(desc, attr, cpu_engine());
  e->scratch_bytes = pd.scratchpad_desc().get_size();
  e->reference = std::strncmp(pd.impl_info_str(), "ref", 3) == 0;
  e->primitive = dnnl::matmul(pd);
  return e;
}

std::shared_ptr<const Entry> lookup(const Key& key, float alpha, float beta) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.entries.find(key);
    if (it != c.entries.end()) return it->second;
  }
  std::shared_ptr<const Entry> e = create(key, alpha, beta);  // slow: outside the lock
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.entries.size() >= kMaxCachedPrimitives) c.entries.clear();
  return c.entries.emplace(key, std::move(e)).first->second;  // the first one made wins
}

// This thread's scratchpad (oneDNN's own would be shared by every thread), 64-byte aligned.
void* thread_scratch(size_t bytes) {
  struct Buffer {
    void* data = nullptr;
    size_t size = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffer;
  if (bytes > buffer.size) {
    std::free(buffer.data);
    const size_t size = (bytes + 63) / 64 * 64;
    buffer.data = std::aligned_alloc(64, size);
    CB_CHECK(buffer.data != nullptr, "oneDNN scratchpad: out of memory");
    buffer.size = size;
  }
  return buffer.data;
}

// A primitive's memory objects and argument map on this thread, made once and then only
// pointed at each call's arrays (set_data_handle): creating them per call cost several mallocs
// under one lock that the engine's threads took turns on (measured in training, ~2% of a step).
struct Bound {
  std::shared_ptr<const Entry> entry;  // keeps the entry (and so its address) alive
  memory a, b, c, bias, scratch;
  std::unordered_map<int, memory> args;
};

Bound& bound_for(const std::shared_ptr<const Entry>& e) {
  thread_local std::unordered_map<const Entry*, Bound> bound;
  auto it = bound.find(e.get());
  if (it != bound.end()) return it->second;
  if (bound.size() >= kMaxCachedPrimitives) bound.clear();
  dnnl::engine& engine = cpu_engine();
  Bound nb;
  nb.entry = e;
  nb.a = memory(e->a, engine, DNNL_MEMORY_NONE);
  nb.b = memory(e->b, engine, DNNL_MEMORY_NONE);
  nb.c = memory(e->c, engine, DNNL_MEMORY_NONE);
  nb.scratch = memory(memory::desc({int64_t(e->scratch_bytes)}, memory::data_type::u8,
                                   memory::dims{1}),
                      engine, DNNL_MEMORY_NONE);
  nb.args = {{DNNL_ARG_SRC, nb.a}, {DNNL_ARG_WEIGHTS, nb.b}, {DNNL_ARG_DST, nb.c},
             {DNNL_ARG_SCRATCHPAD, nb.scratch}};
  if (e->has_bias) {
    nb.bias = memory(e->bias, engine, DNNL_MEMORY_NONE);
    nb.args.emplace(DNNL_ARG_BIAS, nb.bias);
  }
  return bound.emplace(e.get(), std::move(nb)).first->second;
}

}  // namespace

bool onednn_compiled() { return true; }

std::string onednn_isa() { return dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()); }

bool onednn_has_avx512() {
  const unsigned isa = unsigned(dnnl_get_effective_cpu_isa());
  return (isa & unsigned(dnnl_cpu_isa_avx512_core)) == unsigned(dnnl_cpu_isa_avx512_core);
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  std::string runtime = v->cpu_runtime == DNNL_RUNTIME_OMP ? "omp"
                        : v->cpu_runtime == DNNL_RUNTIME_SEQ ? "sequential"
                                                             : "other";
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " (" + runtime + ")";
}

namespace {

// Runs entry e's primitive on this thread over the given arrays.
void execute(const std::shared_ptr<const Entry>& e, const void* a, const void* b, void* c,
             const float* bias) {
  Bound& bound = bound_for(e);
  bound.a.set_data_handle(const_cast<void*>(a));
  bound.b.set_data_handle(const_cast<void*>(b));
  bound.c.set_data_handle(c);
  bound.scratch.set_data_handle(thread_scratch(e->scratch_bytes));
  if (bias != nullptr) bound.bias.set_data_handle(const_cast<float*>(bias));
  e->primitive.execute(thread_stream(), bound.args);
  thread_stream().wait();
}

// C of type c_type (bf16: beta 0, k >= 1 only).
void matmul_one(GemmType type, GemmEpilogue epilogue, bool trans_a, bool trans_b, int64_t m,
                int64_t n, int64_t k, float alpha, const void* a, int64_t lda, const void* b,
                int64_t ldb, float beta, void* c, int64_t ldc, const float* bias,
                GemmType c_type = GemmType::f32) {
  CB_CHECK(k > 0 || epilogue == GemmEpilogue::none, "onednn_matmul: an epilogue needs k >= 1");
  CB_CHECK(c_type == GemmType::f32 || (k > 0 && beta == 0.0f),
           "onednn_matmul: a bf16 C needs k >= 1 and beta 0");
  if (k <= 0) {  // oneDNN wants k >= 1; C = beta C + bias
    for (int64_t i = 0; i < m; i++) {
      for (int64_t j = 0; j < n; j++) {
        float& v = static_cast<float*>(c)[i * ldc + j];
        v = (beta == 0.0f ? 0.0f : beta * v) + (bias != nullptr ? bias[j] : 0.0f);
      }
    }
    return;
  }
  single_thread_here();
  const Key key{int(type), int(epilogue), int(c_type), trans_a, trans_b, bias != nullptr,
                false, m, n, k, lda, ldb, ldc, bits_of(alpha), bits_of(beta), 1};
  try {
    execute(lookup(key, alpha, beta), a, b, c, bias);
  } catch (const dnnl::error& err) {
    fail("matmul", err);
  }
}

// c (m, n) = a (m, k) w^T + bias for the columns [begin, begin + n) of packed weights w, c dense
// (row stride n); false where oneDNN has only its reference kernel for the shape (then nothing
// was computed).
bool packed_one(const OnednnPackedWeights& w, GemmEpilogue epilogue, GemmType c_type,
                int64_t m, int64_t n, int64_t begin, const void* a, int64_t lda, void* c,
                const float* bias) {
  single_thread_here();
  const Key key{int(w.type()), int(epilogue), int(c_type), false, false, bias != nullptr, true,
                m, n, w.k(), lda, 0, n, bits_of(1.0f), bits_of(0.0f), 1};
  try {
    const std::shared_ptr<const Entry> e = lookup(key, 1.0f, 0.0f);
    if (e->reference) return false;
    execute(e, a, w.columns(begin), c, bias);
  } catch (const dnnl::error& err) {
    fail("matmul (packed weights)", err);
  }
  return true;
}

// A thread's dense (rows, cols) block for a piece of C's columns: oneDNN's kernels for packed
// weights write only dense outputs (a strided one gets the reference kernel).
void* thread_block(int64_t bytes) {
  thread_local std::vector<float> block;
  if (int64_t(block.size() * sizeof(float)) < bytes) block.resize((bytes + 3) / 4);
  return block.data();
}

void sgemm_one(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc) {
  if (k <= 0) {  // dnnl_sgemm refuses k = 0 (and lda < 1 with it); C = beta C
    for (int64_t i = 0; i < m; i++) {
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    }
    return;
  }
  single_thread_here();
  const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k,
                                          alpha, a, lda, b, ldb, beta, c, ldc);
  CB_CHECK(status == dnnl_success,
           "oneDNN dnnl_sgemm failed (status " + std::to_string(int(status)) + ")");
}

}  // namespace

void onednn_matmul(GemmType type, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   float alpha, const void* a, int64_t lda, const void* b, int64_t ldb,
                   float beta, float* c, int64_t ldc, const float* bias,
                   GemmEpilogue epilogue) {
  if (m <= 0 || n <= 0) return;
  const size_t elem = type == GemmType::bf16 ? 2 : 4;
  split_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, bias, elem,
             [&](int64_t pm, int64_t pn, const void* pa, const void* pb, float* pc,
                 const float* pbias) {
               matmul_one(type, epilogue, trans_a, trans_b, pm, pn, k, alpha, pa, lda, pb, ldb,
                          beta, pc, ldc, pbias);
             });
}

void onednn_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  split_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, nullptr, sizeof(float),
             [&](int64_t pm, int64_t pn, const void* pa, const void* pb, float* pc,
                 const float*) {
               sgemm_one(trans_a, trans_b, pm, pn, k, alpha, static_cast<const float*>(pa), lda,
                         static_cast<const float*>(pb), ldb, beta, pc, ldc);
             });
}

OnednnPackedWeights::~OnednnPackedWeights() { std::free(data_); }

std::unique_ptr<OnednnPackedWeights> onednn_pack_weights(GemmType type, int64_t n, int64_t k,
                                                         const void* w) {
  if (n <= 0 || k <= 0) return nullptr;
  const memory::data_type t =
      type == GemmType::bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  try {
    const memory::desc packed({k, n}, t, packed_tag(type));
    // The layout brgemm picks for itself on this machine; another (no AVX-512, another
    // oneDNN) leaves the weights as they are.
    const memory::desc a({kPackedColumns, k}, t, memory::format_tag::ab);
    const memory::desc c({kPackedColumns, n}, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc any({k, n}, t, memory::format_tag::any);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, any, c), cpu_engine());
    if (pd.weights_desc() != packed) return nullptr;
    const size_t block = memory::desc({k, kPackedColumns}, t, packed_tag(type)).get_size();
    const int64_t blocks = (n + kPackedColumns - 1) / kPackedColumns;
    if (packed.get_size() != block * size_t(blocks)) return nullptr;  // not column blocks
    void* data = std::aligned_alloc(64, (packed.get_size() + 63) / 64 * 64);
    CB_CHECK(data != nullptr, "packing weights: out of memory");
    std::unique_ptr<OnednnPackedWeights> out(new OnednnPackedWeights(type, n, k, w, data, block));
    onednn_repack_weights(*out, w);
    return out;
  } catch (const dnnl::error& err) {
    fail("packing weights", err);
  }
}

void onednn_repack_weights(OnednnPackedWeights& packed, const void* w) {
  const memory::data_type t =
      packed.type() == GemmType::bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const int64_t n = packed.n(), k = packed.k();
  try {
    // w (n, k) row-major is op(B) = w^T (k, n) with strides (1, k).
    const memory::desc plain({k, n}, t, memory::dims{1, k});
    const memory::desc blocked({k, n}, t, packed_tag(packed.type()));
    memory src(plain, cpu_engine(), const_cast<void*>(w));
    memory dst(blocked, cpu_engine(), packed.columns(0));
    dnnl::stream stream(cpu_engine());
    dnnl::reorder(src, dst).execute(stream, src, dst);
    stream.wait();
    packed.plain_ = w;
  } catch (const dnnl::error& err) {
    fail("packing weights", err);
  }
}

void onednn_linear_packed(const OnednnPackedWeights& w, int64_t m, const void* a, void* c,
                          const float* bias, GemmEpilogue epilogue, GemmType c_type) {
  const int64_t n = w.n(), k = w.k();
  if (m <= 0) return;
  const size_t elem = w.type() == GemmType::bf16 ? 2 : 4;
  const size_t c_elem = c_type == GemmType::bf16 ? 2 : 4;
  const char* pa = static_cast<const char*>(a);
  const char* plain = static_cast<const char*>(w.plain());
  // Columns [begin, end) of rows [r0, r1): into c directly when they are whole rows, else
  // through a dense block; oneDNN's plain kernel where it has none for packed weights.
  auto piece = [&](int64_t r0, int64_t r1, int64_t begin, int64_t end) {
    const int64_t rows = r1 - r0, cols = end - begin;
    const float* pbias = bias != nullptr ? bias + begin : nullptr;
    const void* pa_rows = pa + elem * size_t(r0 * k);
    char* pc = static_cast<char*>(c) + c_elem * size_t(r0 * n + begin);
    char* out = cols == n ? pc : static_cast<char*>(thread_block(rows * cols * c_elem));
    if (!packed_one(w, epilogue, c_type, rows, cols, begin, pa_rows, k, out, pbias)) {
      matmul_one(w.type(), epilogue, false, true, rows, cols, k, 1.0f, pa_rows, k,
                 plain + elem * size_t(begin * k), k, 0.0f, pc, n, pbias, c_type);
      return;
    }
    if (out != pc) {
      for (int64_t i = 0; i < rows; i++) {
        std::memcpy(pc + c_elem * size_t(i * n), out + c_elem * size_t(i * cols),
                    c_elem * size_t(cols));
      }
    }
  };
  // Rows from kPackedRowSplit on: a row piece writes whole rows of c (no copy out of a dense
  // block) and the threads share the packed weights in cache.
  const Split split = split_for(m, n, k, m >= kPackedRowSplit);
  static_assert(kSplitAlign % kPackedColumns == 0, "pieces must start on a column block");
  run_pieces(split, [&](int64_t begin, int64_t end) {
    if (split.by_columns) {
      piece(0, m, begin, end);
    } else {
      piece(begin, end, 0, n);
    }
  });
}

size_t onednn_cached_primitives() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.entries.size();
}

}  // namespace cb
