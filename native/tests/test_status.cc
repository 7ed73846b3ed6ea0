// Build facts, CUDA status and error locations, on every machine.
#include "build_info.h"
#include "cuda/cuda.h"
#include "harness.h"
#include "ops.h"

CB_TEST("status", build_info_is_filled) {
  const cb::BuildInfo info = cb::build_info();
  EXPECT(!info.version.empty() && !info.compiler.empty(), "version and compiler must be set");
  EXPECT(info.blas == "openblas" || info.blas == "blocked", "blas is " + info.blas);
  EXPECT(info.blas_threads >= 1, "blas_threads must be >= 1");
  EXPECT(info.cuda_compiled == cb::cuda_status().compiled, "cuda_compiled disagrees");
  if (info.cuda_compiled) EXPECT(!info.cuda_architectures.empty(), "no CUDA architectures");
}

CB_TEST("status", cuda_status_is_consistent) {
  const cb::CudaStatus status = cb::cuda_status();
  if (status.available) {
    EXPECT(status.compiled && !status.devices.empty(), "available without devices");
    for (const auto& dev : status.devices) {
      EXPECT(!dev.name.empty() && dev.memory_bytes > 0 && dev.major > 0, "bad device info");
    }
    EXPECT(std::string(cb::make_backend("cuda")->name()) == "cuda", "cuda backend name");
    return;
  }
  EXPECT(!status.reason.empty(), "an unavailable CUDA must say why");
  bool thrown = false;
  try {
    cb::make_backend("cuda");
  } catch (const cb::Error& e) {
    thrown = true;
    EXPECT(std::string(e.what()).find(status.reason) != std::string::npos,
           std::string("the error should carry the reason, got: ") + e.what());
  }
  EXPECT(thrown, "make_backend(\"cuda\") must throw when CUDA is not available");
}

CB_TEST("status", errors_carry_relative_file_and_line) {
  try {
    CB_CHECK(false, "boom");
  } catch (const cb::Error& e) {
    EXPECT(e.file() == "native/tests/test_status.cc", "file is " + e.file());
    EXPECT(e.line() > 0 && std::string(e.what()) == "boom", "line or message");
    return;
  }
  EXPECT(false, "CB_CHECK(false) did not throw");
}

CB_TEST("status", unknown_backend_is_an_error) {
  bool thrown = false;
  try {
    cb::make_backend("tpu");
  } catch (const cb::Error& e) {
    thrown = std::string(e.what()).find("tpu") != std::string::npos;
  }
  EXPECT(thrown, "make_backend(\"tpu\") must throw naming it");
}
