// The im2col helpers of the cpu conv ops (internal to engine/vq): conv2d's forward
// (conv_ops_cpu_conv.cc, where im2col_tile is defined) and conv2d_backward
// (conv_ops_cpu_conv_backward.cc: dw's columns, col2im's valid ranges) share them.
#pragma once

#include <algorithm>

#include "conv_ops.h"

namespace cb {

// The first output column whose tap kx reads inside the input, and one past the last, for a row
// of width W seen through stride and pad_begin: ix = ox stride + kx - pad_begin in [0, W).
inline void im2col_valid_columns(int W, int Wo, int stride, int pad_begin, int kx, int* lo,
                                 int* hi) {
  const int first = pad_begin - kx;  // ox stride >= first
  *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int last = W - 1 + pad_begin - kx;  // ox stride <= last
  *hi = last < 0 ? 0 : std::min(Wo, last / stride + 1);
  *lo = std::min(*lo, *hi);
}

// The im2col columns of output rows [y0, y0 + rows) of one image: col row r = (ci, ky, kx)
// holds, for every output pixel of the tile, the input value its tap (ky, kx) of channel ci
// reads (0 in the padding). Threaded over the column rows with parallel_for.
void im2col_tile(const Conv2dShape& s, const float* x,  // x: (Cin, H, W) of one image
                 int y0, int rows, float* col);         // col: (Cin k k, rows Wo)

// The im2col columns of `images` whole images side by side, for one product over all of them:
// col row r holds image 0's Ho Wo values of tap r, then image 1's, and so on. Threaded over
// (column row, image) pairs.
void im2col_images(const Conv2dShape& s, const float* x,  // x: (images, Cin, H, W)
                   int images, float* col);               // col: (Cin k k, images Ho Wo)

// Images that side-by-side products may take at once when each needs `floats_per_image` of
// scratch out of `scratch_floats`: at most B, 0 or 1 when batching would not pay (the caller
// then runs its per-image paths).
inline int batch_group_images(const Conv2dShape& s, int64_t floats_per_image,
                              int64_t scratch_floats) {
  return (int)std::min<int64_t>(s.B, scratch_floats / std::max<int64_t>(1, floats_per_image));
}

// (C, P) planes of images [0, images) of src (images, C, P) side by side into dst (C, images P)
// (gather), and back, plus a per-channel bias when given (scatter). Threaded over planes.
void gather_image_planes(int images, int C, int64_t P, const float* src, float* dst);
void scatter_image_planes(int images, int C, int64_t P, const float* src, const float* bias,
                          float* dst);

}  // namespace cb
