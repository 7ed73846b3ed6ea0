#!/usr/bin/env bash
# Every GPU test and benchmark in one go, for a machine with an NVIDIA GPU, nvcc and CMake (no
# Node, Deno or network needed), in under 5 minutes:
#   1. configure and build native/ (Release, CUDA on, tests on) into build/device;
#   2. `cb_engine_tests cuda`: every GPU parity test (each model op and each conv op of the VQ
#      tokenizer against cpu-ref in double, guard bytes around every buffer; the whole model; the
#      VQ-16 network; the sampler). A skip counts as a failure
#      here: on this machine the GPU must be usable;
#   3. `cb_engine_bench`: gemm 4096^3 (bf16 vs fp32); train S and L on `cuda` (bf16
#      activations, fp32 master weights): tokens/s and MFU against the H200's dense bf16 rate;
#      sample S and L (ratio 2, final 16x16 tokens, 17 steps, CFG on) at batches 1 and 64 with
#      each step replayed as a CUDA graph: time per image; and L at batch 1 without graphs, for
#      comparison (small repeat counts); the VQ-16 encoder and decoder (full ds16, random weights)
#      at 256 px, batch 8: images/s and the conv FLOP rate against fp32 GEMM on the same shapes;
#   4. a compact summary at the end.
#
# With the device tool (run from the repository root; it needs no carry: it builds from the
# sources there, and build/ is ignored by git):
#   run   command: "bash scripts/device-check.sh"   timeout_s: 420
# The full log and the benchmarks' JSON lines land in $OUT (device-check.log, bench.jsonl) when
# OUT is set, so they come back with the reply.
#
# Extra arguments go to the CMake configure step (e.g. -DCMAKE_CUDA_ARCHITECTURES=80 on an A100;
# the default here is 90, the H100/H200). BUILD_DIR overrides the build folder. Exit status 0
# when the build, every GPU test and every benchmark ran through; 1 otherwise.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build/device}"
out="${OUT:-$build/out}"
deadline=285  # seconds: stop starting new stages after this, to finish within 5 minutes
mkdir -p "$build" "$out"
log="$out/device-check.log"
jsonl="$out/bench.jsonl"
: >"$log"
: >"$jsonl"
summary=()
status=0

say() { echo "$*" | tee -a "$log"; }
left() { echo $((deadline - SECONDS)); }
fail() {
  summary+=("FAIL $*")
  status=1
}

if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="$PATH:/usr/local/cuda/bin"
fi
say "== device-check: $(nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found'); $(nvcc --version 2>/dev/null |
  grep -o 'release [0-9.]*' || echo 'nvcc not found'); $(cmake --version | head -1)"

# ---- 1. build -------------------------------------------------------------------------------
t0=$SECONDS
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] && generator=()  # keep the generator of an existing build
if { cmake -S "$root/native" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
       -DCB_WITH_CUDA=ON -DCB_BUILD_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES=90 "$@" &&
     timeout 200 cmake --build "$build" --target cb_engine_tests cb_engine_bench \
       -j "$(nproc)"; } >>"$log" 2>&1; then
  if grep -q '^CMAKE_CUDA_COMPILER:[A-Z]*=.*nvcc' "$build/CMakeCache.txt"; then
    summary+=("build: ok ($((SECONDS - t0)) s)")
  else
    fail "build: nvcc was not found, so the CUDA backend was not compiled"
  fi
else
  tail -n 60 "$log"
  fail "build (after $((SECONDS - t0)) s; log: $log)"
  printf '%s\n' "== summary" "${summary[@]}"
  exit 1
fi

# ---- 2. GPU parity tests --------------------------------------------------------------------
t0=$SECONDS
tests_out="$out/tests.txt"
timeout 150 "$build/cb_engine_tests" cuda >"$tests_out" 2>&1
rc=$?
cat "$tests_out" >>"$log"
grep -E '^(FAIL|SKIP)|^engine ' "$tests_out"
result="$(tail -n 1 "$tests_out")"
if [ $rc -eq 124 ]; then
  fail "cuda tests: timed out after 150 s ($(grep -c '^ok' "$tests_out") passed before)"
elif grep -q '^SKIP cuda' "$tests_out"; then
  fail "cuda tests: skipped: $(grep '^SKIP cuda' "$tests_out")"
elif [ $rc -ne 0 ]; then
  fail "cuda tests: $result (exit $rc; see the FAIL lines above)"
else
  summary+=("cuda tests: $result ($((SECONDS - t0)) s)")
fi

# ---- 3. benchmarks --------------------------------------------------------------------------
bench() {  # bench SECONDS_LIMIT ARGS...: one benchmark run, its lines into the summary
  local limit=$1
  shift
  local budget
  budget=$(left)
  if [ "$budget" -lt 20 ]; then
    summary+=("skipped (time): cb_engine_bench $*")
    return
  fi
  [ "$limit" -gt "$budget" ] && limit=$budget
  local text
  text="$(timeout "$limit" "$build/cb_engine_bench" "$@" 2>&1)"
  local rc=$?
  echo "$text" >>"$log"
  while IFS= read -r line; do
    case "$line" in
      "{"*) echo "$line" >>"$jsonl" ;;
      device:*) [ -z "$device_line" ] && device_line="$line" && summary+=("$line") ;;
      *) summary+=("$line") ;;
    esac
  done <<<"$text"
  if [ $rc -eq 124 ]; then
    fail "cb_engine_bench $*: timed out after $limit s"
  elif [ $rc -ne 0 ]; then
    fail "cb_engine_bench $* (exit $rc)"
  fi
}
device_line=""
bench 40 gemm --m 4096 --n 4096 --k 4096 --device cuda --repeats 5
bench 60 train --preset S --batch 64 --device cuda --repeats 2
bench 60 sample --preset S --batches 1,64 --device cuda --repeats 3
bench 80 train --preset L --batch 32 --device cuda --repeats 2
bench 80 sample --preset L --batches 1,64 --device cuda --repeats 3
bench 40 sample --preset L --batches 1 --graphs off --device cuda --repeats 3
bench 40 vq --size 256 --batch 8 --device cuda --repeats 2

# ---- 4. summary -----------------------------------------------------------------------------
summary+=("total $SECONDS s; log $log; JSON lines $jsonl")
printf '%s\n' "== summary" "${summary[@]}" | tee -a "$log"
exit $status
