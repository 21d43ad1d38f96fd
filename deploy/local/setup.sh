#!/usr/bin/env bash
# One-time (and idempotent) set-up of a fresh machine: uv, the Python workspace, Kafka jars, FerretDB, HAProxy,
# the portal's web bundle (npm ci + build) and Debian's Chromium for the browser tests (Playwright drives it).
# (With MONGO_BACKEND=postgresql, mongo.sh install also installs Debian's postgresql package.)
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
command -v uv >/dev/null || { log "installing uv from PyPI"; python3 -m pip install -q uv; }
(cd "$ROOT" && uv sync --frozen --quiet)
"$here/kafka.sh" install
"$here/mongo.sh" install
"$here/gateway.sh" install
"$here/web.sh" build
if ! command -v chromium >/dev/null; then
  log "installing Chromium and Japanese fonts from Debian (browser tests)"
  apt-get install -y chromium fonts-noto-cjk >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium fonts-noto-cjk >/dev/null; }
fi
if [ ! -f /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ]; then
  log "installing IPAGothic from Debian (TrueType, embedded in the local benchmark PDF, R-REC-06)"
  apt-get install -y fonts-ipafont-gothic >/dev/null || { apt-get update >/dev/null && apt-get install -y fonts-ipafont-gothic >/dev/null; }
fi
"$here/toxiproxy.sh" install   # for the fault-injection suite (tests/integration/test_chaos.py, make chaos)
"$here/s3.sh" install          # S3-compatible server for the BLOB_STORE=s3 tests (tests/integration/test_blobs_s3.py)
