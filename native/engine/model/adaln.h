// The chunks of the AdaLN-Zero projections (DESIGN.md "Transformer"), named once. A layer's
// projection of SiLU(class embedding) is a (rows, 6W) matrix whose row holds shift, scale and
// gate for the attention branch, then shift, scale and gate for the MLP branch; the head's is
// (rows, 2W): shift, scale. The same views serve the rows and their gradients (P is Real* or
// const Real*).
#pragma once

namespace cb {

constexpr int kLayerAdaChunks = 6;  // shift1, scale1, gate1, shift2, scale2, gate2
constexpr int kHeadAdaChunks = 2;   // shift, scale

template <typename P>
struct LayerAda {
  P rows;  // (rows, 6W)
  int W;
  int ld() const { return kLayerAdaChunks * W; }  // row stride of every chunk
  P shift1() const { return rows; }
  P scale1() const { return rows + W; }
  P gate1() const { return rows + 2 * W; }
  P shift2() const { return rows + 3 * W; }
  P scale2() const { return rows + 4 * W; }
  P gate2() const { return rows + 5 * W; }
};

template <typename P>
struct HeadAda {
  P rows;  // (rows, 2W)
  int W;
  int ld() const { return kHeadAdaChunks * W; }
  P shift() const { return rows; }
  P scale() const { return rows + W; }
};

}  // namespace cb
