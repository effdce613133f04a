#!/usr/bin/env bash
# Runs ../shared/tools/bhrbench (the load generator we compare BHR with)
# against a real `bhrd serve`: on a throw-away PostgreSQL cluster
# (STORE=postgres, the default) or on the embedded SQLite store
# (STORE=sqlite). Issue 16's floors are measured in the same run, before
# the load: the HTTP floor (bhrbench's sequential client against
# scripts/httpfloor) and, on PostgreSQL, the commit floor (pgbench, one
# client, one-row inserts, the same cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BHRBENCH_DIR:-../shared/tools/bhrbench}
[ -d "$BENCH" ] || { echo "bhrbench not found at $BENCH"; exit 1; }
STORE=${STORE:-postgres}
case "$STORE" in
postgres | sqlite) ;;
*) echo "STORE must be postgres or sqlite, not $STORE"; exit 1 ;;
esac
work=$(mktemp -d /tmp/bhrd-bench.XXXXXX)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "${bhrd_pid:-}" ] && kill "$bhrd_pid" 2>/dev/null && wait "$bhrd_pid" 2>/dev/null || true
  [ "$STORE" = postgres ] && as_pg "$PGBIN/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$STORE" = postgres ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$PGBIN" ] || { echo "PostgreSQL server binaries not installed"; exit 1; }
  [ "$(id -u)" = 0 ] && chown postgres "$work"
  port=$((20000 + RANDOM % 20000))
  as_pg "$PGBIN/initdb" -D "$work/data" -A trust -U postgres >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
    -o "-k $work -c listen_addresses='' -p $port -c max_connections=200" start >/dev/null
  as_pg "$PGBIN/createdb" -h "$work" -p "$port" -U postgres bhrd
  storecfg="{driver: postgres, url: \"postgres:///bhrd?host=$work&port=$port&user=postgres\"}"
else
  storecfg="{driver: sqlite, path: $work/bhrd.db}"
fi
api=$((20000 + RANDOM % 20000))
cat > "$work/bhrd.yaml" <<YAML
log: {level: warn}
store: $storecfg
api: {listen: "127.0.0.1:$api", max_mblock_items: 1000}
YAML
make -s build
./bin/bhrd serve -config "$work/bhrd.yaml" 2>"$work/bhrd.log" &
bhrd_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$api/bhr/api/stats" >/dev/null 2>&1 && break; sleep 0.1; done
./bin/bhrd user add -config "$work/bhrd.yaml" -username bench -role admin >/dev/null 2>&1
TOKEN=$(./bin/bhrd token create -config "$work/bhrd.yaml" -username bench 2>/dev/null)
(cd "$BENCH" && go build -o "$work/bhrbench" .)
go build -o "$work/httpfloor" ./scripts/httpfloor
floor=$((api + 1))
"$work/httpfloor" -listen "127.0.0.1:$floor" &
floor_pid=$!
sleep 0.3
echo "store: $STORE"
echo "HTTP floor (scripts/httpfloor): $("$work/bhrbench" -url "http://127.0.0.1:$floor" -token x -scenario ingest-seq -n 20000 2>&1 | awk '/ingest-seq.rate/ {r=$2} /lat_p50/ {p=$2} END {print r " blocks/s, p50 " p " ms"}')"
kill "$floor_pid"
if [ "$STORE" = postgres ]; then
  as_pg "$PGBIN/psql" -q -h "$work" -p "$port" -U postgres -d bhrd -c 'CREATE TABLE floor (id bigserial PRIMARY KEY, x int)'
  echo 'INSERT INTO floor (x) VALUES (1);' > "$work/floor.sql"
  chmod 644 "$work/floor.sql"
  echo "commit floor (pgbench, 1 client, 5 s): $(as_pg "$PGBIN/pgbench" -n -h "$work" -p "$port" -U postgres -c 1 -T 5 -f "$work/floor.sql" bhrd 2>/dev/null | awk '/^tps/ {print $3 " commits/s"}')"
  as_pg "$PGBIN/psql" -q -h "$work" -p "$port" -U postgres -d bhrd -c 'DROP TABLE floor'
fi
echo "\$ bhrbench -url http://127.0.0.1:$api -scenario all ${BHRBENCH_ARGS:-}"
"$work/bhrbench" -url "http://127.0.0.1:$api" -token "$TOKEN" -scenario all ${BHRBENCH_ARGS:-}
echo "bhrd peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$bhrd_pid/status)"
