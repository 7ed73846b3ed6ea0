// CUDA's device language as host C++ for the emulation (the fake <cuda_runtime.h> includes it):
// function qualifiers as no-ops, the built-in variables read from the running fiber's thread,
// __shared__ memory as `static thread_local` (a block's threads are fibers of one OS thread,
// and one OS thread runs one block at a time, so a thread_local is exactly the block's copy),
// barriers and warp intrinsics through the block scheduler, atomics, and the math intrinsics
// the kernels call. Kernel bodies compile unmodified; only `extern __shared__` and the launch
// syntax are rewritten at build time (launch_rewriter.cc).
#pragma once

#include <math.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "thread_context.h"
#include "vector_types.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
#define __constant__

#define threadIdx (::cb_emu::current().thread_idx)
#define blockIdx (::cb_emu::current().block_idx)
#define blockDim (::cb_emu::current().block_dim)
#define gridDim (::cb_emu::current().grid_dim)
constexpr int warpSize = 32;

namespace cb_emu {

// The block's dynamic shared memory as T (what `extern __shared__ T name[]` becomes).
template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_base());
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "warp intrinsics move values of up to 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

template <typename T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

// One lane's part of a shuffle: its value and source (lane, delta or xor mask) in, the value
// it reads out (warp_intrinsics.cc).
struct ShuffleArg {
  uint64_t value;
  int source;
  int width;
  uint64_t result;
};
void complete_shfl(void* const* args, unsigned mask);
void complete_shfl_up(void* const* args, unsigned mask);
void complete_shfl_down(void* const* args, unsigned mask);
void complete_shfl_xor(void* const* args, unsigned mask);

template <typename T>
T shuffle(WarpComplete op, unsigned mask, T var, int source, int width) {
  ShuffleArg arg{to_bits(var), source, width, 0};
  warp_collective(mask, op, &arg);
  return from_bits<T>(arg.result);
}

// One lane's vote: its predicate in, the warp's ballot of the mask's lanes out.
struct VoteArg {
  int predicate;
  unsigned ballot;
};
void complete_vote(void* const* args, unsigned mask);
void complete_syncwarp(void* const* args, unsigned mask);

inline unsigned vote(unsigned mask, int predicate) {
  VoteArg arg{predicate, 0};
  warp_collective(mask, &complete_vote, &arg);
  return arg.ballot;
}

// A compare-and-swap loop for the atomics that hardware has but the compiler builtins lack.
template <typename T, typename Op>
T atomic_update(T* address, Op op) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  static_assert(sizeof(T) == sizeof(Bits), "atomics of 4 or 8 bytes");
  Bits* p = reinterpret_cast<Bits*>(address);
  Bits old = __atomic_load_n(p, __ATOMIC_RELAXED);
  for (;;) {
    const Bits next = to_bits(op(from_bits<T>(old)));
    if (__atomic_compare_exchange_n(p, &old, Bits(next), true, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
      return from_bits<T>(old);
    }
  }
}

}  // namespace cb_emu

// ---- barriers and warp intrinsics -----------------------------------------------------------

inline void __syncthreads() { ::cb_emu::sync_block(::cb_emu::BarrierVote::none, 0); }
inline int __syncthreads_or(int p) { return ::cb_emu::sync_block(::cb_emu::BarrierVote::any, p); }
inline int __syncthreads_and(int p) { return ::cb_emu::sync_block(::cb_emu::BarrierVote::all, p); }
inline int __syncthreads_count(int p) {
  return ::cb_emu::sync_block(::cb_emu::BarrierVote::count, p);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::cb_emu::warp_collective(mask, &::cb_emu::complete_syncwarp, nullptr);
}
inline unsigned __activemask() { return ::cb_emu::active_lanes(); }

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  return ::cb_emu::shuffle(&::cb_emu::complete_shfl, mask, var, src_lane, width);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::cb_emu::shuffle(&::cb_emu::complete_shfl_up, mask, var, (int)delta, width);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::cb_emu::shuffle(&::cb_emu::complete_shfl_down, mask, var, (int)delta, width);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  return ::cb_emu::shuffle(&::cb_emu::complete_shfl_xor, mask, var, lane_mask, width);
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return ::cb_emu::vote(mask, predicate);
}
inline int __any_sync(unsigned mask, int predicate) {
  return ::cb_emu::vote(mask, predicate) != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  return ::cb_emu::vote(mask, predicate) == mask;
}

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
[[noreturn]] inline void __trap() { ::cb_emu::trap("__trap() called"); }

