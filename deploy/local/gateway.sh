#!/usr/bin/env bash
# API gateway: Debian's HAProxy 2.6 on 127.0.0.1 (JWT check, deny list, /api/NAME routing, rate limits, request ids,
# JSON access log), and next to it the deny-list sync (servicekit.gateway_sync: identity.events -> the map of revoked
# tokens, clients and accounts HAProxy refuses; it starts first and HAProxy starts once the map is rebuilt).
# usage: gateway.sh install|keys|start|reload|check|stop|status|gen-cfg   (gen-cfg: rewrite deploy/compose/haproxy.cfg,
#   deploy/k8s/haproxy.cfg and the other files generated from services/registry.toml: servicekit.registry render)
# env: GATEWAY_PORT (8080), SERVICE_PORT_BASE (8100), GATEWAY_RATE_LIMIT (50 requests/s per user of a client),
#      GATEWAY_CLIENT_RATE_LIMIT (1000 requests/s per client), GATEWAY_{SANDBOX,STANDARD,PREMIUM}_{RATE,QUOTA} (a partner
#      client's requests/s and per 24 h by the `tier` in its tokens: 5/1,000, 50/100,000, 200/1,000,000), JWT_ISSUER (the only accepted token `iss`;
#      default: OIDC_ISSUER, else http://127.0.0.1:GATEWAY_PORT, as the services and identity default to),
#      KAFKA_BOOTSTRAP (127.0.0.1:KAFKA_PORT) and TOPIC_PREFIX for the deny-list sync,
#      JWT_JWKS_URL (identity's JWKS; the sync keeps its keys in $VAR_DIR/gateway/jwks and runs `gateway.sh reload`
#      when they change, R-EXT-04; default: identity's port) and GATEWAY_JWKS_POLL_SECONDS (2)
source "$(dirname "$0")/lib.sh"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
GATEWAY_RATE_LIMIT="${GATEWAY_RATE_LIMIT:-50}"
GATEWAY_CLIENT_RATE_LIMIT="${GATEWAY_CLIENT_RATE_LIMIT:-1000}"
# rate tiers of partner clients (R-EXT-04): requests/s and requests per 24 h per client
GATEWAY_SANDBOX_RATE="${GATEWAY_SANDBOX_RATE:-5}" GATEWAY_SANDBOX_QUOTA="${GATEWAY_SANDBOX_QUOTA:-1000}"
GATEWAY_STANDARD_RATE="${GATEWAY_STANDARD_RATE:-50}" GATEWAY_STANDARD_QUOTA="${GATEWAY_STANDARD_QUOTA:-100000}"
GATEWAY_PREMIUM_RATE="${GATEWAY_PREMIUM_RATE:-200}" GATEWAY_PREMIUM_QUOTA="${GATEWAY_PREMIUM_QUOTA:-1000000}"
JWT_ISSUER="${JWT_ISSUER:-${OIDC_ISSUER:-http://127.0.0.1:$GATEWAY_PORT}}"
CONF="$VAR_DIR/gateway/haproxy.cfg"
KEYS="$VAR_DIR/keys"
DENY_MAP="$VAR_DIR/gateway/deny.map"
ADMIN_SOCKET="$VAR_DIR/run/gateway.sock"
JWKS_DIR="$VAR_DIR/gateway/jwks"
# same numbering as services.sh: SERVICE_PORT_BASE + each service's port in services/registry.toml (8101 … by default);
# the portal as web.sh (+ 10)
SERVICE_PORT_BASE="${SERVICE_PORT_BASE:-8100}"
load_registry
declare -A PORTS=([web]=${WEB_PORT:-$((SERVICE_PORT_BASE + 10))})  # web: the portal (web.sh)
for _name in "${SERVICES[@]}"; do PORTS[$_name]=$((SERVICE_PORT_BASE + SERVICE_PORT_OFFSET[$_name])); done
JWT_JWKS_URL="${JWT_JWKS_URL:-http://127.0.0.1:${PORTS[identity]}/jwks.json}"

