// The cuda backend: host data in, host data out; device buffers live for one call.
#include <algorithm>

#include "../error.h"
#include "check.h"
#include "cuda.h"
#include "device_buffer.h"
#include "kernels.h"

namespace cb {
namespace {

// Elements spanned by a row-major (rows, cols) matrix with row stride ld.
size_t span(int rows, int cols, int ld) {
  return rows == 0 || cols == 0 ? 0 : (size_t)(rows - 1) * ld + cols;
}

class CudaBackend : public Backend {
 public:
  explicit CudaBackend(int64_t chunk_rows) : chunk_rows_(chunk_rows) {
    CB_CUDA_CHECK(cudaSetDevice(0));
  }
  const char* name() const override { return "cuda"; }

  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
            const float* b, int ldb, float beta, float* c, int ldc) override {
    check_gemm_args(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    if (m == 0 || n == 0) return;
    const size_t a_len = trans_a ? span(k, m, lda) : span(m, k, lda);
    const size_t b_len = trans_b ? span(n, k, ldb) : span(k, n, ldb);
    const size_t c_len = span(m, n, ldc);
    DeviceBuffer<float> da(a_len), db(b_len), dc(c_len);
    da.upload(a, a_len);
    db.upload(b, b_len);
    dc.upload(c, c_len);  // also keeps the gaps between rows when ldc > n
    cuda_sgemm(trans_a, trans_b, m, n, k, alpha, da.get(), lda, db.get(), ldb, beta, dc.get(),
               ldc);
    dc.download(c, c_len);
  }

  void nearest_codes(const float* points, int64_t n, int d, const float* codebook, int k,
                     int32_t* index, float* dist2) override {
    check_nearest_args(points, n, d, codebook, k, index, dist2);
    if (n == 0) return;
    // Default chunk: about 256 MiB of device memory for points and outputs.
    const int64_t auto_rows = (int64_t(256) << 20) / (int64_t(sizeof(float)) * (d + 3));
    const int64_t chunk = std::min({n, chunk_rows_ > 0 ? chunk_rows_ : auto_rows,
                                    int64_t(1) << 30});
    DeviceBuffer<float> de((size_t)k * d), de2(k);
    de.upload(codebook, (size_t)k * d);
    cuda_sq_norms(de.get(), k, d, de2.get());
    DeviceBuffer<float> dx((size_t)chunk * d), dx2(chunk), ddist(chunk);
    DeviceBuffer<int32_t> dindex(chunk);
    for (int64_t start = 0; start < n; start += chunk) {
      const int rows = (int)std::min(chunk, n - start);
      dx.upload(points + start * d, (size_t)rows * d);
      cuda_sq_norms(dx.get(), rows, d, dx2.get());
      cuda_nearest_chunk(dx.get(), dx2.get(), rows, d, de.get(), de2.get(), k, dindex.get(),
                         ddist.get());
      dindex.download(index + start, rows);
      ddist.download(dist2 + start, rows);
    }
  }

 private:
  int64_t chunk_rows_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int64_t chunk_rows) {
  const CudaStatus status = cuda_status();
  CB_CHECK(status.available, "CUDA is not available: " + status.reason);
  return std::make_unique<CudaBackend>(chunk_rows);
}

}  // namespace cb
