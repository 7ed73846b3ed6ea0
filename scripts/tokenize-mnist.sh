#!/usr/bin/env bash
# Fit a patch-VQ tokenizer on MNIST (patch 4, 512 codes), encode
# the dataset into ratio-2 token shards, and write a reconstruction grid PNG: the data of
# the bundled model (scripts/train-bundled-model.sh). Usage: scripts/tokenize-mnist.sh [OUT].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-out/mnist-data}
cb() { .tools/bin/deno run -A cli/main.ts "$@"; }
cb info
cb tokenizer fit --dataset mnist --patch 4 --codes 512 --out "$out/tokenizer"
cb data --tokenizer "$out/tokenizer" --ratio 2 --out "$out/shards" --force
cb tokenizer recon --tokenizer "$out/tokenizer" --count 16 --out "$out/recon.png"
echo "tokenize-mnist: reconstruction grid in $out/recon.png, token shards in $out/shards"
