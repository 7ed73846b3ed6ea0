#!/usr/bin/env bash
# How models/mnist-tiny (the model `checkerboard sample` uses by default) was made: the demo's
# MNIST tokenizer (patch 4, 512 codes) and ratio-2 shards, the `tiny` preset trained by this
# tool's own `train` (about 30-40 minutes on 2 cores), then exported with float16 parameters.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/demo.sh out/demo
cb() { .tools/bin/deno run -A cli/main.ts "$@"; }
cb train --data out/demo/shards --out out/mnist-tiny --model tiny --iters 3000 --lr 1e-3 \
  --warmup 100 --steps-per-scale-train 1,2,4,8 --batch 32 --eval-batches 8 \
  --checkpoint-every 500 --seed 0
cb eval nll --model out/mnist-tiny --data out/demo/shards --steps-per-scale 1,2,4,8
.tools/bin/deno run -A scripts/export-model.ts out/mnist-tiny models/mnist-tiny
