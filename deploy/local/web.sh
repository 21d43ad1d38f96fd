#!/usr/bin/env bash
# The portal's web front end: builds web/ (TypeScript + Vite, from the npm registry with the lock file) and serves the
# bundle on loopback for the gateway, which routes every path outside /api/ and /.well-known/ to it.
# usage: web.sh build|start|stop|status    env: WEB_PORT (SERVICE_PORT_BASE + 10 = 8110), WEB_CONFIG_FILE
#   ($VAR_DIR/web/config.json: the portal's OAuth client id, written by demo.py or the tests)
source "$(dirname "$0")/lib.sh"
SERVICE_PORT_BASE="${SERVICE_PORT_BASE:-8100}"
WEB_PORT="${WEB_PORT:-$((SERVICE_PORT_BASE + 10))}"
WEB="$ROOT/web"

build() {
  command -v npm >/dev/null || { log "installing Node.js and npm from Debian"; apt-get install -y nodejs npm >/dev/null || { apt-get update >/dev/null && apt-get install -y nodejs npm >/dev/null; }; }
  if [[ ! -d "$WEB/node_modules" || "$WEB/package-lock.json" -nt "$WEB/node_modules/.package-lock.json" ]]; then
    log "installing the web build tools (npm ci)"; (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
  # rebuild when any source is newer than the bundle
  if [[ ! -f "$WEB/dist/index.html" ]] || [[ -n "$(find "$WEB/src" "$WEB/index.html" "$WEB/package-lock.json" -newer "$WEB/dist/index.html" -print -quit)" ]]; then
    log "building the web bundle"; (cd "$WEB" && npm run --silent build >&2)
  fi
}

start() {
  if is_running web; then log "already running on 127.0.0.1:$WEB_PORT"; return 0; fi
  build
  mkdir -p "$VAR_DIR/web"
  WEB_PORT="$WEB_PORT" WEB_CONFIG_FILE="${WEB_CONFIG_FILE:-$VAR_DIR/web/config.json}" start_bg web "$ROOT/.venv/bin/python" "$WEB/serve.py"
  wait_port web "$WEB_PORT" 20
  log "portal bundle served on 127.0.0.1:$WEB_PORT (open it through the gateway)"
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop_bg web; log "stopped" ;;
  status) if is_running web && port_open "$WEB_PORT"; then echo "web up 127.0.0.1:$WEB_PORT"; else echo "web down"; exit 1; fi ;;
  *) echo "usage: $0 build|start|stop|status" >&2; exit 2 ;;
esac
