#!/usr/bin/env bash
# The whole platform on this machine: Kafka, the MongoDB-wire server, the services of services/registry.toml, the gateway, the portal.
# usage: platform.sh up|down|status|wipe     (make up / make down call this)
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
MAIL_PORT="${MAIL_PORT:-8025}"

# A local SMTP server that accepts every e-mail and prints it to var/log/mail.log (aiosmtpd, from the
# workspace), so the notifications service delivers for real; point SMTP_HOST/SMTP_PORT elsewhere to use yours.
mail() {
  case "$1" in
    start) if is_running mail; then return 0; fi
           start_bg mail "$ROOT/.venv/bin/python" -m aiosmtpd -n -c aiosmtpd.handlers.Debugging -l "127.0.0.1:$MAIL_PORT"
           wait_port mail "$MAIL_PORT" 30; log "mail catcher on 127.0.0.1:$MAIL_PORT (var/log/mail.log)" ;;
    stop) stop_bg mail ;;
  esac
}

up() {
  if "$here/services.sh" status >/dev/null 2>&1 && "$here/gateway.sh" status >/dev/null 2>&1; then
    echo "The platform is already up; nothing changed. Gateway: http://127.0.0.1:$GATEWAY_PORT"; return 0
  fi
  "$here/setup.sh"
  "$here/kafka.sh" start
  "$here/mongo.sh" start
  "$here/gateway.sh" keys
  mail start
  # The trace and metrics viewer (Jaeger v2, built on first use): the services export to it over OTLP.
  # VIEWER=0 skips it; OTEL_EXPORTER_OTLP_ENDPOINT set by you points the services at your own collector instead.
  if [[ "${VIEWER:-1}" != 0 && -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]]; then
    "$here/jaeger.sh" start
    export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:${OTLP_HTTP_PORT:-4318}"
  fi
  "$here/services.sh" start
  "$here/gateway.sh" start
  "$here/web.sh" start
  "$ROOT/.venv/bin/python" "$here/demo.py"
  echo "Platform up. Portal: http://127.0.0.1:$GATEWAY_PORT/  Gateway: http://127.0.0.1:$GATEWAY_PORT  (health: /api/<service>/healthz, OIDC: /.well-known/openid-configuration)"
  echo "Logs: $VAR_DIR/log (e-mails: mail.log)   Stop: make down"
  if "$here/jaeger.sh" status >/dev/null 2>&1; then
    echo "Traces: http://127.0.0.1:${JAEGER_QUERY_PORT:-16686}/api/traces?service=dispatch   Metrics: http://127.0.0.1:${JAEGER_METRICS_PORT:-8889}/metrics"
  fi
}

case "${1:-}" in
  up) up ;;
  down) "$here/web.sh" stop; "$here/gateway.sh" stop; "$here/services.sh" stop; mail stop; "$here/jaeger.sh" stop; "$here/mongo.sh" stop; "$here/kafka.sh" stop ;;
  status) "$here/kafka.sh" status; "$here/mongo.sh" status; "$here/services.sh" status; "$here/gateway.sh" status; "$here/web.sh" status
          "$here/jaeger.sh" status || true ;;
  wipe) "$0" down; "$here/kafka.sh" wipe; "$here/mongo.sh" wipe ;;
  *) echo "usage: $0 up|down|status|wipe" >&2; exit 2 ;;
esac
