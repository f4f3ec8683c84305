#!/usr/bin/env bash
# The test command (README): set up what the tests need, then run the whole suite.
# Unit tests open no sockets; integration tests start real servers (dockerd, docker-registry, a hub server)
# on 127.0.0.1 and stop them. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_SERVER_BIN="$(bash scripts/setup.sh)"
export LLAMA_SERVER_BIN
# pytest exits 5 when it collected no test: with `set -e` that fails this script, as it should.
.venv/bin/python -m pytest -p no:cacheprovider "$@"
