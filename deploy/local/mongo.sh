#!/usr/bin/env bash
# A MongoDB-wire server on 127.0.0.1: FerretDB v1 with its embedded SQLite backend, built from the Go module proxy.
# usage: mongo.sh install|start|stop|wipe|status      env: MONGO_PORT (27017)
source "$(dirname "$0")/lib.sh"
FERRETDB_VERSION=v1.24.0
MONGO_PORT="${MONGO_PORT:-27017}"
PATCH=atomic-writes-2-id-index   # bump when deploy/local/ferretdb-atomic.go or the patches below change
BIN="$CACHE_DIR/ferretdb-$FERRETDB_VERSION-$PATCH/ferretdb"
DATA="$VAR_DIR/mongo/data"

install() {
  [[ -x "$BIN" ]] && return 0
  log "building FerretDB $FERRETDB_VERSION from the Go module proxy (first run only, ~3 min)"
  # `go install pkg@version` asks the proxy for the module's version list, which it refuses for
  # FerretDB; downloading the exact version and building inside it avoids that query.
  local dir src
  dir=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  src=$(mktemp -d)
  cp -r "$dir/." "$src" && chmod -R u+w "$src"
  echo "$FERRETDB_VERSION" > "$src/build/version/version.txt"   # normally written by its Taskfile from git
  # single-document writes made atomic, as on MongoDB (why: deploy/local/ferretdb-atomic.go)
  cp "$(dirname "$0")/ferretdb-atomic.go" "$src/internal/handler/smeportal_atomic.go"
  local f line
  for f in "msg_update.go:matched, modified, upserted, err := h.updateDocument(connCtx, params)" \
           "msg_findandmodify.go:res, err := h.findAndModifyDocument(connCtx, params)" \
           "msg_delete.go:for i, p := range params.Deletes {"; do
    line="${f#*:}"
    sed -i "/^\t${line//[/\\[}/i defer smeportalLock(params.DB, params.Collection)()" "$src/internal/handler/${f%%:*}"
    grep -q smeportalLock "$src/internal/handler/${f%%:*}" || { log "could not patch ${f%%:*}"; return 1; }
  done
  # Lookups by _id use the _id index. FerretDB 1.24's SQLite backend creates the index on the expression
  # `_ferretdb_sjson->"_id"` but queries `_ferretdb_sjson->'$._id'`, which SQLite does not match to it, so
  # every find/update/delete by _id scanned the whole table (O(collection size): 86 updates/s at 5,000
  # documents, 942/s at 100). It also pushes the _id condition down when the filter has more fields
  # (`{_id, v}` compare-and-set, `{_id, _seen: {$ne}}`): FerretDB filters every document again anyway.
  sed -i "s|IDColumn = DefaultColumn + \"->'\$._id'\"|IDColumn = DefaultColumn + \"->'_id'\"|" \
    "$src/internal/backends/sqlite/metadata/metadata.go"
  sed -i 's|if params.Filter.Len() == 1 {|if params.Filter.Len() >= 1 {|' "$src/internal/backends/sqlite/collection.go"
  grep -q "IDColumn = DefaultColumn + \"->'_id'\"" "$src/internal/backends/sqlite/metadata/metadata.go" &&
    [[ $(grep -c 'params.Filter.Len() >= 1' "$src/internal/backends/sqlite/collection.go") == 2 ]] ||
    { log "could not patch the _id lookups"; return 1; }
  mkdir -p "$(dirname "$BIN")"
  (cd "$src" && go build -trimpath -o "$BIN.tmp" ./cmd/ferretdb)
  mv "$BIN.tmp" "$BIN"
  rm -rf "$src"
}

start() {
  if is_running mongo; then log "already running on 127.0.0.1:$MONGO_PORT"; return 0; fi
  install
  mkdir -p "$DATA"
  start_bg mongo "$BIN" --handler=sqlite --sqlite-url="file:$DATA/" \
    --listen-addr="127.0.0.1:$MONGO_PORT" --debug-addr=- --telemetry=disable \
    --log-level=warn --state-dir="$VAR_DIR/mongo"
  wait_port mongo "$MONGO_PORT" 60
  log "ready on mongodb://127.0.0.1:$MONGO_PORT"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_bg mongo; log "stopped" ;;
  wipe) stop_bg mongo; rm -rf "$VAR_DIR/mongo"; log "data wiped" ;;
  status) if is_running mongo && port_open "$MONGO_PORT"; then echo "mongo up 127.0.0.1:$MONGO_PORT"; else echo "mongo down"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|wipe|status" >&2; exit 2 ;;
esac
