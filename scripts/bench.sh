#!/usr/bin/env bash
# make bench: every figure in docs/BENCHMARKS.md, with the command that
# produced it echoed before its output. Output is also appended to
# bench-results.txt. Needs PostgreSQL's server binaries (the Go benchmarks
# start a throw-away cluster through internal/pgtest; the bhrbench part
# starts its own). Root adds the null-route figures.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
out=${BENCH_OUT:-bench-results.txt}
: > "$out"
say() { echo "$*" | tee -a "$out"; }
run() { say "\$ $*"; "$@" 2>&1 | grep -Ev '^(goos|goarch|pkg|cpu):' | tee -a "$out"; }

say "# bhrd benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"

say "## Core (pkg/queue and the stores)"
run go test -run '^$' -bench 'WhitelistCheck' -benchtime 2s ./pkg/queue/
run go test -run '^$' -bench 'Service|ApplyBlocks|SetBlocked200' -benchtime 3s -timeout 30m ./pkg/queue/sqlitestore/
run go test -run '^$' -bench 'CommitFloor|Service|ApplyBlocks|History1M' -benchtime 3s -timeout 30m ./pkg/queue/pgstore/

say "## Idents and reports (issue 10)"
run go test -run '^$' -bench 'PGMBlock1000Idents' -benchtime 20x -timeout 30m ./pkg/queue/pgstore/
run go test -run '^$' -bench 'SetBlockedMulti1MB' -benchtime 5x -timeout 30m ./pkg/api/
run go test -run '^$' -bench 'LongPollsNewIdents' -benchtime 1x -timeout 30m ./pkg/api/
run go test -count=1 -run '^$' -bench 'LoginUnderFlood' -benchtime 1x -timeout 5m ./pkg/api/
run go test -count=1 -run '^$' -bench 'BlockUnblockLoad' -benchtime 1x -timeout 10m ./pkg/api/
run go test -count=1 -run '^$' -bench 'ParkedPollsCPU' -benchtime 20x -timeout 10m ./pkg/api/
run go test -count=1 -run '^$' -bench 'UnblockNowParkedPolls' -benchtime 1x -timeout 10m ./pkg/api/
run go test -count=1 -run '^$' -bench 'Stats1M' -benchtime 1x -timeout 30m ./pkg/api/
run go test -count=1 -run '^$' -bench 'DrainAfterMassDrain' -benchtime 1x -timeout 10m ./pkg/queue/pgstore/
run go test -count=1 -run '^$' -bench 'PGUnblockNowQueued' -benchtime 5000x -count 2 ./pkg/queue/pgstore/

say "## HTTP API (pkg/api, loopback, keep-alive clients, both stores)"
run go test -run '^$' -bench '^Benchmark(Block|MBlock|MBlockSeq|QueueIdle|LongPollWake)$' -benchtime 5s -timeout 30m ./pkg/api/
run go test -run '^$' -bench 'PublistCSV' -benchtime 3x -timeout 30m ./pkg/api/

say "## Enforcement"
run go test -run '^$' -bench 'Announce100k$' -benchtime 3x -timeout 30m ./pkg/bgp/
run go test -count=1 -run '^$' -bench 'BlockToRIB' -benchtime 1x -timeout 30m ./internal/app/
run go test -count=1 -run '^$' -bench 'Enforce100k' -benchtime 1x -timeout 30m ./internal/app/
run go test -count=1 -run '^$' -bench 'BulkUnblock10k' -benchtime 1x -timeout 10m ./internal/app/
run go test -count=1 -run '^$' -bench 'Expiry10k' -benchtime 1x -timeout 10m ./internal/app/
run go test -count=1 -run '^$' -bench 'RestartToEstablished' -benchtime 1x -timeout 10m ./internal/app/
run go test -count=1 -run '^$' -bench 'Startup100k' -benchtime 1x -timeout 20m ./internal/app/
run go test -count=1 -run '^$' -bench 'Metrics1M' -benchtime 1x -timeout 30m ./internal/app/
if [ "$(id -u)" = 0 ]; then
  run go test -run '^$' -bench 'Install100k' -benchtime 1x -count 3 ./pkg/nullroute/
else
  say "(null-route figures need root: skipped)"
fi
if [ "${BHRD_BENCH_1M:-}" = 1 ]; then
  run env BHRD_BENCH_1M=1 go test -count=1 -run '^$' -bench RSS1M -benchtime 1x -timeout 40m ./internal/app/
  run env BHRD_BENCH_1M=1 go test -count=1 -run '^$' -bench Startup1M -benchtime 1x -timeout 40m ./internal/app/
else
  say "(RSS and start-up with 1,000,000 prefixes: run with BHRD_BENCH_1M=1; takes ~20 minutes and ~7 GB)"
fi

say "## DNSBL (issue 13)"
run go test -count=1 -run '^$' -bench DNSBLPostToAnswer -benchtime 1x ./internal/app/
run go test -run '^$' -bench FastAnswer ./pkg/dnsbl/
say "\$ ./scripts/bench-dnsbl.sh"
./scripts/bench-dnsbl.sh 2>&1 | tee -a "$out"

say "## HttpBL middleware (issue 14)"
run go test -run '^$' -bench 'CachedDecision|MiddlewareOverhead|ColdLookup' -benchtime 2s ./pkg/httpbl/
run go test -run '^$' -bench 'ServerOverhead' -benchtime 3s -count 5 ./pkg/httpbl/

say "## Web pages (issue 15)"
run go test -count=1 -run '^$' -bench 'Pages1M' -benchtime 1x -timeout 60m ./pkg/web/

say "## HTTP floor and bhrd on SQLite (bhrbench ingest-seq)"
./scripts/bench-floors.sh 2>&1 | tee -a "$out"
say "## bhrbench against bhrd serve on PostgreSQL"
./scripts/bhrbench.sh 2>&1 | tee -a "$out"
say "## bhrbench against bhrd serve on SQLite"
STORE=sqlite ./scripts/bhrbench.sh 2>&1 | tee -a "$out"
