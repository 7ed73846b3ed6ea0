// WMMA for the CUDA emulation (CUDA's mma.h, nvcuda::wmma) with the documented semantics:
// matrix_a is M x K, matrix_b K x N, the accumulator M x N; a row_major operand has element
// (r, c) at p[r * ldm + c], a col_major one at p[c * ldm + r]; ldm is in elements. The mapping
// of elements to lanes is opaque in CUDA; here every lane holds the whole tile (x[r * cols + c]),
// so a wrong layout or ldm gives wrong products, as on the GPU.
//
// load_matrix_sync, store_matrix_sync and mma_sync are warp-collective: each is one rendezvous
// of the warp's 32 lanes (thread_context.h), whose last lane does the work once for all of
// them. As on the GPU, the pointer and ldm must be the same in every lane, the pointer 32-byte
// aligned and ldm a multiple of 16 bytes; otherwise the kernel fails. mma_sync multiplies the
// rounded operands exactly and accumulates in fp32, in k order.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "bf16.h"
#include "thread_context.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K>
struct fragment_shape;
template <int M, int N, int K>
struct fragment_shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct fragment_shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct fragment_shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
  static_assert((M == 16 && N == 16 && K == 16) || (M == 32 && N == 8 && K == 16) ||
                    (M == 8 && N == 32 && K == 16),
                "the emulation has the 16-bit shapes m16n16k16, m32n8k16 and m8n32k16");
  static_assert(std::is_same<Use, accumulator>::value
                    ? std::is_same<T, float>::value && std::is_void<Layout>::value
                    : std::is_same<T, __nv_bfloat16>::value &&
                          (std::is_same<Layout, row_major>::value ||
                           std::is_same<Layout, col_major>::value),
                "bf16 operand fragments with a layout, float accumulators without one");

 public:
  using element_type = T;
  static constexpr int rows = fragment_shape<Use, M, N, K>::rows;
  static constexpr int cols = fragment_shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  T x[num_elements];  // element (r, c) at x[r * cols + c], in every lane
};

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const T& v) {
  for (int i = 0; i < f.num_elements; i++) f.x[i] = v;
}
template <typename Use, int M, int N, int K, typename T, typename Layout, typename V,
          typename = std::enable_if_t<!std::is_same<T, V>::value>>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
  fill_fragment(f, static_cast<T>(v));
}

}  // namespace wmma
}  // namespace nvcuda

