#!/usr/bin/env bash
# The DNS shim's rate alone and while RADIUS accounting arrives at a fixed
# rate, in alternating rounds.
#
#   scripts/perf-radius-dns.sh              (or: make perf-radius-dns)
#
# Environment: RATE (1000 Accounting-Requests/s), ROUNDS (5), SECS (10 s per
# run), NAMES (1000 listed names, every query one of them: each answer is a
# sighting, attributed through the index as the evidence line is written),
# OUTSTANDING (2000 queries in flight), BIN (a prebuilt wormsink; built
# from the tree when unset), PROFILE (a directory: perf record -g of the
# shim for 10 s while RADIUS arrives goes there as radius.perf).
#
# serve runs pinned to CPU 0 with the store on SQLite in a temporary
# directory; dnsperf (one thread) and the RADIUS generator (scripts/radiusload,
# Start and Stop of distinct sessions over CONC (256) sockets, paced) run on
# CPU 1.
# Rounds alternate alone / with RADIUS so that a change in the machine's
# load hits both. Per run: the q/s dnsperf saw, the shim's CPU per answered
# query (utime+stime of all its threads from /proc), and the queries per
# second of the shim's CPU — its rate when CPU 0 is its alone, the figure
# that RADIUS work in the same process lowers. A third run per round sends
# RADIUS with no DNS: the shim's CPU per answered request is what one
# Accounting-Request costs serve. A fourth (CONTROL=1) sends the same RADIUS
# traffic to the generator's own answerer on CPU 1 instead of serve: what
# the shim loses then is the client side's doing (dnsperf sharing CPU 1
# with the generator), not RADIUS work in serve. Medians at the end, and the
# drop with RADIUS. Loopback only.
#
# SATURATE=1 asks with scripts/dnsload instead of dnsperf: faster than the
# shim answers on CPU 0 (dnsperf on one core of this machine asks for
# less), so that the q/s figure is the shim's rate with CPU 0 its own, the
# rate RADIUS work in serve takes from; the generator on CPU 1 has room to
# spare, so the RADIUS generator beside it does not lower what is asked.
set -euo pipefail
RATE=${RATE:-1000}
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-10}
NAMES=${NAMES:-1000}
OUTSTANDING=${OUTSTANDING:-2000}
# Conversations at once: each waits for its answer (a group commit away)
# before its next request, so the rate needs many of them on a busy machine.
CONC=${CONC:-256}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/wsperfradius.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for c in dnsperf taskset dig perf; do
  command -v "$c" >/dev/null 2>&1 || { echo "perf-radius-dns: $c is not installed: run \`make deps\`" >&2; exit 1; }
done
cd "$root"
if [ -n "${BIN:-}" ]; then cp "$BIN" "$dir/wormsink"; else go build -o "$dir/wormsink" ./cmd/wormsink; fi
go build -o "$dir/radiusload" ./scripts/radiusload
[ -n "${SATURATE:-}" ] && go build -o "$dir/dnsload" ./scripts/dnsload

awk -v n="$NAMES" 'BEGIN {
  print "serial: 1\nsignatures:\n  - id: perf\n    family: Perf\n    domains:"
  for (i = 0; i < n; i++) printf "      - w%07d.worm.test\n", i
}' >"$dir/sigs.yaml"
awk -v n="$NAMES" 'BEGIN { srand(1); for (i = 0; i < 100000; i++) printf "w%07d.worm.test A\n", int(rand() * n) }' >"$dir/queries.txt"
secret=$(head -c 18 /dev/urandom | base64)
printf '127.0.0.1/32 %s\n' "$secret" >"$dir/secrets"
printf '%s\n' "$secret" >"$dir/secret"
chmod 0600 "$dir/secrets" "$dir/secret"

