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

# Signature file: NAMES listed names in one signature.
awk -v n="$names" 'BEGIN {
  print "serial: 1\nsignatures:\n  - id: perf\n    family: Perf\n    domains:"
  for (i = 0; i < n; i++) printf "      - w%07d.worm.test\n", i
}' >"$dir/sigs.yaml"
"$dir/wormsink" sigs check "$dir/sigs.yaml" >/dev/null
"$dir/wormsink" sigs export --format rpz --sinkhole-ip 192.0.2.66 "$dir/sigs.yaml" >"$dir/rpz.zone"

# Queries: 10% listed, 90% unlisted from a pool of 10,000.
awk -v n="$names" 'BEGIN {
  srand(1)
  for (i = 0; i < 200000; i++) {
    if (i % 10 == 0) printf "w%07d.worm.test A\n", int(rand() * n)
    else printf "u%05d.bench.test A\n", int(rand() * 10000)
  }
}' >"$dir/queries.txt"

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(port); ub=$(port); ws=$(port)

common="  do-ip6: no
  do-daemonize: no
  chroot: \"\"
  username: \"\"
  directory: \"$dir\"
  use-syslog: no
  logfile: \"\"
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  local-zone: \"test.\" nodefault"

cat >"$dir/upstream.conf" <<EOF
server:
  interface: 127.0.0.1
  port: $up
  pidfile: "$dir/up.pid"
$common
  module-config: "iterator"
  local-zone: "bench.test." redirect
  local-data: "bench.test. 300 IN A 192.0.2.1"
remote-control:
  control-enable: no
EOF

cat >"$dir/rpz.conf" <<EOF
server:
  interface: 127.0.0.1
  port: $ub
  pidfile: "$dir/rpz.pid"
$common
  num-threads: 1
  module-config: "respip iterator"
  do-not-query-localhost: no
  msg-cache-size: 64m
  rrset-cache-size: 128m
rpz:
  name: wormsink.rpz.
  zonefile: "$dir/rpz.zone"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$up
remote-control:
  control-enable: no
EOF

wait_dns() { # port
  for _ in $(seq 1 200); do
    if dig @127.0.0.1 -p "$1" +tries=1 +time=1 +short u00001.bench.test A 2>/dev/null | grep -q 192.0.2.1; then return 0; fi
    sleep 0.1
  done
  echo "perf: nothing answers on port $1" >&2; return 1
}
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
