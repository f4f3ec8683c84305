#!/usr/bin/env bash
# A local wheelhouse for the tests of a bundle's tool/ (issue 13): every far-side dependency of airpack as a
# binary wheel for CPython 3.11, 3.12, 3.13 on linux x86_64 and aarch64 (glibc 2.28 tags), plus pip, fetched
# once with pip's configured index into ~/.cache/airpack-build/wheels-<key> (key: the dependency list).
# Tests then build tool/ from it with --no-index --find-links and never reach an index. Prints its path and
# records it in .venv/airpack-wheelhouse.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
mapfile -t deps < <("$py" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
key="$(printf '%s\n' "${deps[@]}" pip 3.11 3.12 3.13 v1 | sha256sum | cut -c1-16)"
dest="${AIRPACK_BUILD_CACHE:-$HOME/.cache/airpack-build}/wheels-$key"
if [ ! -f "$dest/.complete" ]; then
  mkdir -p "$dest"
  for platform in linux/amd64 linux/arm64; do
    mapfile -t tags < <("$py" -c 'import sys; from airpack.tool import platform_tags; print("\n".join(platform_tags(sys.argv[1])))' "$platform")
    for version in 3.11 3.12 3.13; do
      echo "tool-wheelhouse: $platform CPython $version" >&2
      "$py" -m pip download -q --disable-pip-version-check --progress-bar off --dest "$dest" --only-binary=:all: \
        --implementation cp --python-version "$version" "${tags[@]/#/--platform=}" "${deps[@]}" pip >&2
    done
  done
  touch "$dest/.complete"
fi
printf '%s\n' "$dest" > .venv/airpack-wheelhouse
echo "$dest"