install() {
  if ! command -v haproxy >/dev/null; then
    log "installing haproxy from Debian"
    apt-get install -y haproxy >/dev/null || { apt-get update >/dev/null && apt-get install -y haproxy >/dev/null; }
  fi
  # the package may start the system instance (port 80, /etc/haproxy); we only ever run our own
  if [[ -f /run/haproxy.pid ]] && kill -0 "$(cat /run/haproxy.pid)" 2>/dev/null; then
    log "stopping the Debian system haproxy"
    service haproxy stop >/dev/null 2>&1 || kill "$(cat /run/haproxy.pid)" 2>/dev/null || true
  fi
  keys
}

# dev RS256 key pair: private key (for whoever mints tokens), self-signed cert, public key (what HAProxy 2.6 loads)
keys() {
  [[ -f "$KEYS/jwt-private.pem" && -f "$KEYS/jwt-cert.pem" && -f "$KEYS/jwt-public.pem" ]] && return 0
  log "generating dev JWT key pair in $KEYS"
  mkdir -p "$KEYS"
  [[ -f "$KEYS/jwt-private.pem" ]] || (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$KEYS/jwt-private.pem" 2>/dev/null)
  openssl req -new -x509 -key "$KEYS/jwt-private.pem" -subj "/CN=smeportal-dev" -days 3650 -out "$KEYS/jwt-cert.pem"
  openssl pkey -in "$KEYS/jwt-private.pem" -pubout -out "$KEYS/jwt-public.pem"
}

# render_local -> the local config on stdout: deploy/local/haproxy.cfg.tmpl filled by servicekit.registry (the
# services' routes and backends from services/registry.toml; a jwt_verify line per kid key in $JWKS_DIR)
render_local() {
  registry haproxy local "BIND=127.0.0.1:$GATEWAY_PORT" "JWT_KEY=$KEYS/jwt-public.pem" RESOLVERS= "NAMESERVER=$DOCKER_DNS" \
    "DENY_MAP=$DENY_MAP" "ADMIN_SOCKET=$ADMIN_SOCKET" "KID_KEYS_DIR=$JWKS_DIR" "JWT_ISSUER=$JWT_ISSUER" \
    "SERVICE_PORT_BASE=$SERVICE_PORT_BASE" "WEB_PORT=${PORTS[web]}" \
    "RATE_LIMIT=$GATEWAY_RATE_LIMIT" "CLIENT_RATE_LIMIT=$GATEWAY_CLIENT_RATE_LIMIT" \
    "SANDBOX_RATE=$GATEWAY_SANDBOX_RATE" "SANDBOX_QUOTA=$GATEWAY_SANDBOX_QUOTA" \
    "STANDARD_RATE=$GATEWAY_STANDARD_RATE" "STANDARD_QUOTA=$GATEWAY_STANDARD_QUOTA" \
    "PREMIUM_RATE=$GATEWAY_PREMIUM_RATE" "PREMIUM_QUOTA=$GATEWAY_PREMIUM_QUOTA"
}
DOCKER_DNS="nameserver docker 127.0.0.11:53"

# the deny-list sync: replays identity.events into $DENY_MAP (HAProxy loads it when it starts), then adds each new
# revocation to the file and, through $ADMIN_SOCKET, to the running HAProxy
sync_start() {
  if is_running gateway-sync; then return 0; fi
  mkdir -p "$(dirname "$DENY_MAP")"
  rm -f "$DENY_MAP"  # written again once the replay is complete: its presence says "rebuilt"
  KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}" SERVICE_NAME=gateway-sync \
    GATEWAY_DENY_MAP="$DENY_MAP" GATEWAY_ADMIN_SOCKET="$ADMIN_SOCKET" \
    JWT_JWKS_URL="$JWT_JWKS_URL" GATEWAY_JWKS_DIR="$JWKS_DIR" GATEWAY_RELOAD_COMMAND="$(printf %q "$ROOT/deploy/local/gateway.sh") reload" \
    VAR_DIR="$VAR_DIR" GATEWAY_PORT="$GATEWAY_PORT" SERVICE_PORT_BASE="$SERVICE_PORT_BASE" WEB_PORT="${WEB_PORT:-}" JWT_ISSUER="$JWT_ISSUER" \
    GATEWAY_RATE_LIMIT="$GATEWAY_RATE_LIMIT" GATEWAY_CLIENT_RATE_LIMIT="$GATEWAY_CLIENT_RATE_LIMIT" \
    GATEWAY_SANDBOX_RATE="$GATEWAY_SANDBOX_RATE" GATEWAY_SANDBOX_QUOTA="$GATEWAY_SANDBOX_QUOTA" \
    GATEWAY_STANDARD_RATE="$GATEWAY_STANDARD_RATE" GATEWAY_STANDARD_QUOTA="$GATEWAY_STANDARD_QUOTA" \
    GATEWAY_PREMIUM_RATE="$GATEWAY_PREMIUM_RATE" GATEWAY_PREMIUM_QUOTA="$GATEWAY_PREMIUM_QUOTA" \
    start_bg gateway-sync "$ROOT/.venv/bin/python" -m servicekit.gateway_sync
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -f "$DENY_MAP" ]] && return 0
    is_running gateway-sync || { log "the deny-list sync exited; last log lines:"; tail -n 30 "$VAR_DIR/log/gateway-sync.log" >&2; return 1; }
    sleep 0.2
  done
  log "the deny-list sync did not rebuild $DENY_MAP within 60 s"; tail -n 30 "$VAR_DIR/log/gateway-sync.log" >&2; return 1
}

