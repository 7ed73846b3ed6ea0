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

}  // namespace cb
