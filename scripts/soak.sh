#!/usr/bin/env bash
# Soak test of `wormsink serve` (make soak; SOAK_SECONDS=600 by default):
# dnsperf load on the DNS shim (in front of a real unbound), a TFTP request
# loop on the sinkhole, and a SIGHUP with a new signature file every 30 s.
# Loopback only, bounded in time. Every 10 s it samples the server's RSS and
# goroutines; at the end it checks that dnsperf lost no query, that every
# sinkholed query and refused TFTP request is in the evidence log, that the
# reloads all took, and that RSS and goroutines stayed flat.
set -euo pipefail
secs=${SOAK_SECONDS:-600}
qps=${SOAK_QPS:-5000}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/wssoak.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
cd "$root"
go build -o "$dir/wormsink" ./cmd/wormsink

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(port); dns=$(port); tftp=$(port); metrics=$(port)

cat >"$dir/upstream.conf" <<EOF
server:
  interface: 127.0.0.1
  port: $up
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$dir"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "test." nodefault
  local-zone: "bench.test." redirect
  local-data: "bench.test. 30 IN A 192.0.2.1"
remote-control:
  control-enable: no
EOF
/usr/sbin/unbound -d -c "$dir/upstream.conf" & pids+=($!)

# Signature files alternate between two name sets; each reload has a higher serial.
sigs() { # serial prefix
  awk -v s="$1" -v p="$2" 'BEGIN {
    printf "serial: %d\nsignatures:\n  - id: soak\n    family: Soak\n    tftp_files: [msblast.exe]\n    domains:\n", s
    for (i = 0; i < 1000; i++) printf "      - %s%04d.worm.test\n", p, i
  }' >"$dir/sigs.tmp" && mv "$dir/sigs.tmp" "$dir/sigs.yaml"
}
sigs 1 a
awk 'BEGIN { srand(2); for (i = 0; i < 100000; i++) {
  if (i % 10 == 0) printf "%s%04d.worm.test A\n", (i % 20 ? "a" : "b"), int(rand() * 1000)
  else printf "u%05d.bench.test A\n", int(rand() * 10000) } }' >"$dir/queries.txt"

log=$dir/evidence.jsonl
# The sinkhole serves on 127.0.0.2 and the load comes from 127.0.0.1: wormsink
# never records the addresses it serves on as a host.
srvaddr=127.0.0.2
"$dir/wormsink" serve --dns-listen "$srvaddr:$dns" --tftp-listen "$srvaddr:$tftp" --upstream "127.0.0.1:$up" \
  --metrics-listen "127.0.0.1:$metrics" --signatures "$dir/sigs.yaml" --log "$log" --user "" \
  --tftp-source-rate -1 --tftp-total-rate -1 --watch-interval 0 2>"$dir/serve.err" & srv=$!; pids+=($srv)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$metrics/healthz" >/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do dig @127.0.0.1 -p "$up" +short +tries=1 +time=1 u1.bench.test | grep -q 192.0.2.1 && break; sleep 0.1; done

metric() { curl -sf "http://127.0.0.1:$metrics/metrics" | awk -v m="$1" '$1 == m {printf "%d\n", $2}'; }

dnsperf -s "$srvaddr" -p "$dns" -d "$dir/queries.txt" -c 4 -l "$secs" -Q "$qps" >"$dir/dnsperf.out" 2>&1 & perf=$!; pids+=($perf)
( end=$((SECONDS + secs)); n=0
  while [ $SECONDS -lt $end ]; do
    curl -s --max-time 2 "tftp://$srvaddr:$tftp/msblast.exe" -o /dev/null || true; n=$((n + 1))
  done; echo "$n" >"$dir/tftp.count" ) & loop=$!; pids+=($loop)

echo "soak: ${secs}s, dnsperf at $qps q/s, a TFTP request loop, SIGHUP every 30 s"
printf '%6s %10s %10s %8s\n' second rss_kb goroutines serial
serial=1; samples=()
start=$SECONDS
while [ $((SECONDS - start)) -lt "$secs" ]; do
  sleep 10
  t=$((SECONDS - start))
  if [ $((t % 30)) -lt 10 ] && [ "$t" -ge 30 ]; then
    serial=$((serial + 1)); sigs "$serial" "$([ $((serial % 2)) -eq 0 ] && echo b || echo a)"
    kill -HUP "$srv"
  fi
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$srv/status")
  gr=$(metric go_goroutines)
  printf '%6d %10d %10d %8d\n' "$t" "$rss" "$gr" "$(metric wormsink_signature_serial)"
  samples+=("$rss $gr")
done
wait "$perf" || true; wait "$loop" || true
sinkholed=$(metric 'wormsink_dns_queries_total{outcome="sinkholed"}')
refused=$(metric 'wormsink_tftp_requests_total{outcome="refused"}')
reload_ok=$(metric 'wormsink_signature_reloads_total{result="ok"}')
reload_failed=$(metric 'wormsink_signature_reloads_total{result="failed"}')
kill -TERM "$srv"; status=0; wait "$srv" || status=$?

fail=0
lost=$(awk '/Queries lost/ {print $3}' "$dir/dnsperf.out")
sent=$(awk '/Queries sent/ {print $3}' "$dir/dnsperf.out")
echo "dnsperf: sent $sent, lost $lost, $(awk '/Queries per second/ {print $4}' "$dir/dnsperf.out") q/s"
[ "$lost" = 0 ] || { echo "FAIL: dnsperf lost $lost queries"; fail=1; }
[ "$status" = 0 ] || { echo "FAIL: serve exited $status after SIGTERM"; fail=1; }
logged_dns=$(jq -s '[.[] | select(.event == "dns_sinkhole") | .count] | add // 0' "$log")
logged_tftp=$(jq -s '[.[] | select(.event == "tftp_refused") | .count] | add // 0' "$log")
echo "evidence: dns_sinkhole $logged_dns (metric $sinkholed), tftp_refused $logged_tftp (metric $refused, client requests $(cat "$dir/tftp.count"))"
[ "$logged_dns" -ge "$sinkholed" ] && [ "$logged_dns" -gt 0 ] || { echo "FAIL: dns evidence missing"; fail=1; }
[ "$logged_tftp" -ge "$refused" ] && [ "$logged_tftp" -gt 0 ] || { echo "FAIL: tftp evidence missing"; fail=1; }
echo "reloads: $reload_ok ok, $reload_failed failed, final serial $serial"
[ "$reload_ok" -eq $((serial - 1)) ] && [ "$reload_failed" -eq 0 ] || { echo "FAIL: reloads"; fail=1; }
# Flat: the last sample within 25% (RSS) and +20 (goroutines) of the one at 60 s.
base=${samples[5]:-${samples[0]}}; last=${samples[${#samples[@]}-1]}
read -r b_rss b_gr <<<"$base"; read -r l_rss l_gr <<<"$last"
echo "RSS ${b_rss} kB at 60 s -> ${l_rss} kB at the end; goroutines ${b_gr} -> ${l_gr}"
[ "$l_rss" -le $((b_rss * 125 / 100)) ] || { echo "FAIL: RSS grew"; fail=1; }
[ "$l_gr" -le $((b_gr + 20)) ] || { echo "FAIL: goroutines grew"; fail=1; }
[ $fail -eq 0 ] && echo "soak: PASS" || { echo "soak: FAIL"; exit 1; }
