#!/usr/bin/env bash
# Runs every test (after setup) and ends with the line 'N passed, N failed'.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
log=$(mktemp)
NO_COLOR=1 .tools/bin/deno test -A tests/ "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Deno's summary reads e.g. 'ok | 41 passed (3 steps) | 0 failed (12s)'.
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n 1)
passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
rm -f "$log"
if [ -z "$summary" ]; then
  echo "0 passed, 1 failed"
  exit 1
fi
echo "${passed} passed, ${failed} failed"
exit "$status"