# A port free for both UDP and TCP (the shim listens on both).
port() { /usr/bin/python3 -c '
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
'; }
ws=$(port); rad=$(port); dead=$(port); echoport=$(port)
taskset -c 0 "$dir/wormsink" serve --dns-listen "127.0.0.1:$ws" --tftp-listen "" --upstream "127.0.0.1:$dead" \
  --signatures "$dir/sigs.yaml" --sinkhole-ip 192.0.2.66 --log "$dir/evidence.log" --user "" --watch-interval 0 \
  --db "sqlite:$dir/ws.db" --radius-acct-listen "127.0.0.1:$rad" --radius-secrets "$dir/secrets" \
  2>"$dir/shim.err" & shim=$!
pids+=($shim)
for _ in $(seq 1 600); do
  if dig @127.0.0.1 -p "$ws" +tries=1 +time=1 +short w0000001.worm.test A 2>/dev/null | grep -q 192.0.2.66; then break; fi
  sleep 0.1
done
dig @127.0.0.1 -p "$ws" +tries=1 +time=1 +short w0000001.worm.test A | grep -q 192.0.2.66 || { echo "perf-radius-dns: the shim does not answer" >&2; tail -n 5 "$dir/shim.err" >&2; exit 1; }

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
load() { cut -d' ' -f1 /proc/loadavg; }
hz=$(getconf CLK_TCK)

modes="alone radius rad-only"
if [ -n "${CONTROL:-}" ]; then
  taskset -c 1 "$dir/radiusload" -answer "127.0.0.1:$echoport" & pids+=($!)
  modes="$modes control"
fi

# measure MODE: one line "MODE q/s us/query q-per-cpu-s radius/s load";
# for MODE rad-only, us/query is serve's CPU per answered RADIUS request.
measure() {
  local t0 t1 rl=""
  t0=$(ticks "$shim")
  if [ "$1" = rad-only ]; then
    taskset -c 1 "$dir/radiusload" -addr "127.0.0.1:$rad" -secret-file "$dir/secret" -rate "$RATE" -conc "$CONC" -duration "${SECS}s" >"$dir/rl" 2>&1
    t1=$(ticks "$shim")
    awk -v m="$1" -v c=$((t1 - t0)) -v hz="$hz" -v la="$(load)" '{ sub("/s", "", $8); n = $4 } END {
      printf "%s 0 %.2f 0 %s %s\n", m, (n > 0 ? c / hz * 1e6 / n : 0), $8, la }' "$dir/rl"
    return
  fi
  if [ "$1" = radius ] || [ "$1" = control ]; then
    local to=$rad
    [ "$1" = control ] && to=$echoport
    taskset -c 1 "$dir/radiusload" -addr "127.0.0.1:$to" -secret-file "$dir/secret" -rate "$RATE" -conc "$CONC" -duration "$((SECS + 1))s" >"$dir/rl" 2>&1 &
    rl=$!
    sleep 0.5 # let the generator reach its rate before dnsperf starts counting
  fi
  if [ -n "${SATURATE:-}" ]; then
    # dnsload's line: sent N answered M in Ss: R answers/s
    taskset -c 1 "$dir/dnsload" -addr "127.0.0.1:$ws" -names "$dir/queries.txt" -duration "${SECS}s" |
      awk '{ printf "  Queries completed: %s\n  Queries per second: %s\n", $4, $7 }' >"$dir/out"
  else
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$ws" -d "$dir/queries.txt" -c 1 -T 1 -q "$OUTSTANDING" -l "$SECS" >"$dir/out" 2>&1
  fi
  t1=$(ticks "$shim")
  local rr=0
  if [ -n "$rl" ]; then
    wait "$rl"
    rr=$(awk '{ sub("/s", "", $8); print $8 }' "$dir/rl")
  fi
  local n qps
  n=$(awk '/Queries completed/ { print $3 }' "$dir/out")
  qps=$(awk '/Queries per second/ { print $4 }' "$dir/out")
  awk -v m="$1" -v q="$qps" -v c=$((t1 - t0)) -v hz="$hz" -v n="$n" -v rr="$rr" -v la="$(load)" \
    'BEGIN { cpu = c / hz; printf "%s %.0f %.2f %.0f %s %s\n", m, q, (n > 0 ? cpu * 1e6 / n : 0), (cpu > 0 ? n / cpu : 0), rr, la }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Warm up: the shim's caches, the store's file, the generator's path.
taskset -c 1 dnsperf -s 127.0.0.1 -p "$ws" -d "$dir/queries.txt" -c 1 -T 1 -l 2 >/dev/null 2>&1
taskset -c 1 "$dir/radiusload" -addr "127.0.0.1:$rad" -secret-file "$dir/secret" -rate "$RATE" -conc "$CONC" -duration 2s >/dev/null

echo "RADIUS at $RATE/s; $NAMES listed names, every query a sighting; ${SECS}s per run, $ROUNDS rounds; shim on CPU 0, dnsperf and the generator on CPU 1"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
printf '%-7s %9s %9s %12s %9s %6s\n' mode q/s us/query q/cpu-s radius/s load
for _ in $(seq "$ROUNDS"); do
  for m in $modes; do
    measure "$m" | tee -a "$dir/all" | awk '{ printf "%-7s %9s %9s %12s %9s %6s\n", $1, $2, $3, $4, $5, $6 }'
  done
done
if [ -n "${PROFILE:-}" ]; then
  mkdir -p "$PROFILE"
  taskset -c 1 "$dir/radiusload" -addr "127.0.0.1:$rad" -secret-file "$dir/secret" -rate "$RATE" -conc "$CONC" -duration 12s >/dev/null &
  rl=$!
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$ws" -d "$dir/queries.txt" -c 1 -T 1 -q "$OUTSTANDING" -l 11 >/dev/null 2>&1 &
  dp=$!
  sleep 0.5
  perf record -q -e cpu-clock -g -p "$shim" -o "$PROFILE/radius.perf" -- sleep 10 >/dev/null 2>&1
  wait "$rl" "$dp" || true
  cp "$dir/wormsink" "$PROFILE/wormsink"
  echo "profile: perf report -i $PROFILE/radius.perf --no-children"
fi
echo "== medians of $ROUNDS rounds"
for m in alone radius control; do
  awk -v m="$m" '$1 == m { print $2 }' "$dir/all" | median >"$dir/q-$m"
  awk -v m="$m" '$1 == m { print $4 }' "$dir/all" | median >"$dir/c-$m"
  awk -v m="$m" '$1 == m { print $3 }' "$dir/all" | median >"$dir/u-$m"
done
awk -v qa="$(cat "$dir/q-alone")" -v qr="$(cat "$dir/q-radius")" -v ca="$(cat "$dir/c-alone")" -v cr="$(cat "$dir/c-radius")" \
  -v ua="$(cat "$dir/u-alone")" -v ur="$(cat "$dir/u-radius")" 'BEGIN {
  printf "q/s answered: alone %.0f, with RADIUS %.0f: %+.1f %%\n", qa, qr, (qa > 0 ? (qr - qa) / qa * 100 : 0)
  printf "shim us/query: alone %.2f, with RADIUS %.2f\n", ua, ur
  printf "shim queries per CPU-second: alone %.0f, with RADIUS %.0f: %+.1f %%\n", ca, cr, (ca > 0 ? (cr - ca) / ca * 100 : 0)
}'
# Round by round (each round's runs are seconds apart, so a change in the
# machine's load between rounds cancels): the change in the q/s answered
# with RADIUS against the same round alone, and how busy
# serve kept CPU 0 alone (q/s over queries per CPU-second).
awk '$1 == "alone" { a[++na] = $2; b[na] = $4 } $1 == "radius" { r[++nr] = $2 } END {
  for (i = 1; i <= nr; i++) if (a[i] > 0) print (r[i] - a[i]) / a[i] * 100, (b[i] > 0 ? a[i] / b[i] * 100 : 0) }' "$dir/all" >"$dir/pairs"
printf "q/s with RADIUS against the same round alone: median %+.1f %% (rounds: %s); CPU 0 busy with the shim alone: median %.0f %%\n" \
  "$(cut -d' ' -f1 "$dir/pairs" | median)" "$(cut -d' ' -f1 "$dir/pairs" | awk '{ printf "%s%+.1f", (NR > 1 ? " " : ""), $1 }')" \
  "$(cut -d' ' -f2 "$dir/pairs" | median)"
if [ -n "${CONTROL:-}" ]; then
  awk -v ca="$(cat "$dir/c-alone")" -v cc="$(cat "$dir/c-control")" -v ua="$(cat "$dir/u-alone")" -v uc="$(cat "$dir/u-control")" 'BEGIN {
    printf "control (RADIUS answered on CPU 1, none in serve): shim us/query %.2f, queries per CPU-second %.0f: %+.1f %%\n", uc, cc, (ca > 0 ? (cc - ca) / ca * 100 : 0)
  }'
fi
printf "serve's CPU per RADIUS request, no DNS: %s us\n" "$(awk '$1 == "rad-only" { print $3 }' "$dir/all" | median)"