# the local config rendered and checked, then moved into place
render_checked() {
  mkdir -p "$(dirname "$CONF")"
  render_local > "$CONF.new"
  # HAProxy only warns about an unreadable JWT key (then rejects every token), so warnings count as errors
  local out; out=$(haproxy -c -f "$CONF.new" 2>&1) && ! grep -q WARNING <<<"$out" || { log "invalid config $CONF.new:"; echo "$out" >&2; return 1; }
  mv "$CONF.new" "$CONF"
}

# the config rendered again (e.g. with the keys of a rotation) and taken up by the running HAProxy without a refused
# connection; nothing to do when HAProxy is not running (start renders the current keys)
reload() {
  is_running gateway || return 0
  render_checked
  kill -USR2 "$(cat "$VAR_DIR/run/gateway.pid")"
  log "reloaded ($(ls "$JWKS_DIR" 2>/dev/null | wc -l) keys from the JWKS)"
}

start() {
  sync_start
  if is_running gateway; then log "already running on 127.0.0.1:$GATEWAY_PORT"; return 0; fi
  install
  if port_open "$GATEWAY_PORT"; then log "port $GATEWAY_PORT is taken by another process"; return 1; fi
  render_checked
  # master-worker (-W): `reload` (SIGUSR2) starts new workers with the new config; the old ones finish their requests
  start_bg gateway haproxy -W -db -f "$CONF"
  wait_port gateway "$GATEWAY_PORT" 20
  log "ready on 127.0.0.1:$GATEWAY_PORT (access log: $VAR_DIR/log/gateway.log, deny list: $VAR_DIR/log/gateway-sync.log)"
}

case "${1:-}" in
  install) install ;;
  keys) keys ;;
  start) start ;;
  reload) reload ;;
  check) render_checked; log "config valid: $CONF" ;;  # render the local config (keys of $JWKS_DIR included) and check it, start nothing
  stop) stop_bg gateway; stop_bg gateway-sync; log "stopped" ;;
  status) if is_running gateway && port_open "$GATEWAY_PORT" && is_running gateway-sync; then echo "gateway up 127.0.0.1:$GATEWAY_PORT"
          else echo "gateway down$(is_running gateway-sync || echo " (deny-list sync not running)")"; exit 1; fi ;;
  # regenerates the checked-in gateway configs for compose and k8s (and the other files generated from
  # services/registry.toml): the same as `python -m servicekit.registry render`
  gen-cfg) registry render ;;
  *) echo "usage: $0 install|keys|start|reload|check|stop|status|gen-cfg" >&2; exit 2 ;;
esac
