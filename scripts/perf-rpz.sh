#!/usr/bin/env bash
# The resolver deployment, measured side by side in one run (make perf-rpz):
#
#  1. AXFR of an N-name policy zone (default 1,000,000) from `wormsink serve
#     --rpz-listen` and from BIND serving the exported zone as primary: the
#     same client (dig, pinned to CPU 1) against each server (pinned to CPU 0),
#     three alternating rounds; wall time of each transfer, and wormsink's
#     peak RSS (VmHWM) while serving.
#  2. SIGHUP to both secondaries (Unbound, BIND) answering a name added by
#     the new serial, through NOTIFY and IXFR, with the N-name zone.
#  3. dnstap ingest: Unbound under dnsperf (every query answered locally, 10%
#     of them listed names) streaming CLIENT_QUERY to wormsink pinned to one
#     core; evidence lookups counted against listed queries sent, frames/s
#     against Unbound's queries/s.
#
#   scripts/perf-rpz.sh [NAMES]
# Everything listens on 127.0.0.1. The machine may be shared: compare the
# numbers within one run, not across runs.
set -euo pipefail
names=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/ws14-perf.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
cd "$root"
go build -o "$dir/wormsink" ./cmd/wormsink
secret=$(head -c 32 /dev/urandom | base64)

gen() { # serial extra-name
  awk -v n="$names" -v s="$1" -v x="$2" 'BEGIN {
    print "serial: " s "\nsignatures:\n  - id: perf\n    family: Perf\n    domains:"
    for (i = 0; i < n; i++) printf "      - w%07d.worm.test\n", i
    if (x != "") print "      - " x
  }'
}
gen 1 "" >"$dir/sigs.yaml"
"$dir/wormsink" sigs export --format rpz --sinkhole-ip 192.0.2.66 "$dir/sigs.yaml" >"$dir/rpz.zone"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wsp=$(port); bp=$(port); ubp=$(port); b2p=$(port); met=$(port)
soa() { dig @127.0.0.1 -p "$1" +tries=1 +time=1 +short rpz.wormsink SOA 2>/dev/null | awk '{print $3}'; }
wait_soa() { # port serial
  for _ in $(seq 1 1200); do [ "$(soa "$1")" = "$2" ] && return 0; sleep 0.1; done
  echo "perf: no SOA $2 on port $1" >&2; return 1
}
hwm() { awk '/VmHWM/ {print $2 " kB"}' "/proc/$1/status"; }
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$1/status"; }
metric() { curl -s "http://127.0.0.1:$met/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

echo "== 1. AXFR of $names names (SOA + NS + $names A records)"
taskset -c 0 "$dir/wormsink" serve --dns-listen "" --tftp-listen "" --signatures "$dir/sigs.yaml" --sinkhole-ip 192.0.2.66 \
  --rpz-listen "127.0.0.1:$wsp" --rpz-tsig "xfr-key:hmac-sha256:$secret" --rpz-allow-unsigned 127.0.0.1/32 \
  --rpz-notify "127.0.0.1:$ubp,127.0.0.1:$b2p" --dnstap-listen "unix:$dir/tap.sock" \
  --metrics-listen "127.0.0.1:$met" --log "$dir/evidence.log" --user "" --watch-interval 0 2>"$dir/ws.err" &
ws=$!; pids+=($ws)
wait_soa "$wsp" 1
echo "wormsink serving: RSS $(rss $ws), peak $(hwm $ws)"
mkdir -p "$dir/bp"
cp "$dir/rpz.zone" "$dir/bp/rpz.zone"
printf 'options { directory "%s"; listen-on port %s { 127.0.0.1; }; listen-on-v6 { none; }; pid-file none;
  recursion no; allow-transfer { 127.0.0.0/8; }; notify no; };
controls { };
zone "rpz.wormsink" { type primary; file "rpz.zone"; check-names ignore; };
' "$dir/bp" "$bp" >"$dir/bp/named.conf"
taskset -c 0 /usr/sbin/named -g -4 -c "$dir/bp/named.conf" >"$dir/bp/log" 2>&1 &
bind=$!; pids+=($bind)
wait_soa "$bp" 1
echo "BIND primary serving: RSS $(rss $bind)"
axfr() { # port -> seconds and records
  local t0 n
  t0=$(now)
  n=$(taskset -c 1 dig @127.0.0.1 -p "$1" +tries=1 +time=60 rpz.wormsink AXFR | grep -c 'IN	A	' || true)
  echo "$(since "$t0") s ($n A records)"
}
for round in 1 2 3; do
  echo "round $round: wormsink $(axfr "$wsp") | BIND $(axfr "$bp")"
done
echo "wormsink peak RSS (VmHWM) after the transfers: $(hwm $ws); BIND RSS $(rss $bind)"
kill $bind; wait $bind 2>/dev/null || true

echo "== 2. SIGHUP to Unbound and BIND answering a new name ($names-name zone, NOTIFY + IXFR)"
mkdir -p "$dir/ub" "$dir/bs"
printf 'server:
  interface: 127.0.0.1
  port: %s
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "%s"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  module-config: "respip iterator"
  access-control: 127.0.0.0/8 allow
  do-ip6: no
  local-zone: "test." nodefault
  local-zone: "bench.test." redirect
  local-data: "bench.test. 300 IN A 192.0.2.1"
rpz:
  name: rpz.wormsink.
  primary: 127.0.0.1@%s
  allow-notify: 127.0.0.1
