#!/usr/bin/env bash
# The main job on the bundled default: sample a grid of MNIST digits of every class with the
# bundled model (models/mnist-tiny, the `tiny` preset trained by this tool: see
# scripts/train-bundled-model.sh), 13 steps per image (P = 4 on scales 1, 2, 4, 8).
# Writes out/demo/grid.png (one row per class) and out/demo/samples.npz.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-out/demo}
cb() { .tools/bin/deno run -A cli/main.ts "$@"; }
cb info
cb sample --classes all --per-class 10 --steps-per-scale 4 --out "$out"
echo "demo: digits of every class in $out/grid.png, the images in $out/samples.npz"
