#!/usr/bin/env bash
# How models/mnist-tiny (the model `checkerboard sample` uses by default) was made: the MNIST
# tokenizer (patch 4, 512 codes) and ratio-2 shards of scripts/tokenize-mnist.sh, the `tiny`
# preset trained by this tool's own `train` (about 40 minutes on 2 cores), then exported with
# float16 parameters (scripts/export-model.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/tokenize-mnist.sh out/mnist-data
cb() { .tools/bin/deno run -A cli/main.ts "$@"; }
cb train --data out/mnist-data/shards --out out/mnist-tiny --model tiny --iters 3000 --lr 1e-3 \
  --warmup 100 --steps-per-scale-train 1,2,4,8 --batch 32 --eval-batches 8 \
  --checkpoint-every 500 --seed 0
cb eval nll --model out/mnist-tiny --data out/mnist-data/shards --steps-per-scale 1,2,4,8
.tools/bin/deno run -A scripts/export-model.ts out/mnist-tiny models/mnist-tiny
