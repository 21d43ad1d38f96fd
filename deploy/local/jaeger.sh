#!/usr/bin/env bash
# The local trace and metrics viewer: Jaeger v2, built from the Go module proxy into the cache like FerretDB
# (first run ~10 min on 2 cores, 120 MB). The services export to it over OTLP when `make up` started it.
# usage: jaeger.sh install|start|stop|status
#   env: OTLP_HTTP_PORT (4318), OTLP_GRPC_PORT (4317), JAEGER_QUERY_PORT (16686: query API and UI page),
#        JAEGER_METRICS_PORT (8889: every service's metrics, Prometheus text), JAEGER_HEALTH_PORT (13133)
source "$(dirname "$0")/lib.sh"
# The Jaeger repository tags its v2 backend (cmd/jaeger) as v1.x module versions: v1.76.0 is Jaeger v2.13.
JAEGER_VERSION=v1.76.0
export OTLP_HTTP_PORT="${OTLP_HTTP_PORT:-4318}" OTLP_GRPC_PORT="${OTLP_GRPC_PORT:-4317}"
export JAEGER_QUERY_PORT="${JAEGER_QUERY_PORT:-16686}" JAEGER_QUERY_GRPC_PORT="${JAEGER_QUERY_GRPC_PORT:-16685}"
export JAEGER_METRICS_PORT="${JAEGER_METRICS_PORT:-8889}" JAEGER_HEALTH_PORT="${JAEGER_HEALTH_PORT:-13133}"
BIN="$CACHE_DIR/jaeger-$JAEGER_VERSION/jaeger"

install() {
  [[ -x "$BIN" ]] && return 0
  log "building Jaeger $JAEGER_VERSION (v2) from the Go module proxy (first run only, ~10 min)"
  # Its go.mod has a replace directive, so `go install pkg@version` refuses it: build inside the downloaded module.
  local dir src
  dir=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  src=$(mktemp -d)
  cp -r "$dir/." "$src" && chmod -R u+w "$src"
  mkdir -p "$(dirname "$BIN")"
  (cd "$src" && go build -trimpath -o "$BIN.tmp" ./cmd/jaeger)
  mv "$BIN.tmp" "$BIN"
  rm -rf "$src"
}

start() {
  if is_running jaeger; then log "already running (OTLP http://127.0.0.1:$OTLP_HTTP_PORT)"; return 0; fi
  install
  start_bg jaeger "$BIN" --config "file:$ROOT/deploy/local/jaeger.yaml"
  wait_port jaeger "$OTLP_HTTP_PORT" 60
  log "ready: OTLP http://127.0.0.1:$OTLP_HTTP_PORT, traces http://127.0.0.1:$JAEGER_QUERY_PORT/api/traces?service=dispatch, metrics http://127.0.0.1:$JAEGER_METRICS_PORT/metrics"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_bg jaeger; log "stopped" ;;
  status) if is_running jaeger && port_open "$OTLP_HTTP_PORT"; then echo "jaeger up http://127.0.0.1:$JAEGER_QUERY_PORT"; else echo "jaeger down"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
