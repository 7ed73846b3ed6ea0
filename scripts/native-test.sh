#!/usr/bin/env bash
# Builds and runs the native tests with plain CMake (no Node or Deno needed): configures
# build/native, builds cb_engine_tests and cb_engine_tests_emu (the cuda tests on the CPU
# emulation of CUDA), runs ctest and prints its output. Extra arguments go to the CMake
# configure step, e.g. scripts/native-test.sh -DCB_WITH_OPENBLAS=OFF.
# BUILD_DIR overrides the build folder. Without a GPU (no `nvidia-smi -L`) the real CUDA backend
# is left out of this build: nothing could run it, the emulation runs its kernels, and the
# addon's build (scripts/setup.sh) already compiles it with nvcc.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build/native}"
jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
log="$build/build.log"
mkdir -p "$build"
cuda=()
nvidia-smi -L >/dev/null 2>&1 || cuda=(-DCB_WITH_CUDA=OFF)
if ! { cmake -S "$root/native" -B "$build" -DCMAKE_BUILD_TYPE=Release "${cuda[@]}" "$@" &&
       cmake --build "$build" --target cb_engine_tests cb_engine_tests_emu -j "$jobs"; } \
     >"$log" 2>&1; then
  cat "$log" >&2
  echo "native-test: build failed (log: $log)" >&2
  exit 1
fi
grep -h "CMake Warning" -A 4 "$log" >&2 || true
cd "$build"
status=0
# Two at a time: the emulated cuda group (~40 s, mostly one core) beside the CPU groups.
ctest -j "$jobs" --output-on-failure || status=$?
# ctest shows a skipped test without its reason; print the reason line.
grep -h '^SKIP ' Testing/Temporary/LastTest.log 2>/dev/null || true
exit "$status"