namespace cb_emu {
namespace wmma_detail {

using namespace nvcuda::wmma;

// One lane's operands of a load or store; the fragment is the lane's own.
struct TileArg {
  void* fragment;
  const void* memory;
  unsigned ldm;
  bool col_major;
};

// Checks what every lane passed against the first lane's, and the alignment rules.
inline const TileArg& uniform_tile(void* const* args, unsigned mask, size_t element_bytes,
                                   const char* op) {
  const int first = __builtin_ctz(mask);
  const TileArg& a = *static_cast<const TileArg*>(args[first]);
  for (int lane = first + 1; lane < 32; lane++) {
    if (!(mask >> lane & 1u)) continue;
    const TileArg& b = *static_cast<const TileArg*>(args[lane]);
    if (b.memory != a.memory || b.ldm != a.ldm || b.col_major != a.col_major) {
      trap(std::string(op) + ": lanes " + std::to_string(first) + " and " +
           std::to_string(lane) + " pass different pointers, ldm or layouts (they must be "
           "the same in the whole warp)");
    }
  }
  if (reinterpret_cast<uintptr_t>(a.memory) % 32 != 0) {
    trap(std::string(op) + ": the pointer is not 32-byte aligned");
  }
  if ((a.ldm * element_bytes) % 16 != 0) {
    trap(std::string(op) + ": ldm " + std::to_string(a.ldm) + " is not a multiple of 16 bytes");
  }
  if (mask != 0xffffffffu) trap(std::string(op) + ": called by part of a warp");
  return a;
}

template <typename Frag>
void complete_load(void* const* args, unsigned mask) {
  using T = typename Frag::element_type;
  const TileArg& a = uniform_tile(args, mask, sizeof(T), "wmma::load_matrix_sync");
  const T* p = static_cast<const T*>(a.memory);
  Frag& f = *static_cast<Frag*>(a.fragment);
  for (int r = 0; r < Frag::rows; r++) {
    for (int c = 0; c < Frag::cols; c++) {
      f.x[r * Frag::cols + c] = a.col_major ? p[(size_t)c * a.ldm + r] : p[(size_t)r * a.ldm + c];
    }
  }
  for (int lane = 0; lane < 32; lane++) {
    Frag& g = *static_cast<Frag*>(static_cast<const TileArg*>(args[lane])->fragment);
    if (&g != &f) g = f;
  }
}

template <typename Frag>
void complete_store(void* const* args, unsigned mask) {
  using T = typename Frag::element_type;
  const TileArg& a = uniform_tile(args, mask, sizeof(T), "wmma::store_matrix_sync");
  T* p = static_cast<T*>(const_cast<void*>(a.memory));
  const Frag& f = *static_cast<const Frag*>(a.fragment);
  for (int r = 0; r < Frag::rows; r++) {
    for (int c = 0; c < Frag::cols; c++) {
      (a.col_major ? p[(size_t)c * a.ldm + r] : p[(size_t)r * a.ldm + c]) =
          f.x[r * Frag::cols + c];
    }
  }
}

// One lane's fragments of an mma_sync.
struct MmaArg {
  void* d;
  const void* a;
  const void* b;
  const void* c;
};

template <typename D, typename A, typename B, typename C>
void complete_mma(void* const* args, unsigned mask) {
  if (mask != 0xffffffffu) trap("wmma::mma_sync: called by part of a warp");
  const MmaArg& m = *static_cast<const MmaArg*>(args[0]);
  const A& a = *static_cast<const A*>(m.a);
  const B& b = *static_cast<const B*>(m.b);
  const C& c = *static_cast<const C*>(m.c);
  constexpr int M = A::rows, K = A::cols, N = B::cols;
  D result;
  for (int i = 0; i < M; i++) {
    for (int j = 0; j < N; j++) {
      float acc = c.x[i * N + j];
      for (int k = 0; k < K; k++) {
        acc += static_cast<float>(a.x[i * K + k]) * static_cast<float>(b.x[k * N + j]);
      }
      result.x[i * N + j] = acc;
    }
  }
  for (int lane = 0; lane < 32; lane++) *static_cast<D*>(static_cast<const MmaArg*>(args[lane])->d) = result;
}

}  // namespace wmma_detail
}  // namespace cb_emu

namespace nvcuda {
namespace wmma {

template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
  static_assert(!std::is_void<Layout>::value, "an accumulator load needs a layout_t");
  using Frag = fragment<Use, M, N, K, T, Layout>;
  ::cb_emu::wmma_detail::TileArg arg{&f, p, ldm, std::is_same<Layout, col_major>::value};
  ::cb_emu::warp_collective(0xffffffffu, &::cb_emu::wmma_detail::complete_load<Frag>, &arg);
}

template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm,
                      layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, T>;
  ::cb_emu::wmma_detail::TileArg arg{&f, p, ldm, layout == mem_col_major};
  ::cb_emu::warp_collective(0xffffffffu, &::cb_emu::wmma_detail::complete_load<Frag>, &arg);
}

template <int M, int N, int K, typename T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                       layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, T>;
  ::cb_emu::wmma_detail::TileArg arg{const_cast<Frag*>(&f), p, ldm, layout == mem_col_major};
  ::cb_emu::warp_collective(0xffffffffu, &::cb_emu::wmma_detail::complete_store<Frag>, &arg);
}

template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b,
              const fragment<accumulator, M, N, K, TC>& c) {
  using D = fragment<accumulator, M, N, K, TC>;
  using A = fragment<matrix_a, M, N, K, TA, LA>;
  using B = fragment<matrix_b, M, N, K, TB, LB>;
  ::cb_emu::wmma_detail::MmaArg arg{&d, &a, &b, &c};
  ::cb_emu::warp_collective(0xffffffffu, &::cb_emu::wmma_detail::complete_mma<D, A, B, D>,
                            &arg);
}

}  // namespace wmma
}  // namespace nvcuda
