// GEMMs through oneDNN (Debian's libdnnl-dev 2.6, OpenMP runtime): C (m, n) = alpha op(A) op(B)
// + beta C + bias, row-major, A and B both float or both bf16 (mixed_ops.h), C and bias float,
// fp32 accumulation. Compiled when CMake found oneDNN (onednn_gemm.cc); otherwise
// onednn_absent.cc, where onednn_compiled() is false and the others throw.
//
// onednn_matmul keeps one matmul primitive per (type, transposes, sizes, strides, alpha, beta,
// bias or not, threads) in a process-wide cache, so a shape pays primitive creation (about a
// millisecond) once; a call then only wraps the pointers. Dense operands get oneDNN's brgemm
// kernels, strided ones (ld > width) its JIT gemm.
//
// Threads: oneDNN itself always runs on the calling thread (OpenMP's count is 1 there: libgomp's
// spinning idle threads cost far more than they gave on a shared machine). A product of more
// than ~4M multiply-adds is split into cpu_threads() blocks of C's columns (or rows, if it has
// more rows), one parallel_for range each, unless it is called from inside a range already.
// The blocks depend only on the shape and the thread count, so the sums do too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace cb {

enum class GemmType { f32, bf16 };
// What is applied to C after the product and the bias, in the same pass over C (a oneDNN
// post-op): nothing, or GELU's tanh approximation (model_ops.h's gelu).
enum class GemmEpilogue { none, gelu_tanh };

bool onednn_compiled();
// The instruction set oneDNN's kernels use here, e.g. "avx512_core_bf16" ("" without oneDNN).
std::string onednn_isa();
// Whether that includes AVX-512 (avx512_core or above).
bool onednn_has_avx512();
// "oneDNN 2.6.3 (omp)" ("" without oneDNN).
std::string onednn_version();

void onednn_matmul(GemmType type, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   float alpha, const void* a, int64_t lda, const void* b, int64_t ldb,
                   float beta, float* c, int64_t ldc, const float* bias,
                   GemmEpilogue epilogue = GemmEpilogue::none);

// dnnl_sgemm, oneDNN's BLAS-like sgemm (no primitive; same threads as above).
void onednn_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc);

// A linear layer's weights w (n, k) (row-major, (out, in)) repacked in the blocked layout that
// oneDNN's AVX-512 matmul reads (64 columns of w^T outermost), for many products with the
// same weights (the sampler's steps). A product with plain weights repacks them on each call,
// and for the thin products of sampling that cost more than the arithmetic (single thread,
// S shapes, plain vs packed: fp32 M=2 170 vs 45 us, M=32 563 vs 393 us; bf16 M=2 77 vs 27 us,
// M=128 1026 vs 698 us; measured with oneDNN 2.6 on this machine).
class OnednnPackedWeights {
 public:
  ~OnednnPackedWeights();
  OnednnPackedWeights(const OnednnPackedWeights&) = delete;
  OnednnPackedWeights& operator=(const OnednnPackedWeights&) = delete;
  GemmType type() const { return type_; }
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  const void* plain() const { return plain_; }  // the weights as given
  // The packed columns [begin, n) of w^T (begin a multiple of 64).
  void* columns(int64_t begin) const {
    return static_cast<char*>(data_) + size_t(begin / 64) * block_bytes_;
  }

 private:
  friend std::unique_ptr<OnednnPackedWeights> onednn_pack_weights(GemmType, int64_t, int64_t,
                                                                   const void*);
  friend void onednn_repack_weights(OnednnPackedWeights&, const void*);
  OnednnPackedWeights(GemmType type, int64_t n, int64_t k, const void* plain, void* data,
                      size_t block_bytes)
      : type_(type), n_(n), k_(k), plain_(plain), data_(data), block_bytes_(block_bytes) {}
  GemmType type_;
  int64_t n_, k_;
  const void* plain_;
  void* data_;
  size_t block_bytes_;  // one block of 64 columns
};

// w packed (a copy: w may change afterwards without it); null where oneDNN's matmul would not
// read this layout here (no AVX-512, another version), or for an empty w.
std::unique_ptr<OnednnPackedWeights> onednn_pack_weights(GemmType type, int64_t n, int64_t k,
                                                         const void* w);

// Packs w (of packed's type and shape) into packed's buffer again: after w was written.
void onednn_repack_weights(OnednnPackedWeights& packed, const void* w);

// c (m, n) = a (m, k) w^T + bias (n, may be null), then the epilogue; a and c dense row-major
// (a of w's type; c float, or bf16 for c_type bf16: the fp32 result rounded to nearest even).
// The same pieces and threads as onednn_matmul.
void onednn_linear_packed(const OnednnPackedWeights& w, int64_t m, const void* a, void* c,
                          const float* bias, GemmEpilogue epilogue = GemmEpilogue::none,
                          GemmType c_type = GemmType::f32);

// Primitives in onednn_matmul's cache (for tests and benchmarks).
size_t onednn_cached_primitives();

}  // namespace cb
