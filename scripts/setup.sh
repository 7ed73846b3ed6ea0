#!/usr/bin/env bash
# Installs everything checkerboard needs, idempotently, on a machine with Node and npm:
# the npm packages (Deno itself among them), OpenBLAS and oneDNN (through apt-get when root), and
# the native addon (rebuilt only when native/ changed). Quiet when nothing is to do.
set -euo pipefail
cd "$(dirname "$0")/.."

# npm packages. Reinstall only when the lock file changed.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# Deno, from its npm package, in .tools/ rather than node_modules/: `deno task` puts
# node_modules/.bin first on PATH and would take a deno found there for a Node script.
DENO_VERSION=2.9.6
if [ "$(.tools/bin/deno --version 2>/dev/null | head -n 1 | cut -d' ' -f2)" != "$DENO_VERSION" ]; then
  echo "setup: installing Deno $DENO_VERSION from npm" >&2
  rm -rf .tools/deno
  npm install --prefix .tools/deno --no-save --no-package-lock --no-audit --no-fund \
    --loglevel=error "deno@$DENO_VERSION" >&2
  mkdir -p .tools/bin
  ln -sf ../deno/node_modules/.bin/deno .tools/bin/deno
  .tools/bin/deno --version >/dev/null
fi

# OpenBLAS and oneDNN: the CPU backend's GEMMs (oneDNN: AVX-512 fp32 and the bf16 matmuls;
# OpenBLAS where oneDNN has no AVX-512). Without both the addon falls back to a portable loop.
have_openblas() { [ -f /usr/include/x86_64-linux-gnu/cblas.h ] || [ -f /usr/include/cblas.h ] ||
  [ -f /usr/include/openblas/cblas.h ]; }
have_onednn() { [ -f /usr/include/dnnl.hpp ] || [ -f /usr/include/oneapi/dnnl/dnnl.hpp ]; }
# apt_install WHAT WHY PACKAGE...: installs the Debian packages when root, else says what to do.
apt_install() {
  local what=$1 why=$2
  shift 2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing $what ($*) with apt-get" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
  else
    echo "setup: warning: $what not found and not root; install $* $why" >&2
  fi
}
if ! have_openblas || ! have_onednn; then
  apt_install "OpenBLAS and oneDNN" "for fast CPU math (and bf16 on the CPU)" \
    libopenblas-dev libdnnl-dev
fi

# OpenMPI: several processes (mpirun -np N checkerboard train/sample; tests/ranks.test.ts). The
# addon builds without it, as one process only.
have_mpi() { command -v mpirun >/dev/null && { [ -f /usr/include/x86_64-linux-gnu/mpi/mpi.h ] ||
  [ -f /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] || [ -f /usr/include/mpi.h ]; }; }
if ! have_mpi; then
  apt_install OpenMPI "for multi-process training and sampling" libopenmpi-dev openmpi-bin
fi

# /usr/bin/time (the `time` package): scripts/data-scale.ts reads peak memory from `time -v`.
if [ ! -x /usr/bin/time ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing time (/usr/bin/time, for scripts/data-scale.ts) with apt-get" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >&2
fi

bash scripts/build-addon.sh
