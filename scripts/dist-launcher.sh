#!/bin/sh
# checkerboard, as one self-extracting file (built by scripts/dist.sh): this POSIX sh header,
# then a tar.gz payload holding Deno, the program (cli/, src/, models/, node_modules/) and the
# native addon with the shared libraries it needs. The first run unpacks the payload into
# ${XDG_CACHE_HOME:-$HOME/.cache}/checkerboard/<hash> (or $CHECKERBOARD_CACHE/<hash>); later
# runs start at once. Needs only sh, coreutils, gzip and tar: no Node, npm or network.
set -eu
# Filled in by scripts/dist.sh (padded with spaces, so the header's length does not change).
PAYLOAD_OFFSET=@@PAYLOAD_OFFSET@@
PAYLOAD_SHA256=@@PAYLOAD_SHA256@@

fail() {
  echo "checkerboard: error: $*" >&2
  exit 1
}

self=$0
[ -r "$self" ] || fail "cannot read myself ($self)"
offset=$PAYLOAD_OFFSET
hash=$(printf '%.16s' "$PAYLOAD_SHA256")

if [ -n "${CHECKERBOARD_CACHE:-}" ]; then
  cache=$CHECKERBOARD_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
  cache=$XDG_CACHE_HOME/checkerboard
elif [ -n "${HOME:-}" ]; then
  cache=$HOME/.cache/checkerboard
else
  cache=${TMPDIR:-/tmp}/checkerboard-$(id -u)
fi
dir=$cache/$hash

if [ ! -d "$dir" ]; then
  mkdir -p "$cache" || fail "cannot create the cache folder $cache (set CHECKERBOARD_CACHE)"
  # Leftovers of killed extractions (more than a day old) go first.
  find "$cache" -maxdepth 1 -name '.unpack-*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
  tmp=$(mktemp -d "$cache/.unpack-$hash-XXXXXX") || fail "cannot write to $cache"
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  [ -t 2 ] && echo "checkerboard: first run: unpacking into $dir ..." >&2
  sum=$(tail -c +"$offset" "$self" | sha256sum | cut -d' ' -f1)
  [ "$sum" = "$PAYLOAD_SHA256" ] || fail "$self is damaged (payload checksum mismatch)"
  tail -c +"$offset" "$self" | gzip -dc | tar -xf - -C "$tmp" --no-same-owner ||
    fail "cannot unpack into $tmp (disk full?)"
  [ -x "$tmp/deno" ] || fail "cannot unpack into $tmp"
  # The rename is the commit: a concurrent first run that lost the race keeps the winner's.
  mv -T "$tmp" "$dir" 2>/dev/null || [ -x "$dir/deno" ] || fail "cannot create $dir"
  rm -rf "$tmp"
  trap - EXIT INT TERM
fi

app=$dir/app
export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CHECKERBOARD_ADDON="$app/build/Release/checkerboard.node"
export DENO_DIR="$cache/deno-dir"
export DENO_NO_UPDATE_CHECK=1
export DENO_NO_PROMPT=1
# One malloc arena: with many decoder and worker threads, glibc's per-thread arenas fragment and
# a long `data` run's peak memory creeps up with its length (native/addon/addon.cc). The
# user's own setting wins.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-1}"
# The user's working directory stays as it is, so relative paths in arguments mean the same.
exec "$dir/deno" run -A --quiet --no-lock --no-remote --cached-only --config "$app/deno.json" \
  "$app/cli/main.ts" "$@"
