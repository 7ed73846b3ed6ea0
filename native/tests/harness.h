// A minimal test harness for the native tests: tests register themselves in a group (one
// group per ctest entry); a failed check throws cb::Error (CB_CHECK), which the runner reports
// with the file and line. No Node, no Deno, no test framework to install.
#pragma once

#include <string>

#include "error.h"

namespace cbt {

using TestFn = void (*)();
bool register_test(const char* group, const char* name, TestFn fn);

// Whether the cuda backend is the CPU emulation (tests/cuda_emu, ctest's cuda-emu): the cuda
// tests then take their smaller shapes, so that the emulated run fits in CI.
bool emulated_cuda();

}  // namespace cbt

#define CB_TEST(group, name)                                                          \
  static void cb_test_##name();                                                       \
  [[maybe_unused]] static const bool cb_registered_##name =                           \
      ::cbt::register_test(group, #name, cb_test_##name);                             \
  static void cb_test_##name()

// EXPECT(cond, msg): a test check; on failure the runner prints msg with this file and line.
#define EXPECT(cond, msg) CB_CHECK(cond, msg)
