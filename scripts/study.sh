#!/usr/bin/env bash
# The study of a bundled dataset from scratch: fits the tokenizer (512 codes on 4x4 patches of
# 32x32 images), encodes ratio-2 token shards, runs `checkerboard study` (resumable: run the
# same command again to continue) and copies its report to docs/study-<dataset>/.
#
# Usage: scripts/study.sh mnist|emoji [study options, e.g. --budget-minutes 60]
# Work folder: out/study-<dataset>/ (tokenizer/, shards/, study/).
#
# The models train with train's recipe (src/train/defaults.ts) except the peak lr: a study of a
# few hundred steps per model on CPU needs more than train's 1e-4 to learn anything, so this
# script asks for --lr 1e-3 (the bundled reports' lr); an --lr among the options replaces it.
#
# scripts/study.sh redraw mnist|emoji draws docs/study-<dataset>/ again from its results.json
# (after a change of the report or figure code), training nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:?usage: scripts/study.sh mnist|emoji [study options] | redraw mnist|emoji}
shift
cb() { .tools/bin/deno run -A cli/main.ts "$@"; }
if [ "$dataset" = redraw ]; then
  target=${1:?usage: scripts/study.sh redraw mnist|emoji}
  exec .tools/bin/deno run -A cli/main.ts study --report-only --out "docs/study-$target"
fi
case "$dataset" in
  mnist | emoji) ;;
  *) echo "study.sh: dataset must be mnist or emoji, got '$dataset'" >&2; exit 2 ;;
esac
# A given CHECKERBOARD_ADDON (a prebuilt addon) skips the setup and its addon build.
[ -n "${CHECKERBOARD_ADDON:-}" ] || bash scripts/setup.sh >/dev/null
work=out/study-$dataset
if [ ! -f "$work/tokenizer/tokenizer.json" ]; then
  cb tokenizer fit --dataset "$dataset" --side 32 --patch 4 --codes 512 --out "$work/tokenizer"
fi
if [ ! -f "$work/shards/manifest.json" ]; then
  cb data --tokenizer "$work/tokenizer" --ratio 2 --out "$work/shards" --force
fi
cb study --data "$work/shards" --out "$work/study" --lr 1e-3 "$@"
rm -rf "docs/study-$dataset"
cp -r "$work/study/report" "docs/study-$dataset"
echo "study.sh: report copied to docs/study-$dataset/report.md"
