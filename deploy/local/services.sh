#!/usr/bin/env bash
# The services of services/registry.toml as local processes (uvicorn from the uv workspace's .venv), one port each.
# usage: services.sh start|stop|status [NAME...]
#   env: SERVICE_PORT_BASE (8100: each service on 8100 + its registry port, identity 8101 … community 8108),
#        KAFKA_BOOTSTRAP, MONGO_URI
source "$(dirname "$0")/lib.sh"
load_registry  # SERVICES, SERVICE_PORT_OFFSET, SERVICE_UVICORN_ARGS
SERVICE_PORT_BASE="${SERVICE_PORT_BASE:-8100}"
export KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}"
export MONGO_URI="${MONGO_URI:-mongodb://127.0.0.1:${MONGO_PORT:-27017}}"
export JWT_PUBLIC_KEY_FILE="${JWT_PUBLIC_KEY_FILE:-$VAR_DIR/keys/jwt-public.pem}"
export JWT_PRIVATE_KEY_FILE="${JWT_PRIVATE_KEY_FILE:-$VAR_DIR/keys/jwt-private.pem}"  # identity signs with it
export JWT_JWKS_URL="${JWT_JWKS_URL:-http://127.0.0.1:$((SERVICE_PORT_BASE + SERVICE_PORT_OFFSET[identity]))/jwks.json}"  # keys by kid (R-EXT-04)
export OIDC_ISSUER="${OIDC_ISSUER:-http://127.0.0.1:${GATEWAY_PORT:-8080}}"
export SMTP_HOST="${SMTP_HOST:-127.0.0.1}" SMTP_PORT="${SMTP_PORT:-${MAIL_PORT:-8025}}"  # notifications' mail server

port_of() {
  [[ -n "${SERVICE_PORT_OFFSET[$1]:-}" ]] || { log "no service '$1' in services/registry.toml"; exit 2; }
  echo $((SERVICE_PORT_BASE + SERVICE_PORT_OFFSET[$1]))
}

ready() { curl -fsS -o /dev/null "http://127.0.0.1:$(port_of "$1")/readyz"; }

start_one() {
  local name=$1 port; port=$(port_of "$name")
  if is_running "svc-$name"; then log "$name already running on :$port"; return 0; fi
  SERVICE_NAME="$name" SERVICE_PORT="$port" start_bg "svc-$name" \
    "$ROOT/.venv/bin/uvicorn" ${SERVICE_UVICORN_ARGS[$name]} --host 127.0.0.1 --port "$port" --no-access-log
}

wait_ready() {
  local name=$1 i
  for ((i = 0; i < 300; i++)); do
    ready "$name" && return 0
    is_running "svc-$name" || { log "$name exited; see $VAR_DIR/log/svc-$name.log"; tail -n 20 "$VAR_DIR/log/svc-$name.log" >&2; return 1; }
    sleep 0.2
  done
  log "$name not ready after 60 s"; return 1
}

cmd=${1:-}; shift || true
names=("$@"); [[ ${#names[@]} -gt 0 ]] || names=("${SERVICES[@]}")
case "$cmd" in
  start) for n in "${names[@]}"; do start_one "$n"; done
         for n in "${names[@]}"; do wait_ready "$n"; done
         log "ready: ${names[*]}" ;;
  stop) for n in "${names[@]}"; do stop_bg "svc-$n"; done; log "stopped: ${names[*]}" ;;
  status) rc=0; for n in "${names[@]}"; do
            if is_running "svc-$n" && ready "$n"; then echo "$n up :$(port_of "$n")"; else echo "$n down"; rc=1; fi
          done; exit $rc ;;
  *) echo "usage: $0 start|stop|status [NAME...]" >&2; exit 2 ;;
esac
