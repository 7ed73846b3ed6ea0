// The native test runner: `cb_engine_tests GROUP` runs the tests of one group (status, cpu-ref,
// cpu, cuda); without an argument it runs them all; `cb_engine_tests GROUP TEXT` runs the tests
// of the group whose names contain TEXT (e.g. under compute-sanitizer, which is slow). The cuda group prints one line
// `SKIP cuda: <reason>` and passes when no GPU is usable. Exit status 1 if any test failed.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <execinfo.h>
#include <unistd.h>

#include "build_info.h"
#include "cuda/cuda.h"
#include "harness.h"

namespace cbt {

struct TestCase {
  std::string group, name;
  TestFn fn;
};

static std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

bool register_test(const char* group, const char* name, TestFn fn) {
  registry().push_back({group, name, fn});
  return true;
}

bool emulated_cuda() {
  static const bool emulated = [] {
    const cb::CudaStatus s = cb::cuda_status();
    return s.available && !s.devices.empty() && s.devices[0].name.rfind("cuda-emu", 0) == 0;
  }();
  return emulated;
}

}  // namespace cbt

// A crash prints the stack (function names: the executable is linked with -rdynamic) on
// stderr, so a segfault on a machine lent for minutes still says where it happened.
static void print_stack_and_die(int sig) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  const char head[] = "\n*** fatal signal; stack:\n";
  (void)!write(2, head, sizeof head - 1);
  backtrace_symbols_fd(frames, n, 2);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each result line out before the next test runs
  std::signal(SIGSEGV, print_stack_and_die);
  std::signal(SIGBUS, print_stack_and_die);
  std::signal(SIGABRT, print_stack_and_die);
  const std::string only = argc > 1 ? argv[1] : "";
  const std::string name_part = argc > 2 ? argv[2] : "";
  const cb::BuildInfo info = cb::build_info();
  std::string cuda = "not compiled";
  if (info.cuda.available) {
    cuda = "available: " + info.cuda.devices[0].name;
  } else if (info.cuda.compiled) {
    cuda = "not available: " + info.cuda.reason;
  }
  std::printf("engine %s (%s, %s), blas %s with %d threads, cuda %s\n", info.version.c_str(),
              info.build_type.c_str(), info.compiler.c_str(), info.blas.c_str(),
              info.blas_threads, cuda.c_str());
  int passed = 0, failed = 0;
  bool cuda_checked = false, cuda_ok = false;
  for (const auto& test : cbt::registry()) {
    if (!only.empty() && test.group != only) continue;
    if (test.name.find(name_part) == std::string::npos) continue;
    if (test.group == "cuda") {
      if (!cuda_checked) {
        const cb::CudaStatus status = cb::cuda_status();
        cuda_checked = true;
        cuda_ok = status.available;
        if (!cuda_ok) std::printf("SKIP cuda: %s\n", status.reason.c_str());
      }
      if (!cuda_ok) continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    try {
      test.fn();
      const double ms = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - t0).count();
      std::printf("ok   %s/%s (%.0f ms)\n", test.group.c_str(), test.name.c_str(), ms);
      passed++;
    } catch (const cb::Error& e) {
      std::printf("FAIL %s/%s: %s (%s:%d)\n", test.group.c_str(), test.name.c_str(), e.what(),
                  e.file().c_str(), e.line());
      failed++;
    } catch (const std::exception& e) {
      std::printf("FAIL %s/%s: %s\n", test.group.c_str(), test.name.c_str(), e.what());
      failed++;
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
