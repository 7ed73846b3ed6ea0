#!/usr/bin/env bash
# Every GPU test and benchmark in one go, for a machine with an NVIDIA GPU, nvcc and CMake (no
# Node, Deno or network needed), in under 5 minutes:
#   1. configure and build native/ (Release, CUDA on, tests on) into build/device;
#   0. what the machine has: GPU, nvcc, ncu, compute-sanitizer, MPI, NCCL (libnccl.so.2, also
#      the one in Python's nvidia-nccl wheel, handed to the tests as CB_NCCL_LIBRARY);
#   2. `cb_engine_tests cuda`: every GPU parity test (each model op and each conv op of the VQ
#      tokenizer, forward and backward, against cpu-ref in double, guard bytes around every
#      buffer; fp32 and bf16 mixed-precision training of the whole model; the VQ-16 network;
#      the sampler; NCCL's collectives on device buffers where NCCL loads). A skip counts as a
#      failure here: on this machine the GPU must be usable; with MPI there, the `ranks` group
#      under `mpirun -np 2` on the one GPU;
#   3. `cb_engine_bench`: gemm 4096^3 (bf16 vs fp32); train S and L on `cuda` (bf16
#      activations, fp32 master weights): tokens/s and MFU against the H200's dense bf16 rate;
#      sample S and L (ratio 2, final 16x16 tokens, 17 steps, CFG on) at batches 1, 16, 64 with
#      each step replayed as a CUDA graph: time per image; and L at batch 1 without graphs, for
#      comparison (small repeat counts); the VQ-16 encoder and decoder (full ds16, random weights)
#      at 256 px, batch 8: images/s and the conv FLOP rate against fp32 GEMM on the same shapes;
#   4. where the time goes, when time is left: Nsight Compute (ncu) per-kernel durations and
#      throughput for one L sample at batch 1 and one L training step (ncu-*.txt), and
#      compute-sanitizer's memcheck over the model-op tests;
#   5. a compact summary at the end.
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
deadline=${DEADLINE:-285}  # seconds: stop starting new stages after this (5 minutes in all)
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

# ---- 0. what the machine has -----------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }
ncu_bin=""
for c in ncu /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu; do
  have "$c" && { ncu_bin="$(command -v "$c")"; break; }
done
nccl="${CB_NCCL_LIBRARY:-}"
if [ -z "$nccl" ]; then
  nccl="$(ldconfig -p 2>/dev/null | awk '/libnccl\.so\.2 /{print $NF; exit}')"
fi
if [ -z "$nccl" ] && have python3; then
  nccl="$(python3 -c 'import glob, nvidia.nccl as m
print((glob.glob(list(m.__path__)[0] + "/lib/libnccl.so*") or [""])[0])' 2>/dev/null)"
fi
[ -n "$nccl" ] && export CB_NCCL_LIBRARY="$nccl"
mpi="none"
have mpirun && mpi="$(mpirun --version 2>&1 | head -1)"
say "== tools: ncu ${ncu_bin:-none}; compute-sanitizer $(command -v compute-sanitizer || echo none);" \
  "nsys $(command -v nsys || echo none); mpirun: $mpi; NCCL: ${nccl:-none}; $(nproc) cores"
summary+=("tools: ncu ${ncu_bin:+yes}${ncu_bin:-no}, MPI ${mpi}, NCCL ${nccl:-none}")

# ---- 1. build -------------------------------------------------------------------------------
t0=$SECONDS
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] && generator=()  # keep the generator of an existing build
build_all() {  # build_all CMAKE_ARGS...: configure and build the tests and the benchmarks
  cmake -S "$root/native" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCB_WITH_CUDA=ON -DCB_BUILD_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES=90 "$@" &&
    timeout 200 cmake --build "$build" --target cb_engine_tests cb_engine_bench -j "$(nproc)"
}
# MPI is optional, and another compiler may warn where GCC 12 does not: where the first build
# fails, build again without MPI and with warnings left as warnings (the summary says so).
if build_all "$@" >>"$log" 2>&1 ||
   { grep -E 'error|Error' "$log" | head -n 20
     say "== build failed; again without MPI, warnings not errors"
     summary+=("FALLBACK build without MPI and -Werror (first errors in the log)")
     build_all -DCB_WITH_MPI=OFF -DCB_WARNINGS_AS_ERRORS=OFF "$@" >>"$log" 2>&1; }; then
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
grep -E '^(FAIL|SKIP|note)|^engine ' "$tests_out"
while IFS= read -r line; do summary+=("$line"); done < <(grep '^note ' "$tests_out")
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

