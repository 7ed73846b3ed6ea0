#!/usr/bin/env bash
# Builds the native addon (build/Release/checkerboard.node) with cmake-js, only when it is
# missing or older than any file under native/, the root CMakeLists.txt or package.json.
# The build log goes to build/addon-build.log and is printed only when the build fails.
# Needs: cmake, a C++17 compiler, `npm install` done (cmake-js, node-addon-api,
# node-api-headers: no Node headers are downloaded). Optional: libopenblas-dev, nvcc.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
addon="build/Release/checkerboard.node"
log="build/addon-build.log"

if [[ -f "$addon" ]] && [[ -z "$(find native CMakeLists.txt package.json -newer "$addon" -print -quit)" ]]; then
  echo "addon up to date"
  exit 0
fi

cmake_js="node_modules/cmake-js/bin/cmake-js"
if [[ ! -f "$cmake_js" ]]; then
  echo "build-addon: $cmake_js is missing; run 'npm install' first" >&2
  exit 1
fi
mkdir -p build
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
echo "building the native addon (log: $log) ..."
start=$(date +%s)
# `build` configures when needed; unlike `compile` it never wipes build/ (and build/native).
if ! node "$cmake_js" build --config Release --parallel "$CMAKE_BUILD_PARALLEL_LEVEL" \
    --log-level warn >"$log" 2>&1; then
  cat "$log" >&2
  echo "build-addon: the build failed (log: $log)" >&2
  exit 1
fi
# A successful build that left the output untouched (nothing to relink) still counts as fresh.
touch "$addon"
grep -h "CMake Warning" -A 4 "$log" >&2 || true
echo "built $addon in $(( $(date +%s) - start )) s"
