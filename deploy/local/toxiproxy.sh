#!/usr/bin/env bash
# Toxiproxy (fault injection: latency, cut connections between a service and a dependency), built from the Go module
# proxy into the cache like FerretDB. Used by the fault-injection suite (`make chaos`, tests/integration/test_chaos.py).
# usage: toxiproxy.sh install|start|stop|status      env: TOXIPROXY_PORT (8474, its HTTP API)
source "$(dirname "$0")/lib.sh"
TOXIPROXY_VERSION=v2.12.0
TOXIPROXY_PORT="${TOXIPROXY_PORT:-8474}"
BIN="$CACHE_DIR/toxiproxy-$TOXIPROXY_VERSION/toxiproxy-server"

install() {
  [[ -x "$BIN" ]] && return 0
  log "building Toxiproxy $TOXIPROXY_VERSION from the Go module proxy (first run only, ~1 min)"
  mkdir -p "$(dirname "$BIN")"
  GOBIN="$(dirname "$BIN")" go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
  mv "$(dirname "$BIN")/server" "$BIN"
}

start() {
  if is_running toxiproxy; then log "already running on 127.0.0.1:$TOXIPROXY_PORT"; return 0; fi
  install
  start_bg toxiproxy "$BIN" -host 127.0.0.1 -port "$TOXIPROXY_PORT"
  wait_port toxiproxy "$TOXIPROXY_PORT" 30
  log "ready on http://127.0.0.1:$TOXIPROXY_PORT"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_bg toxiproxy; log "stopped" ;;
  status) if is_running toxiproxy && port_open "$TOXIPROXY_PORT"; then echo "toxiproxy up 127.0.0.1:$TOXIPROXY_PORT"; else echo "toxiproxy down"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