# Two ranks on the one GPU: `cb_engine_tests ranks` (data-parallel steps against one process)
# under mpirun. NCCL refuses two ranks on one device, so the ranks exchange over MPI through
# host copies; this checks the launch, the local-GPU choice and that fallback.
if [ "$mpi" != "none" ] && ldd "$build/cb_engine_tests" 2>/dev/null | grep -q libmpi; then
  mpi_flags=()
  [[ "$mpi" == *"Open MPI"* ]] && mpi_flags=(--allow-run-as-root --oversubscribe)
  if timeout 60 mpirun "${mpi_flags[@]}" -np 2 "$build/cb_engine_tests" ranks \
       >"$out/ranks.txt" 2>&1; then
    summary+=("ranks under mpirun -np 2: $(grep -m1 '^note ranks' "$out/ranks.txt")")
  else
    fail "ranks under mpirun -np 2: $(tail -n 3 "$out/ranks.txt" | tr '\n' ' ')"
  fi
  cat "$out/ranks.txt" >>"$log"
else
  summary+=("ranks: not run (MPI: $mpi)")
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
bench 60 sample --preset S --batches 1,16,64 --device cuda --repeats 3
bench 80 train --preset L --batch 32 --device cuda --repeats 2
bench 80 sample --preset L --batches 1,16,64 --device cuda --repeats 3
bench 40 sample --preset L --batches 1 --graphs off --device cuda --repeats 3
bench 40 vq --size 256 --batch 8 --device cuda --repeats 2

# ---- 4. where the time goes ------------------------------------------------------------------
# ncu with one cheap metric set (no cache flush, clocks left alone): each kernel's duration and
# its compute, memory and tensor-pipe throughput, summed per kernel name.
profile() {  # profile NAME 'NCU OPTIONS' ARGS...: one ncu run of cb_engine_bench ARGS
  local name=$1 options=$2
  shift 2
  if [ -z "$ncu_bin" ] || [ "$(left)" -lt 35 ]; then
    summary+=("skipped (${ncu_bin:+time}${ncu_bin:-no ncu}): ncu $name")
    return
  fi
  # shellcheck disable=SC2086  # the options are words
  timeout $(( $(left) < 45 ? $(left) : 45 )) "$ncu_bin" --clock-control none --cache-control none \
    --print-kernel-base function $options "$build/cb_engine_bench" "$@" >"$out/ncu-$name.txt" 2>&1
  local rc=$?
  summary+=("ncu $name: exit $rc, $(grep -c '^  [a-z_]*.*(' "$out/ncu-$name.txt") kernel lines")
}
# The bf16 GEMM at 4096^3: its speed-of-light and occupancy (one launch).
profile gemm "--section SpeedOfLight --section Occupancy --section LaunchStats -k regex:gemm_bf16 \
--launch-count 1" gemm --m 4096 --n 4096 --k 4096 --device cuda --repeats 1
# Kernel durations (one pass each): 400 kernels from the middle of an L sample at batch 1, and
# the first 900 of L training steps at batch 32, summed per kernel name.
profile sample-L-b1 "--metrics gpu__time_duration.sum --launch-skip 2000 --launch-count 400 \
--print-summary per-kernel" sample --preset L --batches 1 --device cuda --repeats 1
profile train-L "--metrics gpu__time_duration.sum --launch-count 900 --print-summary per-kernel" \
  train --preset L --batch 32 --device cuda --repeats 1
if command -v compute-sanitizer >/dev/null && [ "$(left)" -gt 40 ]; then
  timeout $(( $(left) - 5 )) compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
    "$build/cb_engine_tests" cuda _matches_ref >"$out/memcheck.txt" 2>&1
  rc=$?
  summary+=("memcheck (model ops): exit $rc, $(grep -c '^ok' "$out/memcheck.txt") tests ok," \
    "$(grep -m1 -o 'ERROR SUMMARY: [0-9]* errors' "$out/memcheck.txt" || echo 'no summary')")
fi

# ---- 5. summary -----------------------------------------------------------------------------
summary+=("total $SECONDS s; log $log; JSON lines $jsonl")
printf '%s\n' "== summary" "${summary[@]}" | tee -a "$log"
exit $status
