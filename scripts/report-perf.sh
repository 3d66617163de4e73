#!/usr/bin/env bash
# Measures `wormsink report --format csv` on all cores against one core and
# `wc -l` (ROUNDS interleaved rounds, medians), then on one core against a jq | awk
# pipeline doing the same per-host grouping, over a large evidence log made
# by testdata/report/gen (10,000,000 lines from 100,000 hosts by default,
# about 2.8 GB in testdata/perf/, which git ignores). Run from the repository
# root; KEEP=1 keeps the log afterwards.
set -euo pipefail
LINES=${LINES:-10000000}
HOSTS=${HOSTS:-100000}
DIR=testdata/perf
BIN=${BIN:-bin/wormsink}
OUT=$(mktemp -d)
made=0
# Only the logs this run made go away (testdata/perf holds other perf files).
trap 'rm -rf "$OUT"; [ "$made" = 0 ] || [ "${KEEP:-0}" = 1 ] || rm -f "$DIR"/sensor*.log' EXIT

go build -o "$BIN" ./cmd/wormsink
if ! ls "$DIR"/sensor*.log >/dev/null 2>&1; then
  # No torn lines: jq stops at the first line that is not JSON.
  go run ./testdata/report/gen -lines "$LINES" -hosts "$HOSTS" -bad=false -dir "$DIR"
  made=1
fi
logs=("$DIR"/sensor*.log)
lines=$(cat "${logs[@]}" | wc -l)
bytes=$(cat "${logs[@]}" | wc -c)
echo "input: ${#logs[@]} files, $lines lines, $bytes bytes"
cat "${logs[@]}" >/dev/null # warm the page cache for both contenders

# All cores against one, and against wc -l, ROUNDS times interleaved (the
# machine may be shared: medians, each within the same rounds); the two
# reports must be byte for byte the same.
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
secs() { local TIMEFORMAT=%R; { time "$@" >"$OUT/last.out"; } 2>&1; }
for _ in $(seq "${ROUNDS:-3}"); do
  secs wc -l "${logs[@]}" >>"$OUT/wc.t"
  secs "$BIN" report --format csv --workers 1 "${logs[@]}" >>"$OUT/one.t"
  cp "$OUT/last.out" "$OUT/one.csv"
  secs "$BIN" report --format csv "${logs[@]}" >>"$OUT/all.t"
  cp "$OUT/last.out" "$OUT/all.csv"
done
w=$(median <"$OUT/wc.t") o=$(median <"$OUT/one.t") a=$(median <"$OUT/all.t")
echo "== all cores against one and wc -l (medians of ${ROUNDS:-3} interleaved rounds)"
awk -v n="$lines" -v w="$w" -v o="$o" -v a="$a" -v c="$(nproc)" 'BEGIN {
  printf "wc -l:                          %.2f s\n", w
  printf "report --format csv --workers 1: %.2f s, %.2f M lines/s, %.1fx wc -l\n", o, n / o / 1e6, o / w
  printf "report --format csv (%d cores):  %.2f s, %.2f M lines/s, %.1fx wc -l\n", c, a, n / a / 1e6, a / w }'
cmp "$OUT/one.csv" "$OUT/all.csv" && echo "outputs: identical"
for wk in 1 "$(nproc)"; do
  /usr/bin/time -f "%M" -o "$OUT/rss" "$BIN" report --format csv --workers "$wk" "${logs[@]}" >/dev/null
  echo "peak RSS, --workers $wk: $(cat "$OUT/rss") KiB"
done

echo "== wormsink report --format csv (one core: taskset -c 0, GOMAXPROCS=1)"
start=$(date +%s.%N)
taskset -c 0 env GOMAXPROCS=1 /usr/bin/time -v "$BIN" report --format csv "${logs[@]}" >"$OUT/ws.csv" 2>"$OUT/ws.time"
end=$(date +%s.%N)
ws=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
grep -E 'Elapsed|Maximum resident|User time|System time' "$OUT/ws.time"

echo "== jq -r '[.host, .time, (.count // 1)] | @tsv' | awk (grouping by host)"
start=$(date +%s.%N)
cat "${logs[@]}" | jq -r '[.host, .time, (.count // 1)] | @tsv' |
  awk -F'\t' '$1 != "" { n[$1] += $3; if (!($1 in f) || $2 < f[$1]) f[$1] = $2; if ($2 > l[$1]) l[$1] = $2 }
    END { for (h in n) print h "," f[h] "," l[h] "," n[h] }' >"$OUT/jq.csv"
end=$(date +%s.%N)
jqt=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')

ws_hosts=$(($(wc -l <"$OUT/ws.csv") - 1))
jq_hosts=$(wc -l <"$OUT/jq.csv")
ws_events=$(tail -n +2 "$OUT/ws.csv" | awk -F, '{ s += $4 } END { print s }')
jq_events=$(awk -F, '{ s += $4 } END { print s }' "$OUT/jq.csv")
echo "hosts: wormsink $ws_hosts, jq $jq_hosts; events: wormsink $ws_events, jq $jq_events"
awk -v n="$lines" -v w="$ws" -v j="$jqt" 'BEGIN {
  printf "wormsink: %.2f s, %.0f lines/s\njq | awk: %.2f s, %.0f lines/s\nspeed-up: %.1fx\n", w, n / w, j, n / j, j / w }'
if [ "$ws_hosts" != "$jq_hosts" ] || [ "$ws_events" != "$jq_events" ]; then
  echo "report-perf: the two disagree" >&2
  exit 1
fi
