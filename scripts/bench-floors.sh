#!/usr/bin/env bash
# Issue 16's HTTP floor next to bhrd: bhrbench's sequential ingest
# (POST api/block one after another) against scripts/httpfloor, a trivial
# Go server that answers as bhrd would with no store, then against
# `bhrd serve` on the embedded SQLite store; rounds alternate, and each
# bhrd figure is also given as a ratio to the floor of its round.
# PostgreSQL's figures, with the same floor, are in scripts/bhrbench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BHRBENCH_DIR:-../shared/tools/bhrbench}
[ -d "$BENCH" ] || { echo "bhrbench not found at $BENCH"; exit 1; }
N=${N:-20000}
work=$(mktemp -d /tmp/bhrd-floors.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/httpfloor" ./scripts/httpfloor
(cd "$BENCH" && go build -o "$work/bhrbench" .)
make -s build
floor=$((20000 + RANDOM % 20000))
api=$((floor + 1))
"$work/httpfloor" -listen "127.0.0.1:$floor" &
pids+=($!)
cat > "$work/bhrd.yaml" <<YAML
log: {level: warn, audit: $work/audit.log}
store: {driver: sqlite, path: $work/bhrd.db}
api: {listen: "127.0.0.1:$api"}
YAML
./bin/bhrd user add -config "$work/bhrd.yaml" -username bench -role admin >/dev/null 2>&1
TOKEN=$(./bin/bhrd token create -config "$work/bhrd.yaml" -username bench 2>/dev/null)
./bin/bhrd serve -config "$work/bhrd.yaml" 2>"$work/bhrd.log" &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$api/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
rate() { awk '/ingest-seq.rate/ {print $2}'; }
p50() { awk '/ingest-seq.lat_p50/ {print $2}'; }
echo "ingest-seq, $N sequential POST api/block per round, $(nproc) cores"
for round in 1 2 3; do
  f=$("$work/bhrbench" -url "http://127.0.0.1:$floor" -token x -scenario ingest-seq -n "$N" 2>&1)
  b=$("$work/bhrbench" -url "http://127.0.0.1:$api" -token "$TOKEN" -scenario ingest-seq -n "$N" 2>&1)
  fr=$(echo "$f" | rate) br=$(echo "$b" | rate)
  echo "round $round: HTTP floor $fr/s (p50 $(echo "$f" | p50) ms); bhrd SQLite $br/s (p50 $(echo "$b" | p50) ms) = $(awk -v a="$br" -v b="$fr" 'BEGIN {printf "%.2f", a/b}')x the floor"
done
