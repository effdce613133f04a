#!/usr/bin/env bash
# DNSBL figures (issue 13): bhrd's DNS server (pkg/dnsbl, the code a
# dnsbl enforcer runs, in scripts/dnsblbench) against rbldnsd serving the
# same 100,000 /32s, with dnsperf (half listed, half unlisted names),
# rounds alternating, with each server's CPU time per answered query;
# then, as root with a cgroup cpu controller, the same rounds with each
# server held to half a core (so that the server, not dnsperf, bounds
# the rate); answer latency percentiles from 8 clients each waiting for
# its answer; RSS with 1,000,000 prefixes in the zone.
# With two cores or more, the servers run on core 0 and the load
# generators on core 1 (taskset), so that neither starves the other.
# Needs dnsperf and rbldnsd (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
for c in dnsperf rbldnsd; do
  command -v $c >/dev/null || { echo "bench-dnsbl: $c is missing (apt-get install $c)"; exit 1; }
done
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cgs=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.2; rmdir "${cgs[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/dnsblbench" ./scripts/dnsblbench
user=()
[ "$(id -u)" = 0 ] && user=(-u rbldns)
srv=() cli=()
if [ "$(nproc)" -ge 2 ]; then srv=(taskset -c 0) cli=(taskset -c 1); fi
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$1/status"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime
hz=$(getconf CLK_TCK)

# cap PID NAME: hold process PID (all its threads) to half a core in a
# new cgroup (v2 cpu.max or v1 cpu.cfs_quota_us); fails when it cannot.
cap() {
  local g
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    g=/sys/fs/cgroup/bhrd-bench-$2
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null ||
      echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || return 1
    mkdir -p "$g" 2>/dev/null && cgs+=("$g") && echo "50000 100000" >"$g/cpu.max" 2>/dev/null || return 1
  elif [ -d /sys/fs/cgroup/cpu ]; then
    g=/sys/fs/cgroup/cpu/bhrd-bench-$2
    mkdir -p "$g" 2>/dev/null && cgs+=("$g") && echo 50000 >"$g/cpu.cfs_quota_us" 2>/dev/null || return 1
  else
    return 1
  fi
  echo "$1" >"$g/cgroup.procs" 2>/dev/null
}

# rounds LABEL: five alternating dnsperf rounds against both servers,
# with each server's CPU time per answered query.
rounds() {
  local round s pid a b out
  for round in 1 2 3 4 5; do
    for s in rbldnsd:5301:0 bhrd:5302:1; do
      IFS=: read -r name port i <<<"$s"
      pid=${pids[$i]}
      a=$(ticks "$pid")
      out=$("${cli[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l 10 -c 4 -T 1 -q 100 2>&1)
      b=$(ticks "$pid")
      echo "$out" | awk -v name="$name" -v round="$round" -v label="$1" -v t=$((b - a)) -v hz="$hz" '
        /Queries completed/ {n=$3} /Queries per second/ {q=$4} /Average Latency/ {l=$4} /Queries lost/ {x=$3}
        END {printf "%s round %d %s: %.0f q/s, mean latency %.3f ms, lost %s, server CPU %.2f µs a query\n", label, round, name, q, l*1000, x, (n > 0 ? t / hz * 1e6 / n : 0)}'
    done
  done
}

# start_both N: rbldnsd on :5301 and bhrd's server on :5302, each with
# the same N /32s (pids in pids[0], pids[1]); waits $2 seconds to load.
start_both() {
  "$work/dnsblbench" gen -n "$1" -dir "$work"
  chmod 644 "$work/ip4set" "$work/queries"
  "${srv[@]}" rbldnsd -n -b 127.0.0.1/5301 -w "$work" "${user[@]}" bl.test:ip4set:ip4set >"$work/rbldnsd.log" 2>&1 &
  pids+=($!)
  "${srv[@]}" "$work/dnsblbench" serve -n "$1" -listen 127.0.0.1:5302 >"$work/bhrd.log" 2>&1 &
  pids+=($!)
  sleep "$2"
}

n=100000
start_both $n 3
echo "zone: $n /32s; queries: $(wc -l <"$work/queries") names, half listed; $(nproc) cores; servers ${srv[*]:-unpinned}, clients ${cli[*]:-unpinned}"
rounds free
for s in rbldnsd:5301 bhrd:5302; do
  echo "${s%:*}: $("${cli[@]}" "$work/dnsblbench" latency -s "127.0.0.1:${s#*:}" -d "$work/queries" -c 8 -q 200000)"
done
if [ "$(id -u)" = 0 ] && cap "${pids[0]}" rbldnsd && cap "${pids[1]}" bhrd; then
  rounds "half a core"
else
  echo "capped rounds skipped: needs root and a cgroup cpu controller"
fi
echo "RSS with $n prefixes: rbldnsd $(rss "${pids[0]}"), bhrd $(rss "${pids[1]}")"
kill "${pids[@]}"; wait 2>/dev/null || true; pids=()

n=1000000
start_both $n 8
dig_ok=$(dnsperf -s 127.0.0.1 -p 5302 -d "$work/queries" -n 1 -c 2 -q 100 2>&1 | awk '/Response codes/ {print $3, $4, $5, $6}')
echo "RSS with $n prefixes (after one pass of queries: $dig_ok): rbldnsd $(rss "${pids[0]}"), bhrd $(rss "${pids[1]}")"
