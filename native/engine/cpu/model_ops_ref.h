// The reference backend of the model ops ("cpu-ref"): the plainest loops that are obviously
// right, no BLAS, no threads, no scratch. Header-only and templated on the scalar type so the
// native tests run it in double against finite differences, and the cpu and cuda backends are
// checked against it in float. Sums accumulate in `Real`, in index order.
// Semantics of every op (shapes, overwrite vs accumulate): model/model_ops.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "../error.h"
#include "../model/model_ops.h"
#include "../sample/philox.h"
#include "../sample/upsample.h"

namespace cb {

template <typename Real>
class RefModelOps final : public ModelOps<Real> {
 public:
  const char* name() const override { return "cpu-ref"; }
  DeviceMemory& memory() override { return host_memory(); }

  // ---- dense ----------------------------------------------------------------------------

  void linear(int64_t n, int in, int out,
              const Real* x,  // (n, in)
              const Real* w,  // (out, in)
              const Real* b,  // (out) or null
              Real* y) override {  // (n, out)
    for (int64_t i = 0; i < n; i++) {
      for (int o = 0; o < out; o++) {
        Real sum = b != nullptr ? b[o] : Real(0);
        for (int k = 0; k < in; k++) sum += x[i * in + k] * w[(int64_t)o * in + k];
        y[i * out + o] = sum;
      }
    }
  }

