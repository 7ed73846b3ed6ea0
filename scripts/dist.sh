#!/usr/bin/env bash
# Builds dist/checkerboard (`deno task dist`): one self-extracting file for Linux x86_64 (glibc)
# that runs with no Node, npm or network. It is scripts/dist-launcher.sh (a POSIX sh header)
# followed by a tar.gz payload:
#   deno                       the Deno binary this script runs under
#   lib/                       shared libraries of the native code a bare Debian lacks
#                              (OpenBLAS, libgfortran, libquadmath, libstdc++), found with ldd
#   app/cli, app/src, app/models (when present), app/deno.json, app/package.json
#   app/build/Release/checkerboard.node   the addon
#   app/node_modules/          the npm packages the program loads (scripts/dist-packages.ts)
# The payload is reproducible (sorted, fixed owners and times, gzip -n): the same inputs give
# the same hash, hence the same cache folder on the user's machine.
#
# Builds the addon first when needed (scripts/build-addon.sh: needs Node and npm ci done).
# CHECKERBOARD_DIST_NO_BUILD=1 packs the addon as it is, without the freshness check.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$(date +%s)

fail() {
  echo "dist: error: $*" >&2
  exit 1
}

# Deno: the real binary behind whatever runs us (.tools/bin/deno is a symlink chain).
deno="${DENO:-}"
if [[ -z "$deno" ]]; then
  if [[ -x .tools/bin/deno ]]; then deno=.tools/bin/deno; else deno="$(command -v deno || true)"; fi
fi
[[ -n "$deno" ]] || fail "no deno: run 'bash scripts/setup.sh'"
deno_bin="$("$deno" eval --no-config 'console.log(Deno.execPath())')"
[[ "$(head -c 4 "$deno_bin" | od -An -c | tr -d ' ')" == '177ELF' ]] ||
  fail "$deno_bin is not an ELF executable"
[[ "$(uname -sm)" == "Linux x86_64" ]] || fail "builds only on Linux x86_64"

addon=build/Release/checkerboard.node
if [[ "${CHECKERBOARD_DIST_NO_BUILD:-}" == 1 ]]; then
  [[ -f "$addon" ]] || fail "$addon is missing (unset CHECKERBOARD_DIST_NO_BUILD to build it)"
else
  bash scripts/build-addon.sh
fi
[[ -d node_modules ]] || fail "node_modules/ is missing: run 'bash scripts/setup.sh'"

rm -rf dist
stage=dist/.stage
app=$stage/app
mkdir -p "$app/build/Release" "$stage/lib"

echo "dist: staging in $stage"
cp "$deno_bin" "$stage/deno"
chmod 755 "$stage/deno"
cp -R cli src "$app/"
if [[ -d models ]]; then cp -R models "$app/"; else echo "dist: warning: no models/ folder: 'sample' will need --model" >&2; fi
cp deno.json package.json "$app/"
cp "$addon" "$app/$addon"
"$deno" run -A --no-config scripts/dist-packages.ts "$app/node_modules"

# Shared libraries: every library the native code (the addon, sharp) links, as ldd resolves
# it, except glibc's own and libgcc_s (which libc6 depends on), and except those inside the
# payload (sharp's libvips, found through its rpath).
system_libs='^(linux-vdso\.so|ld-linux-x86-64\.so|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|libresolv\.so|libutil\.so|libgcc_s\.so)'
while IFS= read -r -d '' native; do
  while read -r name arrow path _; do
    [[ "$arrow" == "=>" ]] || continue
    [[ "$path" != "not" ]] || fail "$native needs $name, which ldd cannot find"
    [[ "$name" =~ $system_libs ]] && continue
    case "$(readlink -f "$path")" in "$root"/*) continue ;; esac
    if [[ ! -f "$stage/lib/$name" ]]; then
      cp -L "$path" "$stage/lib/$name"
      echo "  lib/$name  <- $(readlink -f "$path") (for $(basename "$native"))"
    fi
  done < <(ldd "$native")
done < <(find "$app" -name '*.node' -print0)
if ldd "$stage/deno" | grep -Ev "=> /|linux-vdso|ld-linux" | grep -q .; then
  fail "unexpected dependencies of deno: $(ldd "$stage/deno")"
fi

# Smoke test of the staged tree, run the way the launcher runs it (from elsewhere, no PATH).
smoke() {
  (cd / && env -i HOME="$root/dist/.smoke-home" PATH=/nonexistent DENO_NO_UPDATE_CHECK=1 \
    LD_LIBRARY_PATH="$root/$stage/lib" CHECKERBOARD_ADDON="$root/$app/$addon" \
    DENO_DIR="$root/dist/.smoke-home/deno-dir" \
    "$root/$stage/deno" run -A --quiet --no-lock --no-remote --cached-only \
    --config "$root/$app/deno.json" "$root/$app/cli/main.ts" "$@")
}
smoke order --size 4 --steps-per-scale 2 --json >/dev/null || fail "the staged program fails 'order'"
smoke info --json >/dev/null || fail "the staged program fails 'info' (the addon)"
rm -rf dist/.smoke-home

echo "dist: packing"
payload=dist/.payload.tar.gz
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1704067200 \
  -cf - . | gzip -n -6 >"$payload"
sha="$(sha256sum "$payload" | cut -d' ' -f1)"

header=dist/.header.sh
sed "s/@@PAYLOAD_SHA256@@/$sha/" scripts/dist-launcher.sh >"$header"
placeholder=@@PAYLOAD_OFFSET@@
offset=$(($(wc -c <"$header") + 1))
padded="$(printf "%-${#placeholder}s" "$offset")"
sed -i "s/$placeholder/$padded/" "$header"
(($(wc -c <"$header") + 1 == offset)) || fail "the header changed length"

cat "$header" "$payload" >dist/checkerboard.tmp
chmod 755 dist/checkerboard.tmp
mv dist/checkerboard.tmp dist/checkerboard
unpacked=$(du -sm "$stage" | cut -f1)
rm -rf "$stage" "$payload" "$header"
size=$(($(stat -c %s dist/checkerboard) / 1048576))
echo "dist: built dist/checkerboard: ${size} MiB (${unpacked} MiB unpacked, payload ${sha:0:16})" \
  "in $(($(date +%s) - start)) s"