dnstap:
  dnstap-enable: yes
  dnstap-socket-path: "%s"
  dnstap-send-identity: yes
  dnstap-identity: "unbound-perf"
  dnstap-log-client-query-messages: yes
remote-control:
  control-enable: no
' "$ubp" "$dir/ub" "$wsp" "$dir/tap.sock" >"$dir/ub/unbound.conf"
printf 'options { directory "%s"; listen-on port %s { 127.0.0.1; }; listen-on-v6 { none; }; pid-file none;
  recursion yes; allow-query { 127.0.0.0/8; }; dnssec-validation no; notify no;
  forwarders { 127.0.0.1 port %s; }; forward only;
  response-policy { zone "rpz.wormsink" min-update-interval 0; } qname-wait-recurse no; };
controls { };
key "xfr-key" { algorithm hmac-sha256; secret "%s"; };
zone "rpz.wormsink" { type secondary; primaries { 127.0.0.1 port %s key "xfr-key"; }; file "rpz.db"; allow-notify { 127.0.0.1; }; };
' "$dir/bs" "$b2p" "$ubp" "$secret" "$wsp" >"$dir/bs/named.conf"
taskset -c 1 /usr/sbin/unbound -d -c "$dir/ub/unbound.conf" >"$dir/ub/log" 2>&1 &
ub=$!; pids+=($ub)
taskset -c 1 /usr/sbin/named -g -4 -c "$dir/bs/named.conf" >"$dir/bs/log" 2>&1 &
bs=$!; pids+=($bs)
answers() { dig @127.0.0.1 -p "$1" +tries=1 +time=1 +short "$2" A 2>/dev/null | grep -qx 192.0.2.66; }
for _ in $(seq 1 1200); do answers $ubp w0000001.worm.test && answers $b2p w0000001.worm.test && break; sleep 0.1; done
answers $ubp w0000001.worm.test && answers $b2p w0000001.worm.test || { echo "perf: secondaries did not load the zone" >&2; exit 1; }
echo "both secondaries loaded the zone (unbound RSS $(rss $ub), BIND RSS $(rss $bs))"
gen 2 "fresh.worm.test" >"$dir/sigs.yaml"
t0=$(now)
kill -HUP $ws
tu=""; tb=""
for _ in $(seq 1 3000); do
  [ -z "$tu" ] && answers $ubp fresh.worm.test && tu=$(since "$t0")
  [ -z "$tb" ] && answers $b2p fresh.worm.test && tb=$(since "$t0")
  [ -n "$tu" ] && [ -n "$tb" ] && break
done
echo "SIGHUP to answering fresh.worm.test: unbound ${tu:-never} s, BIND ${tb:-never} s"
grep '"event":"rpz_zone"' "$dir/evidence.log" | tail -1 || true
echo "IXFRs served incrementally: $(metric 'wormsink_rpz_requests_total{result="incremental",type="ixfr"}'), wormsink peak RSS $(hwm $ws)"
kill $bs; wait $bs 2>/dev/null || true

echo "== 3. dnstap ingest: Unbound under dnsperf, wormsink on one core"
awk -v n="$names" 'BEGIN { srand(2)
  for (i = 0; i < 200000; i++) {
    if (i % 10 == 0) printf "w%07d.worm.test A\n", int(rand() * n)
    else printf "u%05d.bench.test A\n", int(rand() * 10000)
  } }' >"$dir/queries.txt"
passes=3
for _ in $(seq 1 100); do [ "$(metric wormsink_dnstap_connections)" = "1" ] && break; sleep 0.1; done
f0=$(metric wormsink_dnstap_frames_total); l0=$(metric wormsink_dnstap_lookups_total)
cpu0=$(awk '{print $14 + $15}' /proc/$ws/stat)
taskset -c 1 dnsperf -s 127.0.0.1 -p $ubp -d "$dir/queries.txt" -c 4 -T 1 -n $passes -q 500 >"$dir/dnsperf.out" 2>&1
sent=$(awk '/Queries sent/ {print $3}' "$dir/dnsperf.out")
completed=$(awk '/Queries completed/ {print $3}' "$dir/dnsperf.out")
lost=$(awk '/Queries lost/ {print $3}' "$dir/dnsperf.out")
qps=$(awk '/Queries per second/ {print $4}' "$dir/dnsperf.out")
want=$((20000 * passes))
# Unbound logs a query when it reads it; queries dnsperf counts as lost may
# never have reached it. Wait until wormsink has a frame per answered query.
for _ in $(seq 1 300); do [ "$(echo "$(metric wormsink_dnstap_frames_total) - $f0 >= $completed" | bc)" = 1 ] && break; sleep 0.1; done
f1=$(metric wormsink_dnstap_frames_total); l1=$(metric wormsink_dnstap_lookups_total)
cpu1=$(awk '{print $14 + $15}' /proc/$ws/stat)
tck=$(getconf CLK_TCK)
frames=$(echo "$f1 - $f0" | bc)
echo "dnsperf through Unbound: $sent queries sent, $completed answered, $lost lost, $qps q/s (the rate Unbound produces frames)"
echo "wormsink: $frames frames taken, $(echo "$l1 - $l0" | bc) dns_lookup sightings for $want listed queries sent"
cpus=$(echo "scale=2; ($cpu1 - $cpu0) / $tck" | bc)
echo "wormsink CPU for them: ${cpus} s -> $(echo "scale=0; $frames / ($cpus + 0.01)" | bc) frames per CPU-second on one core"
echo "dnstap errors: $(metric wormsink_dnstap_errors_total)"
