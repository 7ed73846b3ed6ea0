#!/usr/bin/env bash
# How models/mnist-tiny (the model `checkerboard sample` uses by default) was made, every step by
# this tool itself:
#   1. a VQ autoencoder of LlamaGen's architecture trained on MNIST (`tokenizer train`: 32 px,
#      ch 32 x [1, 2, 2], downsampling 4, so 8 x 8 tokens on the final scale; scales 1, 2, 4, 8,
#      every step training each scale's size; 512 l2-normalised codes of 8; 4,000 steps, about 65
#      minutes on 2 cores; 28.78 dB validation PSNR at 32 px);
#   2. MNIST encoded through it into ratio-2 token shards (`data`);
#   3. the `tiny` transformer trained on those tokens in bf16 (`train --precision bf16`; on a CPU
#      without AVX512-BF16 drop the flag and it trains in fp32, slower);
#   4. exported with float16 transformer parameters (scripts/export-model.ts); the tokenizer
#      stays float32 (4 MB).
# The patch-VQ model it replaced is scripts/tokenize-mnist.sh's tokenizer with the same training.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-out}
cb() { MALLOC_ARENA_MAX=1 .tools/bin/deno run -A cli/main.ts "$@"; }
cb tokenizer train --dataset mnist --out "$out/mnist-vq" --ch 32 --ch-mult 1,2,2 --z-channels 32 \
  --codes 512 --code-dim 8 --encoder-blocks 1 --decoder-blocks 2 --batch 32 --steps 4000 \
  --lr 1e-3 --warmup 100 --eval-every 500 --eval-images 1000 --checkpoint-every 250 --seed 0
cb tokenizer recon --tokenizer "$out/mnist-vq" --count 16 --out "$out/mnist-vq/recon.png"
cb data --tokenizer "$out/mnist-vq" --ratio 2 --out "$out/mnist-vq-data" --force
cb train --data "$out/mnist-vq-data" --out "$out/mnist-vq-tiny" --model tiny --iters 3000 --lr 1e-3 \
  --warmup 100 --steps-per-scale-train 1,2,4,8 --batch 32 --eval-batches 8 \
  --checkpoint-every 500 --seed 0 --precision bf16
cb eval nll --model "$out/mnist-vq-tiny" --data "$out/mnist-vq-data" --steps-per-scale 1,2,4,8
.tools/bin/deno run -A scripts/export-model.ts "$out/mnist-vq-tiny" models/mnist-tiny
