#!/usr/bin/env bash
# CPU per DNS query: the shim against Unbound with the same names as an RPZ,
# at fixed rates, side by side in one run.
#
#   scripts/perf-dns-cpu.sh                  (or: make perf-dns-cpu)
#
# Environment: NAMES (100000 listed names), RATES ("20000 80000" q/s),
# ROUNDS (3), SECS (10 s per measurement), OUTSTANDING (2000 queries in flight),
# CLIENTBUF (4096 KB socket buffers for dnsperf), BIN (a prebuilt wormsink; built
# from the tree when unset), PEAK (1: also measure each server's top rate),
# PERF_RECORD (a file: perf record -g of the shim's first run goes there),
# PERF_STAT (a file: perf stat of the shim's first run, its system calls and
# context switches, goes there),
# NICE (0: a niceness for all servers alike, e.g. -10 on a busy machine so
# that the rates are reached and not capped by the other load on CPU 0),
# BASE (another wormsink binary, measured in the same rounds as "base": a
# before/after comparison that the machine's load hits alike), FLAGS and
# BASE_FLAGS (more serve flags for the shim and for the base, e.g.
# FLAGS=--dns-coalesce=400us: one binary against itself with another setting).
#
# Both servers run at the same time pinned to CPU 0 and are loaded in turn
# (interleaved rounds, so that a change in the machine's load hits both);
# dnsperf runs on CPU 1 with -Q RATE. The query mix is 10 % listed names
# and 90 % from a pool of 1,000 unlisted names that an upstream Unbound
# (on CPU 1, it only sees cache misses) answers, so after the warm-up both
# answer from their caches. Server CPU is utime+stime of /proc/PID/stat
# (all threads) over the run, divided by the queries dnsperf saw answered.
# Prints per-round figures, medians, the ratio shim/Unbound per rate and
# the load average of the machine next to each figure. Loopback only.
set -euo pipefail
NAMES=${NAMES:-100000}
RATES=${RATES:-20000 80000}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
PEAK=${PEAK:-1}
# Queries in flight: on a shared machine a server waits for CPU 0 for
# milliseconds, and dnsperf's default of 100 would cap the rate it reaches.
OUTSTANDING=${OUTSTANDING:-2000}
# dnsperf's socket buffers, in KB: with the kernel's default (208 KB) its
# own socket overflowed when CPU 1 was busy, and each answer dropped there
# held one of the OUTSTANDING slots for dnsperf's 5 s timeout, so both
# servers were measured at whatever rate the lost slots left.
CLIENTBUF=${CLIENTBUF:-4096}
NICE=${NICE:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/wsperfcpu.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for c in dnsperf unbound taskset dig; do
  command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || { echo "perf-dns-cpu: $c is not installed: run \`make deps\`" >&2; exit 1; }
done
cd "$root"
if [ -n "${BIN:-}" ]; then cp "$BIN" "$dir/wormsink"; else go build -o "$dir/wormsink" ./cmd/wormsink; fi

# shellcheck source=scripts/perf-dns-setup.sh
. "$root/scripts/perf-dns-setup.sh"
perf_dns_setup "$NAMES" 1000

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime+stime, all threads
load() { cut -d' ' -f1 /proc/loadavg; }
hz=$(getconf CLK_TCK)

taskset -c 1 /usr/sbin/unbound -d -c "$dir/upstream.conf" 2>"$dir/up.err" & pids+=($!)
wait_dns "$up"
# shellcheck disable=SC2086 # FLAGS and BASE_FLAGS are split into flags
nice -n "$NICE" taskset -c 0 "$dir/wormsink" serve --dns-listen "127.0.0.1:$ws" --tftp-listen "" --upstream "127.0.0.1:$up" \
  --signatures "$dir/sigs.yaml" --sinkhole-ip 192.0.2.66 --log "$dir/evidence.log" --user "" --watch-interval 0 \
  ${FLAGS:-} 2>"$dir/shim.err" & shim=$!
pids+=($shim)
servers=("wormsink $ws $shim")
if [ -n "${BASE:-}" ]; then
  cp "$BASE" "$dir/base"
  # shellcheck disable=SC2086
  nice -n "$NICE" taskset -c 0 "$dir/base" serve --dns-listen "127.0.0.1:$wb" --tftp-listen "" --upstream "127.0.0.1:$up" \
    --signatures "$dir/sigs.yaml" --sinkhole-ip 192.0.2.66 --log "$dir/evidence-base.log" --user "" --watch-interval 0 \
    ${BASE_FLAGS:-} 2>"$dir/base.err" & base=$!
  pids+=($base)
  servers+=("base $wb $base")
fi
nice -n "$NICE" taskset -c 0 /usr/sbin/unbound -d -c "$dir/rpz.conf" 2>"$dir/rpz.err" & rpz=$!
pids+=($rpz)
servers+=("unbound $ub $rpz")
for sv in "${servers[@]}"; do wait_dns "$(echo "$sv" | cut -d' ' -f2)"; done
for p in "$ws" "$ub" ${BASE:+"$wb"}; do # warm the caches: every unlisted name once through the upstream
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$p" -d "$dir/queries.txt" -c 1 -T 1 -l 3 >/dev/null 2>&1
done

# measure LABEL PORT PID RATE: one line "LABEL RATE us/query answered lost
# q/s load latency" (dnsperf's average, in µs).
measure() {
  local t0 t1 done lost q=()
  [ "$4" = peak ] || q=(-Q "$4")
  t0=$(ticks "$3")
  if [ -n "${PERF_RECORD:-}" ] && [ "$1" = wormsink ] && [ ! -e "$PERF_RECORD" ]; then
    perf record -q -e cpu-clock -g -p "$3" -o "$PERF_RECORD" -- sleep "$SECS" >/dev/null 2>&1 &
  fi
  if [ -n "${PERF_STAT:-}" ] && [ "$1" = wormsink ] && [ ! -e "$PERF_STAT" ]; then
    perf stat -x, -o "$PERF_STAT" -p "$3" -e task-clock,context-switches,cpu-migrations \
      -e 'syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_nanosleep,syscalls:sys_enter_futex' \
      -- sleep "$SECS" >/dev/null 2>&1 &
  fi
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$2" -d "$dir/queries.txt" -c 1 -T 1 -q "$OUTSTANDING" -b "$CLIENTBUF" -l "$SECS" "${q[@]}" >"$dir/out" 2>&1
  t1=$(ticks "$3")
  done=$(awk '/Queries completed/ { print $3 }' "$dir/out")
  lost=$(awk '/Queries lost/ { print $3 }' "$dir/out")
  qps=$(awk '/Queries per second/ { print $4 }' "$dir/out")
  lat=$(awk '/Average Latency/ { print $4 }' "$dir/out")
  awk -v l="$1" -v r="$4" -v c=$((t1 - t0)) -v hz="$hz" -v n="$done" -v lost="$lost" -v q="$qps" -v la="$(load)" -v lat="${lat:-0}" \
    'BEGIN { printf "%s %s %.2f %d %d %.0f %s %.0f\n", l, r, (n > 0 ? c / hz * 1e6 / n : 0), n, lost, q, la, lat * 1e6 }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "names listed: $NAMES; mix 10 % listed, 90 % of 1,000 cached names; ${SECS}s per run, $ROUNDS rounds; unbound $(/usr/sbin/unbound -V | awk 'NR == 1 { print $2 }')"
echo "servers at nice $NICE; load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
printf '%-9s %7s %9s %9s %7s %9s %6s %8s\n' server rate us/query answered lost q/s load lat/us
for _ in $(seq "$ROUNDS"); do
  for r in $RATES; do
    for sv in "${servers[@]}"; do
      # shellcheck disable=SC2086 # "label port pid"
      measure $sv "$r" | tee -a "$dir/all" | awk '{ printf "%-9s %7s %9s %9s %7s %9s %6s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
    done
  done
done
echo "== medians of $ROUNDS rounds: server CPU per answered query"
for r in $RATES; do
  w=$(awk -v r="$r" '$1 == "wormsink" && $2 == r { print $3 }' "$dir/all" | median)
  u=$(awk -v r="$r" '$1 == "unbound" && $2 == r { print $3 }' "$dir/all" | median)
  awk -v r="$r" -v w="$w" -v u="$u" 'BEGIN { printf "%6d q/s: wormsink %.2f us, unbound %.2f us, ratio %.2fx unbound\n", r, w, u, (u > 0 ? w / u : 0) }'
  if [ -n "${BASE:-}" ]; then
    b=$(awk -v r="$r" '$1 == "base" && $2 == r { print $3 }' "$dir/all" | median)
    awk -v r="$r" -v b="$b" -v u="$u" 'BEGIN { printf "%6d q/s: base     %.2f us, ratio %.2fx unbound\n", r, b, (u > 0 ? b / u : 0) }'
  fi
done
if [ "$PEAK" = 1 ]; then
  # One 10 s sample of each was as likely to catch a burst of the other
  # load as not (the shim's alone ranged 21,900-42,400 q/s in one hour):
  # interleaved rounds and medians, as for the fixed rates.
  echo "== peak rate (no -Q, ${SECS}s, one dnsperf thread on CPU 1), $ROUNDS rounds"
  for _ in $(seq "$ROUNDS"); do
    measure wormsink "$ws" "$shim" peak | tee -a "$dir/peak"
    measure unbound "$ub" "$rpz" peak | tee -a "$dir/peak"
  done | awk '{ printf "%-9s %7s %9s %9s %7s %9s %6s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
  w=$(awk '$1 == "wormsink" { print $6 }' "$dir/peak" | median)
  u=$(awk '$1 == "unbound" { print $6 }' "$dir/peak" | median)
  awk -v w="$w" -v u="$u" 'BEGIN { printf "median peak: wormsink %d q/s, unbound %d q/s, ratio %.2fx unbound\n", w, u, (u > 0 ? w / u : 0) }'
fi
