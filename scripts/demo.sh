#!/usr/bin/env bash
# The main job on the bundled default: fit a patch-VQ tokenizer on MNIST, encode
# the dataset into ratio-2 token shards, and write a reconstruction grid PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-out/demo}
cb() { .tools/bin/deno run -A cli/main.ts "$@"; }
cb info
cb tokenizer fit --dataset mnist --patch 4 --codes 512 --out "$out/tokenizer"
cb data --tokenizer "$out/tokenizer" --ratio 2 --out "$out/shards" --force
cb tokenizer recon --tokenizer "$out/tokenizer" --count 16 --out "$out/recon.png"
echo "demo: reconstruction grid in $out/recon.png, token shards in $out/shards"
