#!/usr/bin/env bash
# Build airpack's test images from scratch (no base image is pulled) with `docker build`.
#
#   scripts/build-test-images.sh [small|llama|all]     (default: small)
#
#   small  airpack-test/busybox:1       FROM scratch: /bin/busybox (+ sh, wget links), /tmp     (1 layer)
#          airpack-test/busybox-data:1  busybox + a data layer                                  (2 layers)
#   llama  airpack-test/llama-server:<ver>  FROM scratch: /app/llama-server, /bin/busybox, /tmp, EXPOSE 8080
#
#   LLAMA_SERVER_BIN       the static llama-server binary (default: the output of build-llama-server.sh,
#                          which builds it when not cached; ~11 minutes on 2 cores)
#   LLAMA_SERVER_VERSION   image tag (default: the llama.cpp version in the binary's cache path, else "dev")
#   BUSYBOX                a static busybox (default: /bin/busybox from Debian's busybox-static)
#   DOCKER_HOST            the engine to build in
#
# Prints one "name tag" line per image on stdout; build logs go to stderr. File modes and mtimes in the
# build contexts are fixed (SOURCE_DATE_EPOCH, default 0), so layer contents are reproducible.
set -euo pipefail

which="${1:-small}"
here="$(cd "$(dirname "$0")/.." && pwd)"
busybox="${BUSYBOX:-/bin/busybox}"
epoch="${SOURCE_DATE_EPOCH:-0}"
export DOCKER_BUILDKIT=0  # the classic builder: no BuildKit/buildx needed, nothing pulled for FROM scratch

if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  echo "error: $busybox is not a static busybox (install Debian's busybox-static)" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/airpack-images.XXXXXX")"
trap 'rm -rf "$work"' EXIT

rootfs_base() {  # $1: rootfs dir
  mkdir -p "$1/bin" "$1/tmp"
  cp "$busybox" "$1/bin/busybox"
  chmod 0755 "$1/bin/busybox"
  ln -s busybox "$1/bin/sh"
  ln -s busybox "$1/bin/wget"
  chmod 1777 "$1/tmp"
}

normalise() {  # fixed mtimes everywhere (links too) so the layer tar is the same on every build
  find "$1" -exec touch -h -d "@$epoch" {} +
}

build() {  # $1: name  $2: tag  $3: context  [extra docker build args]
  local name="$1" tag="$2" ctx="$3"
  shift 3
  normalise "$ctx"
  docker build --quiet --label "org.opencontainers.image.source=airpack-test" -t "$tag" "$@" "$ctx" >&2
  echo "$name $tag"
}

if [ "$which" = small ] || [ "$which" = all ]; then
  ctx="$work/busybox"
  mkdir -p "$ctx"
  cp "$here/images/busybox/Dockerfile" "$ctx/"
  rootfs_base "$ctx/rootfs"
  build busybox airpack-test/busybox:1 "$ctx"

  ctx="$work/busybox-data"
  mkdir -p "$ctx/data"
  cp "$here/images/busybox-data/Dockerfile" "$ctx/"
  # 1 MiB of deterministic, poorly compressible bytes (sha256 chain), so the layer has some size.
  python3 - "$ctx/data/blob.bin" <<'PY'
import hashlib, sys
out, block = bytearray(), b"airpack-test"
while len(out) < 1 << 20:
    block = hashlib.sha256(block).digest()
    out += block
open(sys.argv[1], "wb").write(out)
PY
  echo "airpack test data" > "$ctx/data/README"
  build busybox-data airpack-test/busybox-data:1 "$ctx" --build-arg BASE=airpack-test/busybox:1
fi

if [ "$which" = llama ] || [ "$which" = all ]; then
  bin="${LLAMA_SERVER_BIN:-}"
  if [ -z "$bin" ]; then
    bin="$("$here/scripts/build-llama-server.sh")"
  fi
  if ! file -L "$bin" | grep -q 'statically linked'; then
    echo "error: $bin is not a statically linked executable" >&2
    exit 1
  fi
  ver="${LLAMA_SERVER_VERSION:-}"
  if [ -z "$ver" ]; then
    ver="$(basename "$(dirname "$bin")" | sed -n 's/^llama-server-\([0-9][0-9.]*\)-.*/\1/p')"
    ver="${ver:-dev}"
  fi
  ctx="$work/llama-server"
  mkdir -p "$ctx/rootfs/app"
  cp "$here/images/llama-server/Dockerfile" "$ctx/"
  rootfs_base "$ctx/rootfs"
  cp "$bin" "$ctx/rootfs/app/llama-server"
  chmod 0755 "$ctx/rootfs/app/llama-server"
  mkdir -p "$ctx/rootfs/usr/bin"
  install -m 0755 "$here/images/llama-server/curl" "$ctx/rootfs/usr/bin/curl"
  build llama-server "airpack-test/llama-server:$ver" "$ctx"
fi
