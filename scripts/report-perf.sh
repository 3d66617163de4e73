#!/usr/bin/env bash
# Measures `wormsink report --format csv` on one core against a jq | awk
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
trap 'rm -rf "$OUT"; [ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"' EXIT

go build -o "$BIN" ./cmd/wormsink
if ! ls "$DIR"/sensor*.log >/dev/null 2>&1; then
  # No torn lines: jq stops at the first line that is not JSON.
  go run ./testdata/report/gen -lines "$LINES" -hosts "$HOSTS" -bad=false -dir "$DIR"
fi
logs=("$DIR"/sensor*.log)
lines=$(cat "${logs[@]}" | wc -l)
bytes=$(cat "${logs[@]}" | wc -c)
echo "input: ${#logs[@]} files, $lines lines, $bytes bytes"
cat "${logs[@]}" >/dev/null # warm the page cache for both contenders

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
