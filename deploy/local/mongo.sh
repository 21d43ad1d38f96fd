#!/usr/bin/env bash
# A MongoDB-wire server on 127.0.0.1: FerretDB v1, built from the Go module proxy, with its embedded SQLite backend
# (default) or Debian's PostgreSQL (MONGO_BACKEND=postgresql: a cluster of its own under $VAR_DIR/mongo/pg on
# MONGO_PG_PORT, unix socket in $VAR_DIR/mongo/pg-run, trust auth on loopback; figures in the README).
# usage: mongo.sh install|start|stop|wipe|status
# env: MONGO_PORT (27017), MONGO_BACKEND (sqlite|postgresql), MONGO_PG_PORT (15432),
#      MONGO_SQLITE_SYNC (normal|full: SQLite's `synchronous`; see the MongoDB section of the README),
#      MONGO_GOGC (400: the Go collector's target for the server, see start)
source "$(dirname "$0")/lib.sh"
FERRETDB_VERSION=v1.24.0
GO_JSON_VERSION=v0.10.5
MONGO_PORT="${MONGO_PORT:-27017}"
MONGO_BACKEND="${MONGO_BACKEND:-sqlite}"
MONGO_PG_PORT="${MONGO_PG_PORT:-15432}"
MONGO_SQLITE_SYNC="${MONGO_SQLITE_SYNC:-normal}"
PG_DATA="$VAR_DIR/mongo/pg"
PG_RUN="$VAR_DIR/mongo/pg-run"
case "$MONGO_BACKEND" in sqlite | postgresql) ;; *) log "MONGO_BACKEND must be sqlite or postgresql"; exit 2 ;; esac
case "$MONGO_SQLITE_SYNC" in normal | full) ;; *) log "MONGO_SQLITE_SYNC must be normal or full"; exit 2 ;; esac
PATCH=atomic-writes-4-id-in-gojson-untracked-ix-prefilter-2   # bump when deploy/local/ferretdb-atomic.go or the patches below change
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
  # An update command closes each statement's query when the statement is done. FerretDB 1.24 defers that close to
  # the end of the command (`defer closer.Close()` inside its loop), so every statement holds one of the SQLite
  # pool's 100 connections until the last: an update command of more than 100 statements (a bulk write) waited
  # forever for a 101st, holding the collection's write lock and the whole pool (every later command hung).
  sed -i -e '/^\t\tdefer closer.Close()$/d' \
    -e '/^\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)$/a\\t\tcloser.Close()' \
    "$src/internal/handler/msg_update.go"
  grep -q '^		closer.Close()$' "$src/internal/handler/msg_update.go" &&
    ! grep -q 'defer closer.Close()' "$src/internal/handler/msg_update.go" ||
    { log "could not patch the update command's query close"; return 1; }
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
  # `_id: {$in: [...]}` is pushed down to SQLite too (why: deploy/local/ferretdb-idin.go).
  cp "$(dirname "$0")/ferretdb-idin.go" "$src/internal/backends/sqlite/smeportal_idin.go"
  sed -i '/^\t\t\targs = \[\]any{string(must.NotFail(sjson.MarshalSingleValue(v)))}$/a\\t\tcase *types.Document:\n\t\t\twhereClause, args = smeportalIDIn(v.(*types.Document))' \
    "$src/internal/backends/sqlite/collection.go"
  [[ $(grep -c 'smeportalIDIn(v' "$src/internal/backends/sqlite/collection.go") == 2 ]] ||
    { log "could not patch the _id \$in lookups"; return 1; }
  # The PostgreSQL backend pushes `{_id: x}` down as `_jsonb->'_id' @> x`, which its btree index on
  # `_jsonb->'_id'` cannot serve (a sequential scan per lookup); for _id (never an array) `=` selects the same
  # rows and uses the index. mongo.sh runs PostgreSQL with plan_cache_mode=force_custom_plan so the key,
  # a query parameter, is planned as the constant '_id' that the index expression names.
  sed -i '/^\tsql := `%\[1\]s%\[2\]s%\[3\]s @> %\[4\]s`$/a\\tif k == "_id" {\n\t\tsql = `%[1]s%[2]s%[3]s = %[4]s`\n\t}' \
    "$src/internal/backends/postgresql/query.go"
  grep -q 'if k == "_id" {' "$src/internal/backends/postgresql/query.go" ||
    { log "could not patch the PostgreSQL _id lookups"; return 1; }
  # Top-level string equality, `$in` of strings and `$exists` are pushed down to SQLite as a prefilter (why:
  # deploy/local/ferretdb-prefilter.go); start passes --test-enable-nested-pushdown so that find and aggregate hand the
  # backend `k.0` conditions too (they drop every dotted key otherwise; the prefilter ignores the others).
  cp "$(dirname "$0")/ferretdb-prefilter.go" "$src/internal/backends/sqlite/smeportal_prefilter.go"
  sed -i '/^\tq += whereClause$/i\\tif whereClause == "" {\n\t\twhereClause, args = smeportalPrefilter(params.Filter)\n\t}' \
    "$src/internal/backends/sqlite/collection.go"
  [[ $(grep -c 'smeportalPrefilter(params.Filter)' "$src/internal/backends/sqlite/collection.go") == 1 ]] ||
    { log "could not patch the prefilter"; return 1; }
  # FerretDB keeps each document as JSON ("sjson") and decodes it with encoding/json's streaming decoder, level by
  # level; on the project's write mix that decoding was ~35% of FerretDB's CPU. goccy/go-json is a drop-in
  # replacement for encoding/json and decodes faster. FerretDB's own sjson tests pass on it but for the error texts of
  # truncated input (which FerretDB never stores); the project's semantics tests run on it.
  sed -i 's|^\t"encoding/json"$|\tjson "github.com/goccy/go-json"|' "$src"/internal/handler/sjson/*.go
  (cd "$src" && GOFLAGS=-mod=mod go get "github.com/goccy/go-json@$GO_JSON_VERSION" >/dev/null 2>&1) ||
    { log "could not fetch github.com/goccy/go-json $GO_JSON_VERSION from the Go module proxy"; return 1; }
  grep -q 'json "github.com/goccy/go-json"' "$src/internal/handler/sjson/sjson.go" ||
    { log "could not patch sjson's JSON decoder"; return 1; }
  # lifetime tracking of iterators off: a developer's debugging aid that cost ~9% of the server's CPU (why:
  # deploy/local/ferretdb-resource.go)
  cp "$(dirname "$0")/ferretdb-resource.go" "$src/internal/util/resource/resource.go"
  # Secondary indexes that enforce nothing are kept as metadata only on SQLite: FerretDB 1.24's SQLite backend answers
  # no query from them (only `_id` is pushed down: `filterPushdown: false` for every other condition), so each was
  # pure cost, its JSON expression computed on every insert and update of the collection (~+20% of an update's CPU at
  # six indexes). listIndexes still shows them, unique indexes stay real SQLite indexes (they refuse duplicates), and
  # MongoDB and the PostgreSQL backend create them all as declared.
  sed -i -e '/^func (r \*Registry) indexesCreate(/,/^}/ s|^\t\tif _, err := db.ExecContext(ctx, q); err != nil {$|\t\tif !index.Unique \&\& index.Name != "_id_" {\n\t\t\tq = "SELECT 1"\n\t\t}\n&|' \
    -e 's|q := fmt.Sprintf("DROP INDEX %q", c.TableName+"_"+name)|q := fmt.Sprintf("DROP INDEX IF EXISTS %q", c.TableName+"_"+name)|' \
    "$src/internal/backends/sqlite/metadata/registry.go"
  [[ $(grep -c 'q = "SELECT 1"' "$src/internal/backends/sqlite/metadata/registry.go") == 1 ]] &&
    grep -q 'DROP INDEX IF EXISTS' "$src/internal/backends/sqlite/metadata/registry.go" ||
    { log "could not patch the secondary indexes"; return 1; }
  mkdir -p "$(dirname "$BIN")"
  (cd "$src" && go build -trimpath -o "$BIN.tmp" ./cmd/ferretdb)
  mv "$BIN.tmp" "$BIN"
  rm -rf "$src"
}

# Debian's PostgreSQL binaries (apt-get install postgresql; the cluster is ours, not Debian's pg_ctlcluster one)
pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [[ -x "$d/pg_ctl" ]] && echo "$d"; done | sort -V | tail -n 1
}

pg_install() {
  [[ -n "$(pg_bin)" ]] && return 0
  log "installing PostgreSQL from Debian (MONGO_BACKEND=postgresql)"
  apt-get install -y postgresql >/dev/null || { apt-get update >/dev/null && apt-get install -y postgresql >/dev/null; }
}

# pg_as CMD... -> runs CMD as the cluster's owner: pg_ctl and postgres refuse to run as root, so as root the
# cluster belongs to Debian's `postgres` user (the package creates it)
pg_as() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_running() { [[ -f "$PG_DATA/postmaster.pid" ]] && pg_as "$(pg_bin)/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_start() {
  pg_install
  local bin; bin=$(pg_bin)
  mkdir -p "$PG_RUN"
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    rm -rf "$PG_DATA"; mkdir -p "$PG_DATA"
    [[ $(id -u) == 0 ]] && chown postgres: "$PG_DATA"
    pg_as "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >>"$VAR_DIR/log/mongo-pg.log"
  fi
  [[ $(id -u) == 0 ]] && chown postgres: "$PG_RUN" && touch "$VAR_DIR/log/mongo-pg.log" && chown postgres: "$VAR_DIR/log/mongo-pg.log"
  if ! pg_running; then
    # listen on loopback only; the socket in $VAR_DIR so two clusters (worktrees) never share /var/run/postgresql
    pg_as "$bin/pg_ctl" -D "$PG_DATA" -l "$VAR_DIR/log/mongo-pg.log" -w -t 60 \
      -o "-p $MONGO_PG_PORT -k $PG_RUN -c listen_addresses=127.0.0.1 -c max_connections=120 -c plan_cache_mode=force_custom_plan" start >/dev/null
  fi
  pg_as "$bin/psql" -h 127.0.0.1 -p "$MONGO_PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'" | grep -q 1 ||
    pg_as "$bin/createdb" -h 127.0.0.1 -p "$MONGO_PG_PORT" -U postgres ferretdb
}

pg_stop() {
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 0
  pg_as "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
}

start() {
  if is_running mongo; then log "already running on 127.0.0.1:$MONGO_PORT"; return 0; fi
  install
  local handler
  if [[ "$MONGO_BACKEND" == postgresql ]]; then
    pg_start
    handler=(--handler=postgresql --postgresql-url="postgres://postgres@127.0.0.1:$MONGO_PG_PORT/ferretdb")
  else
    mkdir -p "$DATA"
    # WAL (FerretDB's default) with synchronous=NORMAL: a commit is not fsync'd, the WAL is at checkpoints, so a
    # killed server loses nothing committed (the WAL is in the OS's page cache); only a crash of the machine
    # itself may lose the last commits. FULL (SQLite's default) fsyncs the WAL at every commit.
    handler=(--handler=sqlite --sqlite-url="file:$DATA/?_pragma=synchronous($MONGO_SQLITE_SYNC)"
             --test-enable-nested-pushdown)
  fi
  # MONGO_DEBUG_ADDR (e.g. 127.0.0.1:18088): its pprof and command counters (/debug/metrics), for profiling; off by default.
  # GOGC=400: FerretDB allocates a document tree per document it reads and keeps little alive, so Go's default
  # (collect at 2× the live heap) spent ~12% of its CPU collecting; at 400 the server stays under ~100 MB here.
  GOGC="${MONGO_GOGC:-400}" start_bg mongo "$BIN" "${handler[@]}" \
    --listen-addr="127.0.0.1:$MONGO_PORT" --debug-addr="${MONGO_DEBUG_ADDR:--}" --telemetry=disable \
    --log-level=warn --state-dir="$VAR_DIR/mongo"
  wait_port mongo "$MONGO_PORT" 60
  log "ready on mongodb://127.0.0.1:$MONGO_PORT ($MONGO_BACKEND)"
}

case "${1:-}" in
  install) install; if [[ "$MONGO_BACKEND" == postgresql ]]; then pg_install; fi ;;
  start) start ;;
  stop) stop_bg mongo; pg_stop; log "stopped" ;;
  wipe) stop_bg mongo; pg_stop; rm -rf "$VAR_DIR/mongo"; log "data wiped" ;;
  status)
    if is_running mongo && port_open "$MONGO_PORT" && { [[ "$MONGO_BACKEND" == sqlite ]] || pg_running; }; then
      echo "mongo up 127.0.0.1:$MONGO_PORT ($MONGO_BACKEND)"
    else echo "mongo down"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|wipe|status" >&2; exit 2 ;;
esac
