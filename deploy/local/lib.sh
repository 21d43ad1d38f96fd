# Shared helpers for the deploy/local scripts: paths, pid files, port waits.
# Every script keeps its data, logs and pids under $VAR_DIR (default: <repo>/var, git-ignored)
# and its downloads under $CACHE_DIR (default: <repo>/var/cache), so a second VAR_DIR
# (the test suite uses var/test) reuses the downloads without touching the first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VAR_DIR="${VAR_DIR:-$ROOT/var}"
CACHE_DIR="${CACHE_DIR:-$ROOT/var/cache}"
mkdir -p "$VAR_DIR/log" "$VAR_DIR/run" "$CACHE_DIR"

log() { printf '%s %s\n' "[$(basename "$0" .sh)]" "$*" >&2; }

# the service registry (services/registry.toml) through servicekit/src/servicekit/registry.py, which needs only the
# standard library: the workspace's Python when it is installed, else python3 (>= 3.11)
REGISTRY_PYTHON="$ROOT/.venv/bin/python"; [[ -x "$REGISTRY_PYTHON" ]] || REGISTRY_PYTHON=python3
registry() { "$REGISTRY_PYTHON" "$ROOT/servicekit/src/servicekit/registry.py" "$@"; }
# load_registry -> SERVICES (port order), GATEWAY_SERVICES, SERVICE_PORT_OFFSET[name], SERVICE_UVICORN_ARGS[name];
# one Python start per script run
load_registry() {
  local decl; decl=$(registry bash) || { log "cannot read services/registry.toml"; exit 1; }
  eval "$decl"
}

# pid_alive PID -> 0 when PID is a live process. A process just killed (SIGKILL) stays a zombie until its parent
# (often init, which may take a while) reaps it, and kill -0 still succeeds on a zombie; so its state in /proc
# is checked too. Without this, `start` right after a kill saw the dead process "running" and started nothing.
pid_alive() {
  local pid=$1 state
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -r "/proc/$pid/stat" ]] || return 0   # no procfs (macOS): kill -0 is all we know
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# is_running NAME -> 0 when the pid file names a live process
is_running() {
  local pidfile="$VAR_DIR/run/$1.pid"
  [[ -f "$pidfile" ]] && pid_alive "$(cat "$pidfile")"
}

# port_open PORT -> 0 when something accepts TCP connections on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port NAME PORT SECONDS -> waits until the port accepts, failing early if the process died
wait_port() {
  local name=$1 port=$2 secs=$3 i
  for ((i = 0; i < secs * 5; i++)); do
    port_open "$port" && return 0
    if ! is_running "$name"; then
      log "$name exited while starting; last log lines:"; tail -n 30 "$VAR_DIR/log/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  log "$name did not open port $port within ${secs}s"; tail -n 30 "$VAR_DIR/log/$name.log" >&2 || true
  return 1
}

# start_bg NAME CMD... -> starts CMD detached, logging to var/log/NAME.log, pid in var/run/NAME.pid
start_bg() {
  local name=$1; shift
  setsid "$@" >>"$VAR_DIR/log/$name.log" 2>&1 < /dev/null &
  echo $! > "$VAR_DIR/run/$name.pid"
}

# stop_bg NAME -> TERM, wait up to 20 s, then KILL; removes the pid file
stop_bg() {
  local name=$1 pidfile="$VAR_DIR/run/$1.pid" pid i
  [[ -f "$pidfile" ]] || return 0
  pid=$(cat "$pidfile")
  if pid_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do pid_alive "$pid" || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
