// What conv2d (conv_conv2d.cu) and its backward (conv_conv2d_backward.cu) share besides the tile
// product: the shape's checks and dimensions, and the im2col index arithmetic. Row r of the
// im2col matrix col (Cin k^2, B Ho Wo) is the tap (c, ky, kx) = (r / k^2, r % k^2 / k, r % k);
// column p is output position p of the batch in raster order (image p / (Ho Wo), then row, then
// column), whose window starts at input row oy stride - pad_begin, column ox stride - pad_begin.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "../error.h"
#include "../vq/conv_ops.h"

namespace cb {
namespace im2col {

// The dimensions the kernels read (Ho, Wo: the output's).
struct Dims {
  int Cin, H, W, Cout;
  int k, stride, pad_begin;
  int Ho, Wo;
};

inline std::string describe(const Conv2dShape& s) {
  return "B " + std::to_string(s.B) + ", Cin " + std::to_string(s.Cin) + ", H " +
         std::to_string(s.H) + ", W " + std::to_string(s.W) + ", Cout " + std::to_string(s.Cout) +
         ", k " + std::to_string(s.k) + ", stride " + std::to_string(s.stride) + ", pad " +
         std::to_string(s.pad_begin) + "/" + std::to_string(s.pad_end);
}

// The dimensions of s, after the checks both ops make (`op` names the op in the messages).
inline Dims checked_dims(const Conv2dShape& s, const char* op) {
  CB_CHECK(s.B >= 0 && s.Cin >= 0 && s.H >= 0 && s.W >= 0 && s.Cout >= 0 && s.k >= 1 &&
               s.stride >= 1 && s.pad_begin >= 0 && s.pad_end >= 0,
           std::string(op) + ": invalid shape (" + describe(s) + ")");
  CB_CHECK(s.H + s.pad_begin + s.pad_end >= s.k && s.W + s.pad_begin + s.pad_end >= s.k,
           std::string(op) + ": the kernel is larger than the padded input (" + describe(s) +
               ")");
  return Dims{s.Cin, s.H, s.W, s.Cout, s.k, s.stride, s.pad_begin, s.out_h(), s.out_w()};
}

// f(std::integral_constant<int, KS>()): the kernels are specialised for the sides 1 and 3
// (constant tap arithmetic), KS = k; any other side runs the KS = 0 version, which reads k.
template <typename F>
void with_side(int k, F&& f) {
  if (k == 1) {
    f(std::integral_constant<int, 1>());
  } else if (k == 3) {
    f(std::integral_constant<int, 3>());
  } else {
    f(std::integral_constant<int, 0>());
  }
}

// Row r of col (or of its transposed-convolution counterpart, with Cout for Cin): the channel
// and the kernel row and column; taps = k^2.
struct Tap {
  int c, ky, kx;
};
__device__ inline Tap decode_tap(int64_t r, int k, int taps) {
  const int c = (int)(r / taps), tap = (int)(r - (int64_t)c * taps);
  const int ky = tap / k;
  return Tap{c, ky, tap - ky * k};
}

// Output position p of the batch: its image, its pixel within the image's plane (Ho Wo values)
// and the input corner (iy0, ix0) of its window.
struct Window {
  int64_t img, pix;
  int iy0, ix0;
};
__device__ inline Window window_of(const Dims& d, int64_t p, int64_t plane) {
  Window w;
  w.img = p / plane;
  w.pix = p - w.img * plane;
  w.iy0 = (int)(w.pix / d.Wo) * d.stride - d.pad_begin;
  w.ix0 = (int)(w.pix % d.Wo) * d.stride - d.pad_begin;
  return w;
}

// The offset in a (B, channels, plane) tensor of channel m at pixel p of the batch (image p /
// plane, in raster order): where a GEMM result (m, p) goes.
__device__ inline int64_t nchw_offset(int64_t m, int64_t p, int64_t channels, int64_t plane) {
  const int64_t img = p / plane, pix = p - img * plane;
  return (img * channels + m) * plane + pix;
}

}  // namespace im2col
}  // namespace cb