// ---- atomics: real ones, since a kernel's blocks run on several OS threads ------------------

#define CB_EMU_INTEGER_ATOMICS(T)                                                             \
  inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }       \
  inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }       \
  inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }     \
  inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }       \
  inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }         \
  inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }       \
  inline T atomicMin(T* p, T v) {                                                             \
    return ::cb_emu::atomic_update(p, [v](T old) { return old < v ? old : v; });              \
  }                                                                                           \
  inline T atomicMax(T* p, T v) {                                                             \
    return ::cb_emu::atomic_update(p, [v](T old) { return old > v ? old : v; });              \
  }                                                                                           \
  inline T atomicCAS(T* p, T compare, T v) {                                                  \
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);  \
    return compare;                                                                           \
  }
CB_EMU_INTEGER_ATOMICS(int)
CB_EMU_INTEGER_ATOMICS(unsigned int)
CB_EMU_INTEGER_ATOMICS(unsigned long long)
CB_EMU_INTEGER_ATOMICS(long long)
#undef CB_EMU_INTEGER_ATOMICS

inline float atomicAdd(float* p, float v) {
  return ::cb_emu::atomic_update(p, [v](float old) { return old + v; });
}
inline double atomicAdd(double* p, double v) {
  return ::cb_emu::atomic_update(p, [v](double old) { return old + v; });
}
inline float atomicExch(float* p, float v) {
  return ::cb_emu::atomic_update(p, [v](float) { return v; });
}
inline unsigned atomicInc(unsigned* p, unsigned limit) {
  return ::cb_emu::atomic_update(p, [limit](unsigned old) { return old >= limit ? 0u : old + 1; });
}
inline unsigned atomicDec(unsigned* p, unsigned limit) {
  return ::cb_emu::atomic_update(
      p, [limit](unsigned old) { return old == 0 || old > limit ? limit : old - 1; });
}

// ---- min / max: CUDA's overloads in the global namespace ------------------------------------

#define CB_EMU_MIN_MAX(T)                                  \
  inline T min(T a, T b) { return a < b ? a : b; }         \
  inline T max(T a, T b) { return a > b ? a : b; }
CB_EMU_MIN_MAX(int)
CB_EMU_MIN_MAX(unsigned int)
CB_EMU_MIN_MAX(long)
CB_EMU_MIN_MAX(unsigned long)
CB_EMU_MIN_MAX(long long)
CB_EMU_MIN_MAX(unsigned long long)
#undef CB_EMU_MIN_MAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- math intrinsics -------------------------------------------------------------------------
// The explicitly rounded operations are the plain ones: the emulated build does not contract
// a * b + c into an FMA (ISO C++ mode, -ffp-contract=off), so each rounds once, as on the GPU.

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }

// The fast approximations: glibc's <math.h> already declares __expf, __logf, __sinf, __cosf,
// __tanf and __powf (its exact versions, within a few ulps of the GPU's), so they are used as
// they are; the others are computed exactly here.
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }

inline int __float_as_int(float x) { return ::cb_emu::from_bits<int>(::cb_emu::to_bits(x)); }
inline float __int_as_float(int x) { return ::cb_emu::from_bits<float>(::cb_emu::to_bits(x)); }
inline unsigned __float_as_uint(float x) {
  return ::cb_emu::from_bits<unsigned>(::cb_emu::to_bits(x));
}
inline float __uint_as_float(unsigned x) {
  return ::cb_emu::from_bits<float>(::cb_emu::to_bits(x));
}
inline long long __double_as_longlong(double x) {
  return ::cb_emu::from_bits<long long>(::cb_emu::to_bits(x));
}
inline double __longlong_as_double(long long x) {
  return ::cb_emu::from_bits<double>(::cb_emu::to_bits(x));
}
inline int __float2int_rn(float x) { return (int)std::nearbyint(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline float __int2float_rn(int x) { return (float)x; }

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}

// The read-only data cache load is a plain load.
template <typename T>
T __ldg(const T* p) {
  return *p;
}
