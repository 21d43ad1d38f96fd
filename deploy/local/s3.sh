#!/usr/bin/env bash
# An S3-compatible object store for the recommend service's attachments when BLOB_STORE=s3 (R-POR-05): a tiny Go
# main (deploy/local/s3server/main.go) around github.com/johannesboyne/gofakes3 v1.2.0 with its in-memory backend,
# built from the Go module proxy into the cache like Toxiproxy (first run ~10 s). SeaweedFS was measured first and did
# not build within 5 minutes on the 2-core machine (~500 modules), so this one is used for local runs and tests; a
# cluster points S3_ENDPOINT at its real object store. Data is in memory: it is gone when the server stops.
# usage: s3.sh install|start|stop|status      env: S3_PORT (9000)
source "$(dirname "$0")/lib.sh"
S3SERVER_VERSION=gofakes3-v1.2.0-1   # bump when deploy/local/s3server changes
S3_PORT="${S3_PORT:-9000}"
BIN="$CACHE_DIR/s3server-$S3SERVER_VERSION/s3server"

install() {
  [[ -x "$BIN" ]] && return 0
  log "building the S3 test server ($S3SERVER_VERSION) from the Go module proxy (first run only, ~10 s)"
  mkdir -p "$(dirname "$BIN")"
  (cd "$(dirname "$0")/s3server" && go build -trimpath -o "$BIN.tmp" .)
  mv "$BIN.tmp" "$BIN"
}

start() {
  if is_running s3server; then log "already running on 127.0.0.1:$S3_PORT"; return 0; fi
  install
  start_bg s3server "$BIN" -addr "127.0.0.1:$S3_PORT"
  wait_port s3server "$S3_PORT" 30
  log "ready on http://127.0.0.1:$S3_PORT"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_bg s3server; log "stopped" ;;
  status) if is_running s3server && port_open "$S3_PORT"; then echo "s3server up 127.0.0.1:$S3_PORT"; else echo "s3server down"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
