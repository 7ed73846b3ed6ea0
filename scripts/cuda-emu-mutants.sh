#!/usr/bin/env bash
# Proof that the CUDA emulation (native/tests/cuda_emu, ctest's cuda-emu) can fail: plants one
# bug at a time in a copy of native/ (never in the tree), rebuilds the emulated tests, runs the
# cuda tests that cover the planted kernel, and prints what each mutant produced. A mutant that
# every test lets through is reported as SURVIVED and the script exits 1.
#   bash scripts/cuda-emu-mutants.sh      # ~3 minutes here: one build, then one file a mutant
# WORK_DIR overrides the scratch folder (default: a fresh mktemp folder).
# Not part of CI: it rebuilds once per mutant.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${WORK_DIR:-$(mktemp -d)}"
mkdir -p "$work"
src="$work/native"
build="$work/build"
rm -rf "$src"
cp -r "$root/native" "$src"
cp "$root/package.json" "$work/"  # the version the build reports
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCB_WITH_CUDA=OFF >"$work/configure.log" 2>&1 &&
  cmake --build "$build" --target cb_engine_tests_emu -j 2 >"$work/build.log" 2>&1 ||
  { echo "mutants: the unmutated build failed (log: $work/build.log)"; exit 1; }

survived=0
# mutant NAME FILE SED_EXPRESSION TEST_NAME_PART [ENV...]: one planted bug and its tests.
mutant() {
  local name=$1 file=$2 expr=$3 tests=$4
  shift 4
  cp "$src/$file" "$work/original"
  sed -i "$expr" "$src/$file"
  if cmp -s "$src/$file" "$work/original"; then
    echo "mutant $name: the expression changed nothing in $file (update the script)"
    survived=1
    return
  fi
  local result
  if ! cmake --build "$build" --target cb_engine_tests_emu -j 2 >"$work/mutant.log" 2>&1; then
    result="did not compile"
  else
    # The whole run's output first: grep -m1 in a pipe would stop the tests (SIGPIPE).
    env "$@" "$build/cb_engine_tests_emu" cuda "$tests" >"$work/run.log" 2>&1
    result="$(grep -m1 '^FAIL' "$work/run.log" || echo "SURVIVED (every '$tests' test passed)")"
  fi
  # "(for comparison)" mutants show what the random schedule adds; they may survive.
  [[ "$result" == SURVIVED* && "$name" != *"(for comparison)"* ]] && survived=1
  echo "mutant $name:"
  echo "    $result"
  cp "$work/original" "$src/$file"
}

# (a) An off-by-one in a tile bound: the scalar bf16 GEMM stores one row past C (guard bytes).
mutant "tile bound off by one (gemm epilogue)" engine/cuda/model_dense.cu \
  '0,/if (row < p.m \&\& col < p.n) store_c/s//if (row <= p.m \&\& col < p.n) store_c/' linear_bf16
# (b) Missing __syncthreads. First the trailing barrier of block_sum (conv_reduce.cuh), which
# GroupNorm calls twice in a row on one shared array: a warp that runs ahead through the second
# sum's shuffles overwrites its partial while a late warp still reads the first sum's. Threads in
# order hide it (seed 0 passes); the seeded schedule's greedy warps show it.
mutant "missing __syncthreads (block_sum reused, GroupNorm)" engine/cuda/conv_reduce.cuh \
  '/total += partial\[w\];  \/\/ same order in every thread/{n;/__syncthreads();/d}' group_norm \
  CB_EMU_SEED=1
mutant "the same, threads in order, seed 0 (for comparison)" engine/cuda/conv_reduce.cuh \
  '/total += partial\[w\];  \/\/ same order in every thread/{n;/__syncthreads();/d}' group_norm \
  CB_EMU_SEED=0
# Then one inside the tree reduction of the AdaLN backward's column sums: a thread reads partial
# sums that others have not written yet.
mutant "missing __syncthreads (AdaLN backward reduction)" engine/cuda/model_norm.cu \
  '/s2\[ty\]\[tx\] += s2\[ty + s\]\[tx\];/{n;n;/__syncthreads();/d}' adaln CB_EMU_SEED=1
# (c) A wrong shuffle lane in the warp sum of LayerNorm's statistics: lane masks 15, 7, 3, 1, 0
# (the last adds a lane to itself). Not o + 1: masks 17, 9, 5, 3, 2 still span the 32 lanes,
# so that butterfly sums every lane once, correctly.
mutant "wrong shuffle lane (LayerNorm warp sum)" engine/cuda/model_norm.cu \
  's/v += __shfl_xor_sync(0xffffffffu, v, o);/v += __shfl_xor_sync(0xffffffffu, v, o - 1);/' \
  layernorm
# (d) A wrong WMMA layout: the vectorised GEMM reads its k-contiguous B tile as row_major.
mutant "wrong WMMA layout (matrix_b)" engine/cuda/model_dense.cu \
  's/std::conditional_t<kBK, wmma::col_major, wmma::row_major>/std::conditional_t<kBK, wmma::row_major, wmma::row_major>/' \
  linear_bf16
[ -z "${WORK_DIR:-}" ] && rm -rf "$work"
exit $survived
