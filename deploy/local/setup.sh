#!/usr/bin/env bash
# One-time (and idempotent) set-up of a fresh machine: uv, the Python workspace, Kafka jars, FerretDB, HAProxy.
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
command -v uv >/dev/null || { log "installing uv from PyPI"; python3 -m pip install -q uv; }
(cd "$ROOT" && uv sync --frozen --quiet)
"$here/kafka.sh" install
"$here/mongo.sh" install
"$here/gateway.sh" install
"$here/toxiproxy.sh" install   # for the fault-injection suite (tests/integration/test_chaos.py, make chaos)