  void linear_backward(int64_t n, int in, int out,
                       const Real* x,   // (n, in)
                       const Real* w,   // (out, in)
                       const Real* dy,  // (n, out)
                       Real* dx,        // (n, in) overwritten, or null
                       Real* dw,        // (out, in) +=
                       Real* db) override {  // (out) +=, or null
    if (dx != nullptr) {
      for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < in; k++) {
          Real sum = 0;
          for (int o = 0; o < out; o++) sum += dy[i * out + o] * w[(int64_t)o * in + k];
          dx[i * in + k] = sum;
        }
      }
    }
    if (dw != nullptr) {  // the header requires dw; null is tolerated and skips it
      for (int o = 0; o < out; o++) {
        for (int k = 0; k < in; k++) {
          Real sum = 0;
          for (int64_t i = 0; i < n; i++) sum += dy[i * out + o] * x[i * in + k];
          dw[(int64_t)o * in + k] += sum;
        }
      }
    }
    if (db != nullptr) {
      for (int o = 0; o < out; o++) {
        Real sum = 0;
        for (int64_t i = 0; i < n; i++) sum += dy[i * out + o];
        db[o] += sum;
      }
    }
  }

  // ---- elementwise ----------------------------------------------------------------------

  void gelu(int64_t count, const Real* x, Real* y) override {
    for (int64_t i = 0; i < count; i++) {
      const Real u = kGeluC * (x[i] + Real(0.044715) * x[i] * x[i] * x[i]);
      y[i] = Real(0.5) * x[i] * (Real(1) + std::tanh(u));
    }
  }

  void gelu_backward(int64_t count, const Real* x, const Real* dy, Real* dx) override {
    for (int64_t i = 0; i < count; i++) {
      const Real xi = x[i];
      const Real th = std::tanh(kGeluC * (xi + Real(0.044715) * xi * xi * xi));
      const Real du = kGeluC * (Real(1) + Real(3 * 0.044715) * xi * xi);  // du/dx
      const Real grad = Real(0.5) * (Real(1) + th) + Real(0.5) * xi * (Real(1) - th * th) * du;
      dx[i] = dy[i] * grad;
    }
  }

  void silu(int64_t count, const Real* x, Real* y) override {
    for (int64_t i = 0; i < count; i++) y[i] = x[i] * sigmoid(x[i]);
  }

  void silu_backward(int64_t count, const Real* x, const Real* dy, Real* dx) override {
    for (int64_t i = 0; i < count; i++) {
      const Real s = sigmoid(x[i]);
      dx[i] = dy[i] * s * (Real(1) + x[i] * (Real(1) - s));
    }
  }

  void add_inplace(int64_t count, Real* y, const Real* x) override {
    for (int64_t i = 0; i < count; i++) y[i] += x[i];
  }

  void copy_strided(int64_t rows, int cols, const Real* src, int64_t src_ld, Real* dst,
                    int64_t dst_ld, bool accumulate) override {
    for (int64_t r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++) {
        if (accumulate) {
          dst[r * dst_ld + c] += src[r * src_ld + c];
        } else {
          dst[r * dst_ld + c] = src[r * src_ld + c];
        }
      }
    }
  }

  void zero_strided(int64_t rows, int cols, Real* dst, int64_t ld) override {
    for (int64_t r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++) dst[r * ld + c] = Real(0);
    }
  }

  // ---- normalisation and AdaLN ----------------------------------------------------------

  void layernorm(int64_t n, int c,
                 const Real* x,  // (n, c)
                 Real* y,        // (n, c)
                 Real* mean,     // (n)
                 Real* rstd) override {  // (n)
    for (int64_t i = 0; i < n; i++) {
      const Real* xi = x + i * c;
      Real m = 0;
      for (int j = 0; j < c; j++) m += xi[j];
      m /= Real(c);
      Real var = 0;  // biased: divided by c
      for (int j = 0; j < c; j++) var += (xi[j] - m) * (xi[j] - m);
      var /= Real(c);
      const Real r = Real(1) / std::sqrt(var + Real(1e-6));
      for (int j = 0; j < c; j++) y[i * c + j] = (xi[j] - m) * r;
      mean[i] = m;
      rstd[i] = r;
    }
  }

  // With xhat = (x - mean) rstd: dx = rstd (dy - mean(dy) - xhat mean(dy xhat)).
  void layernorm_backward(int64_t n, int c,
                          const Real* x,     // (n, c)
                          const Real* mean,  // (n)
                          const Real* rstd,  // (n)
                          const Real* dy,    // (n, c)
                          Real* dx) override {  // (n, c) overwritten
    for (int64_t i = 0; i < n; i++) {
      const Real* xi = x + i * c;
      const Real* dyi = dy + i * c;
      Real dy_mean = 0, dy_xhat_mean = 0;
      for (int j = 0; j < c; j++) {
        dy_mean += dyi[j];
        dy_xhat_mean += dyi[j] * (xi[j] - mean[i]) * rstd[i];
      }
      dy_mean /= Real(c);
      dy_xhat_mean /= Real(c);
      for (int j = 0; j < c; j++) {
        const Real xhat = (xi[j] - mean[i]) * rstd[i];
        dx[i * c + j] = rstd[i] * (dyi[j] - dy_mean - xhat * dy_xhat_mean);
      }
    }
  }

  void modulate(int B, int T, int c,
                const Real* xn,     // (B, T, c)
                const Real* shift,  // row b at shift + b*ld, (c) used
                const Real* scale,  // row b at scale + b*ld, (c) used
                int ld,
                Real* y) override {  // (B, T, c)
    for (int b = 0; b < B; b++) {
      for (int t = 0; t < T; t++) {
        const int64_t row = ((int64_t)b * T + t) * c;
        for (int j = 0; j < c; j++) {
          y[row + j] = xn[row + j] * (Real(1) + scale[(int64_t)b * ld + j]) +
                       shift[(int64_t)b * ld + j];
        }
      }
    }
  }

  void modulate_backward(int B, int T, int c,
                         const Real* xn,     // (B, T, c)
                         const Real* scale,  // row b at scale + b*ld
                         int ld,
                         const Real* dy,     // (B, T, c)
                         Real* dxn,          // (B, T, c) overwritten
                         Real* dshift,       // row b at dshift + b*ld, +=
                         Real* dscale) override {  // row b at dscale + b*ld, +=
    for (int b = 0; b < B; b++) {
      for (int j = 0; j < c; j++) {
        Real sum_dy = 0, sum_dy_xn = 0;
        for (int t = 0; t < T; t++) {
          const int64_t e = ((int64_t)b * T + t) * c + j;
          dxn[e] = dy[e] * (Real(1) + scale[(int64_t)b * ld + j]);
          sum_dy += dy[e];
          sum_dy_xn += dy[e] * xn[e];
        }
        dshift[(int64_t)b * ld + j] += sum_dy;
        dscale[(int64_t)b * ld + j] += sum_dy_xn;
      }
    }
  }

  void gated_residual(int B, int T, int c,
                      Real* x,           // (B, T, c) +=
                      const Real* gate,  // row b at gate + b*ld
                      int ld,
                      const Real* h) override {  // (B, T, c)
    for (int b = 0; b < B; b++) {
      for (int t = 0; t < T; t++) {
        const int64_t row = ((int64_t)b * T + t) * c;
        for (int j = 0; j < c; j++) x[row + j] += gate[(int64_t)b * ld + j] * h[row + j];
      }
    }
  }

  void gated_residual_backward(int B, int T, int c,
                               const Real* dx,    // (B, T, c)
                               const Real* gate,  // row b at gate + b*ld
                               int ld,
                               const Real* h,     // (B, T, c)
                               Real* dh,          // (B, T, c) overwritten
                               Real* dgate) override {  // row b at dgate + b*ld, +=
    for (int b = 0; b < B; b++) {
      for (int j = 0; j < c; j++) {
        Real sum = 0;
        for (int t = 0; t < T; t++) {
          const int64_t e = ((int64_t)b * T + t) * c + j;
          dh[e] = dx[e] * gate[(int64_t)b * ld + j];
          sum += dx[e] * h[e];
        }
        dgate[(int64_t)b * ld + j] += sum;
      }
    }
  }

  // ---- embeddings -----------------------------------------------------------------------

  void gather_rows(int64_t n, int c,
                   const Real* table,       // (rows, c)
                   const int32_t* index,    // (n)
                   Real* out) override {    // (n, c)
    for (int64_t i = 0; i < n; i++) {
      CB_CHECK(index[i] >= 0, "gather_rows: negative index at row " + std::to_string(i));
      for (int j = 0; j < c; j++) out[i * c + j] = table[(int64_t)index[i] * c + j];
    }
  }

  void scatter_add_rows(int64_t n, int c,
                        const Real* dout,       // (n, c)
                        const int32_t* index,   // (n)
                        Real* dtable) override {  // (rows, c) +=
    for (int64_t i = 0; i < n; i++) {
      CB_CHECK(index[i] >= 0, "scatter_add_rows: negative index at row " + std::to_string(i));
      for (int j = 0; j < c; j++) dtable[(int64_t)index[i] * c + j] += dout[i * c + j];
    }
  }

  void fill_masked_rows(int64_t n, int c,
                        const uint8_t* mask,  // (n)
                        const Real* vec,      // (c)
                        Real* x) override {   // (n, c)
    for (int64_t i = 0; i < n; i++) {
      if (mask[i] == 0) continue;
      for (int j = 0; j < c; j++) x[i * c + j] = vec[j];
    }
  }

  void fill_masked_rows_backward(int64_t n, int c,
                                 const uint8_t* mask,  // (n)
                                 Real* dx,             // (n, c) masked rows zeroed
                                 Real* dvec) override {  // (c) +=
    for (int64_t i = 0; i < n; i++) {
      if (mask[i] == 0) continue;
      for (int j = 0; j < c; j++) {
        dvec[j] += dx[i * c + j];
        dx[i * c + j] = Real(0);
      }
    }
  }

  // ---- rotary position embedding ----------------------------------------------------------
  // Pair i rotates (x0, x1) = (x[2i], x[2i+1]) by angle a: R(a) x = (x0 cos - x1 sin,
  // x0 sin + x1 cos). d/da R(a) x = (-x0 sin - x1 cos, x0 cos - x1 sin), and
  // R(a)^T d = (d0 cos + d1 sin, -d0 sin + d1 cos).

  void rope(int64_t n, int H, int hd,
            const Real* x,           // n rows at stride ld, (H*hd) used
            int ld,
            const Real* angles,      // (positions, hd/2)
            const int32_t* pos_p,    // (n)
            const int32_t* pos_q,    // (n), read only when mix_logit is not null
            const Real* mix_logit,   // (H) or null
            Real* y) override {      // (n, H*hd)
    CB_CHECK(hd % 2 == 0, "rope: head size " + std::to_string(hd) + " is odd");
    const bool mixed = mix_logit != nullptr;
    CB_CHECK(!mixed || pos_q != nullptr, "rope: mixing needs pos_q");
    const int half = hd / 2;
    for (int64_t r = 0; r < n; r++) {
      check_positions(r, pos_p, mixed ? pos_q : nullptr);
      for (int h = 0; h < H; h++) {
        const Real alpha = mixed ? sigmoid(mix_logit[h]) : Real(1);
        const Real* xh = x + r * ld + (int64_t)h * hd;          // (hd)
        Real* yh = y + (r * H + h) * (int64_t)hd;               // (hd)
        for (int i = 0; i < half; i++) {
          const Real x0 = xh[2 * i], x1 = xh[2 * i + 1];
          const Real ap = angles[(int64_t)pos_p[r] * half + i];
          Real y0 = alpha * (x0 * std::cos(ap) - x1 * std::sin(ap));
          Real y1 = alpha * (x0 * std::sin(ap) + x1 * std::cos(ap));
          if (mixed) {
            const Real aq = angles[(int64_t)pos_q[r] * half + i];
            y0 += (Real(1) - alpha) * (x0 * std::cos(aq) - x1 * std::sin(aq));
            y1 += (Real(1) - alpha) * (x0 * std::sin(aq) + x1 * std::cos(aq));
          }
          yh[2 * i] = y0;
          yh[2 * i + 1] = y1;
        }
      }
    }
  }

  void rope_backward(int64_t n, int H, int hd,
                     const Real* x,           // n rows at stride ld
                     int ld,
                     const Real* angles,      // (positions, hd/2)
                     const int32_t* pos_p,    // (n)
                     const int32_t* pos_q,    // (n), read only when mix_logit is not null
                     const Real* mix_logit,   // (H) or null
                     const Real* dy,          // (n, H*hd)
                     Real* dx,                // n rows at stride ld, (H*hd) overwritten
                     Real* dangles,           // (positions, hd/2) +=
                     Real* dmix_logit) override {  // (H) +=, or null
    CB_CHECK(hd % 2 == 0, "rope: head size " + std::to_string(hd) + " is odd");
    const bool mixed = mix_logit != nullptr;
    CB_CHECK(!mixed || pos_q != nullptr, "rope: mixing needs pos_q");
    const int half = hd / 2;
    for (int64_t r = 0; r < n; r++) {
      check_positions(r, pos_p, mixed ? pos_q : nullptr);
      for (int h = 0; h < H; h++) {
        const Real alpha = mixed ? sigmoid(mix_logit[h]) : Real(1);
        const Real* xh = x + r * ld + (int64_t)h * hd;           // (hd)
        const Real* dyh = dy + (r * H + h) * (int64_t)hd;        // (hd)
        Real* dxh = dx + r * ld + (int64_t)h * hd;               // (hd)
        Real dalpha = 0;  // dy . (R(a_p) x - R(a_q) x)
        for (int i = 0; i < half; i++) {
          const Real x0 = xh[2 * i], x1 = xh[2 * i + 1];
          const Real d0 = dyh[2 * i], d1 = dyh[2 * i + 1];
          const int64_t ip = (int64_t)pos_p[r] * half + i;
          const Real cp = std::cos(angles[ip]), sp = std::sin(angles[ip]);
          Real dx0 = alpha * (d0 * cp + d1 * sp);
          Real dx1 = alpha * (-d0 * sp + d1 * cp);
          if (dangles != nullptr) {
            dangles[ip] += alpha * (d0 * (-x0 * sp - x1 * cp) + d1 * (x0 * cp - x1 * sp));
          }
          if (mixed) {
            const int64_t iq = (int64_t)pos_q[r] * half + i;
            const Real cq = std::cos(angles[iq]), sq = std::sin(angles[iq]);
            const Real beta = Real(1) - alpha;
            dx0 += beta * (d0 * cq + d1 * sq);
            dx1 += beta * (-d0 * sq + d1 * cq);
            if (dangles != nullptr) {
              dangles[iq] += beta * (d0 * (-x0 * sq - x1 * cq) + d1 * (x0 * cq - x1 * sq));
            }
            dalpha += d0 * ((x0 * cp - x1 * sp) - (x0 * cq - x1 * sq)) +
                      d1 * ((x0 * sp + x1 * cp) - (x0 * sq + x1 * cq));
          }
          dxh[2 * i] = dx0;
          dxh[2 * i + 1] = dx1;
        }
        // d alpha / d logit = alpha (1 - alpha)
        if (mixed && dmix_logit != nullptr) dmix_logit[h] += alpha * (Real(1) - alpha) * dalpha;
      }
    }
  }

  // ---- attention ------------------------------------------------------------------------
  // Head h of slot t of sequence b is the hd values at ((b*T + t) * H + h) * hd.

  void attention(int B, int T, int H, int hd,
                 const Real* q,               // (B, T, H*hd)
                 const Real* k,               // (B, T, H*hd)
                 const Real* v,               // (B, T, H*hd)
                 const int32_t* visible_end,  // (T)
                 Real* out,                   // (B, T, H*hd)
                 Real* lse) override {        // (B, H, T)
    check_visible(T, visible_end);
    const int64_t C = (int64_t)H * hd;
    const Real scale = Real(1) / std::sqrt(Real(hd));
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < H; h++) {
        for (int t = 0; t < T; t++) {
          const Real* qt = q + ((int64_t)b * T + t) * C + (int64_t)h * hd;  // (hd)
          Real* ot = out + ((int64_t)b * T + t) * C + (int64_t)h * hd;      // (hd)
          Real* l = lse + ((int64_t)b * H + h) * T + t;
          const int vis = visible_end[t];
          for (int d = 0; d < hd; d++) ot[d] = Real(0);
          if (vis == 0) {  // nothing visible: zero output, empty log-sum-exp
            *l = -std::numeric_limits<Real>::infinity();
            continue;
          }
          // Pass 1: the max score; pass 2: the softmax-weighted sum of values.
          Real mx = -std::numeric_limits<Real>::infinity();
          for (int j = 0; j < vis; j++) {
            const Real s = score(qt, k + ((int64_t)b * T + j) * C + (int64_t)h * hd, hd, scale);
            if (s > mx) mx = s;
          }
          Real sum = 0;
          for (int j = 0; j < vis; j++) {
            const int64_t kj = ((int64_t)b * T + j) * C + (int64_t)h * hd;
            const Real e = std::exp(score(qt, k + kj, hd, scale) - mx);
            sum += e;
            for (int d = 0; d < hd; d++) ot[d] += e * v[kj + d];
          }
          for (int d = 0; d < hd; d++) ot[d] /= sum;
          *l = mx + std::log(sum);
        }
      }
    }
  }

  // Every query j of every (b, h) against the cached keys [0, visible_end[j]): two passes,
  // as in attention().
  void attention_cached(int B, int Tq, int H, int hd,
                        const Real* q,                 // (B, Tq, H*hd)
                        const Real* k,                 // (B, kv_batch_stride)
                        const Real* v,                 // (B, kv_batch_stride)
                        int64_t kv_batch_stride,
                        const int32_t* visible_end,    // (Tq)
                        Real* out) override {          // (B, Tq, H*hd)
    const int64_t C = (int64_t)H * hd;
    const Real scale = Real(1) / std::sqrt(Real(hd));
    for (int j = 0; j < Tq; j++) {
      CB_CHECK(visible_end[j] >= 1 && visible_end[j] * C <= kv_batch_stride,
               "attention_cached: visible_end[" + std::to_string(j) + "] = " +
                   std::to_string(visible_end[j]) + " outside the cache");
    }
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < H; h++) {
        const Real* kb = k + b * kv_batch_stride + (int64_t)h * hd;  // (vis, hd) at stride C
        const Real* vb = v + b * kv_batch_stride + (int64_t)h * hd;
        for (int j = 0; j < Tq; j++) {
          const Real* qj = q + ((int64_t)b * Tq + j) * C + (int64_t)h * hd;  // (hd)
          Real* oj = out + ((int64_t)b * Tq + j) * C + (int64_t)h * hd;      // (hd)
          const int vis = visible_end[j];
          Real mx = -std::numeric_limits<Real>::infinity();
          for (int i = 0; i < vis; i++) mx = std::max(mx, score(qj, kb + i * C, hd, scale));
          for (int d = 0; d < hd; d++) oj[d] = Real(0);
          Real sum = 0;
          for (int i = 0; i < vis; i++) {
            const Real e = std::exp(score(qj, kb + i * C, hd, scale) - mx);
            sum += e;
            for (int d = 0; d < hd; d++) oj[d] += e * vb[i * C + d];
          }
          for (int d = 0; d < hd; d++) oj[d] /= sum;
        }
      }
    }
  }

  void upsample_bilinear(int B, int s_in, int s_out, int D, const Real* src, Real* dst) override {
    for (int b = 0; b < B; b++) {
      upsample_bilinear_grid(s_in, s_out, D, src + (int64_t)b * s_in * s_in * D,
                             dst + (int64_t)b * s_out * s_out * D);
    }
  }

  void sample_tokens(int64_t n, int K, const Real* cond, const Real* uncond, float guidance,
                     const TokenSampling& s, const int32_t* image, const int32_t* slot,
                     int32_t* codes, float* entropy_bits) override {
    TokenSamplingScratch scratch;
    for (int64_t i = 0; i < n; i++) {
      codes[i] = sample_row(K, cond + i * K, uncond ? uncond + i * K : nullptr, guidance, s,
                            sample_uniform(s.seed, image[i], slot[i]), scratch,
                            entropy_bits ? entropy_bits + i : nullptr);
    }
  }

  // P = exp(S - lse); dV += P^T dO; dP = dO V^T; dS = P (dP - rowsum(dO O));
  // dQ = scale dS K; dK += scale dS^T Q.
  void attention_backward(int B, int T, int H, int hd,
                          const Real* q,               // (B, T, H*hd)
                          const Real* k,               // (B, T, H*hd)
                          const Real* v,               // (B, T, H*hd)
                          const int32_t* visible_end,  // (T)
                          const Real* out,             // (B, T, H*hd)
                          const Real* lse,             // (B, H, T)
                          const Real* dout,            // (B, T, H*hd)
                          Real* dq,                    // (B, T, H*hd) overwritten
                          Real* dk,                    // (B, T, H*hd) overwritten
                          Real* dv) override {         // (B, T, H*hd) overwritten
    check_visible(T, visible_end);
    const int64_t C = (int64_t)H * hd, count = (int64_t)B * T * C;
    const Real scale = Real(1) / std::sqrt(Real(hd));
    for (int64_t e = 0; e < count; e++) dq[e] = dk[e] = dv[e] = Real(0);
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < H; h++) {
        for (int t = 0; t < T; t++) {
          const int64_t it = ((int64_t)b * T + t) * C + (int64_t)h * hd;
          const Real l = lse[((int64_t)b * H + h) * T + t];
          Real D = 0;  // rowsum(dO * O)
          for (int d = 0; d < hd; d++) D += dout[it + d] * out[it + d];
          for (int j = 0; j < visible_end[t]; j++) {
            const int64_t ij = ((int64_t)b * T + j) * C + (int64_t)h * hd;
            const Real p = std::exp(score(q + it, k + ij, hd, scale) - l);
            Real dp = 0;
            for (int d = 0; d < hd; d++) {
              dv[ij + d] += p * dout[it + d];
              dp += dout[it + d] * v[ij + d];
            }
            const Real ds = p * (dp - D);
            for (int d = 0; d < hd; d++) {
              dq[it + d] += scale * ds * k[ij + d];
              dk[ij + d] += scale * ds * q[it + d];
            }
          }
        }
      }
    }
  }

  // ---- loss -----------------------------------------------------------------------------

  void softmax_cross_entropy(int64_t n, int K,
                             const Real* logits,      // (n, K)
                             const int32_t* target,   // (n), < 0 ignored
                             Real* loss_rows,         // (n)
                             Real* dlogits,           // (n, K) or null
                             Real grad_scale) override {
    for (int64_t i = 0; i < n; i++) {
      const Real* li = logits + i * K;
      const int32_t tgt = target[i];
      CB_CHECK(tgt < K, "softmax_cross_entropy: target " + std::to_string(tgt) + " at row " +
                            std::to_string(i) + " is not below K = " + std::to_string(K));
      if (tgt < 0) {
        loss_rows[i] = Real(0);
        if (dlogits != nullptr) {
          for (int j = 0; j < K; j++) dlogits[i * K + j] = Real(0);
        }
        continue;
      }
      Real mx = li[0];
      for (int j = 1; j < K; j++) mx = li[j] > mx ? li[j] : mx;
      Real sum = 0;
      for (int j = 0; j < K; j++) sum += std::exp(li[j] - mx);
      const Real log_z = mx + std::log(sum);
      loss_rows[i] = log_z - li[tgt];
      if (dlogits != nullptr) {
        for (int j = 0; j < K; j++) {
          const Real p = std::exp(li[j] - log_z);
          dlogits[i * K + j] = (p - (j == tgt ? Real(1) : Real(0))) * grad_scale;
        }
      }
    }
  }

  // ---- optimizer ------------------------------------------------------------------------

  void adamw(int64_t count, Real* param, const Real* grad, Real* m, Real* v, float lr,
             float beta1, float beta2, float eps, float weight_decay, int64_t t) override {
    CB_CHECK(t >= 1, "adamw: step " + std::to_string(t) + " is not 1-based");
    const Real b1 = beta1, b2 = beta2;
    const Real bc1 = Real(1) - std::pow(b1, Real(t));  // bias corrections
    const Real bc2 = Real(1) - std::pow(b2, Real(t));
    for (int64_t i = 0; i < count; i++) {
      const Real g = grad[i];
      m[i] = b1 * m[i] + (Real(1) - b1) * g;
      v[i] = b2 * v[i] + (Real(1) - b2) * g * g;
      const Real m_hat = m[i] / bc1, v_hat = v[i] / bc2;
      param[i] -= Real(lr) * (m_hat / (std::sqrt(v_hat) + Real(eps)) +
                              Real(weight_decay) * param[i]);
    }
  }

 private:
  static constexpr Real kGeluC = Real(0.79788456080286535588);  // sqrt(2/pi)

  static Real sigmoid(Real x) { return Real(1) / (Real(1) + std::exp(-x)); }

  // scale * (a . b) over hd values.
  static Real score(const Real* a, const Real* b, int hd, Real scale) {
    Real s = 0;
    for (int d = 0; d < hd; d++) s += a[d] * b[d];
    return s * scale;
  }

  static void check_visible(int T, const int32_t* visible_end) {
    for (int t = 0; t < T; t++) {
      CB_CHECK(visible_end[t] >= 0 && visible_end[t] <= T,
               "attention: visible_end[" + std::to_string(t) + "] = " +
                   std::to_string(visible_end[t]) + " is outside [0, " + std::to_string(T) + "]");
    }
  }

  static void check_positions(int64_t r, const int32_t* pos_p, const int32_t* pos_q) {
    CB_CHECK(pos_p[r] >= 0 && (pos_q == nullptr || pos_q[r] >= 0),
             "rope: negative position index at row " + std::to_string(r));
  }
};

}  // namespace cb
