#!/usr/bin/env bash
# DNS shim throughput against unbound with the same names as an RPZ.
#
#   testdata/dns/perf.sh [NAMES] [SECONDS]      (defaults 100000 and 15)
#
# Both servers run pinned to CPU 0 with one thread of dnsperf (-c 1 -T 1) on
# CPU 1, in front of the same upstream: an unbound answering every name
# under bench.test (pinned to CPU 1, it only sees cache misses). The query
# mix is 10% listed names and 90% unlisted names from a pool of 10,000,
# cacheable. Each server is warmed up for 3 s, then measured. Everything
# listens on 127.0.0.1 only. Prints q/s and peak RSS (VmHWM) of each server.
set -euo pipefail
names=${1:-100000}
secs=${2:-15}
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/wsperf.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

cd "$root"
go build -o "$dir/wormsink" ./cmd/wormsink

# shellcheck source=scripts/perf-dns-setup.sh
. "$root/scripts/perf-dns-setup.sh"
perf_dns_setup "$names" 10000

hwm() { awk '/VmHWM/ {print $2 " kB"}' "/proc/$1/status"; }
run() { # label port pid
  dnsperf -s 127.0.0.1 -p "$2" -d "$dir/queries.txt" -c 1 -T 1 -l 3 >/dev/null 2>&1 # warm up the caches
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$2" -d "$dir/queries.txt" -c 1 -T 1 -l "$secs" >"$dir/$1.out" 2>&1
  qps=$(awk '/Queries per second/ {print $4}' "$dir/$1.out")
  lost=$(awk '/Queries lost/ {print $3}' "$dir/$1.out")
  lat=$(awk '/Average Latency/ {print $4}' "$dir/$1.out")
  printf '%-22s %10s q/s  lost %-8s avg latency %ss  peak RSS %s\n' "$1" "$qps" "$lost" "$lat" "$(hwm "$3")"
}

taskset -c 1 /usr/sbin/unbound -d -c "$dir/upstream.conf" & pids+=($!)
wait_dns "$up"

echo "names listed: $names, mix 10% listed / 90% unlisted (10,000 cacheable names), ${secs}s, dnsperf -c 1 -T 1"
taskset -c 0 "$dir/wormsink" serve --dns-listen "127.0.0.1:$ws" --tftp-listen "" --upstream "127.0.0.1:$up" \
  --signatures "$dir/sigs.yaml" --sinkhole-ip 192.0.2.66 --log "$dir/evidence.log" --user "" --watch-interval 0 \
  2>"$dir/shim.err" & shim=$!; pids+=($shim)
wait_dns "$ws"
echo "wormsink serve started, RSS after load of the set: $(hwm "$shim")"
run "wormsink-serve" "$ws" "$shim"
kill "$shim"; wait "$shim" 2>/dev/null || true

taskset -c 0 /usr/sbin/unbound -d -c "$dir/rpz.conf" & rpz=$!; pids+=($rpz)
wait_dns "$ub"
echo "unbound rpz started, RSS after load of the zone: $(hwm "$rpz")"
run "unbound-rpz" "$ub" "$rpz"
