#!/usr/bin/env bash
# `wormsink report --format csv` against `wc -l` on logs of every shape
# internal/loggen makes (not the evidence writer's own: lines of 150 to
# 400 bytes, optional fields present or not, IPv4 and IPv6, 100,000 and
# 1,000,000 hosts, many sensors concatenated, interleaved or shuffled over
# days), MIX_LINES lines each (2,000,000 by default, about 4.4 GB in all in
# testdata/perf/mix/, which git ignores). Per variant, ROUNDS interleaved
# rounds of wc -l, the report on one worker and on all cores, medians, the
# ratio to wc -l, and a check that the two reports are byte for byte the
# same, and the parser alone on all cores with its ratio to wc -l (the
# floor under any report of the log). BASE=old-binary adds the old
# binary's report on all cores in the same rounds (before/after in one
# run). VARIANTS=mix,ipv6 picks some.
# Run from the repository root; KEEP=1 keeps the logs afterwards.
set -euo pipefail
LINES=${MIX_LINES:-2000000}
DIR=${MIX_DIR:-testdata/perf/mix}
BIN=${BIN:-bin/wormsink}
BASE=${BASE:-}
ROUNDS=${ROUNDS:-3}
OUT=$(mktemp -d)
made=()
trap 'rm -rf "$OUT"; [ "${KEEP:-0}" = 1 ] || for f in "${made[@]}"; do rm -f "$f"; done' EXIT

go build -o "$BIN" ./cmd/wormsink
go build -o "$OUT/parsefloor" ./testdata/report/parsefloor
mapfile -t names < <(go run ./testdata/report/mixgen -list | cut -f1)
if [ -n "${VARIANTS:-}" ]; then IFS=, read -r -a names <<<"$VARIANTS"; fi
mkdir -p "$DIR"
for v in "${names[@]}"; do
  # A log of another size is made again: the ratio depends on it.
  if [ ! -f "$DIR/$v.log" ] || [ "$(wc -l <"$DIR/$v.log")" != "$LINES" ]; then
    go run ./testdata/report/mixgen -lines "$LINES" -variants "$v" -dir "$DIR"
    made+=("$DIR/$v.log")
  fi
done

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# run TAG CMD...: CMD's wall seconds to $OUT/TAG.t, its CPU seconds (user
# + system) to $OUT/TAG.c, its output to $OUT/TAG.out. On a shared machine
# the wall time is mostly waiting for a core; the CPU time is the work.
run() {
  local tag=$1 e u s
  shift
  /usr/bin/time -f '%e %U %S' -o "$OUT/time" "$@" >"$OUT/$tag.out" 2>"$OUT/$tag.err" || true
  read -r e u s <"$OUT/time"
  echo "$e" >>"$OUT/$tag.t"
  awk -v u="$u" -v s="$s" 'BEGIN { print u + s }' >>"$OUT/$tag.c"
}
echo "== report --format csv against wc -l, $LINES lines a log, $(nproc) cores, medians of $ROUNDS interleaved rounds"
echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg); wall s (CPU s)"
printf '%-8s %7s %6s %6s %12s %12s %6s %6s %12s %6s %6s %6s %s\n' variant bytes/l hosts "wc -l" 1-core all-cores x-wc1 x-wc "${BASE:+base}" "${BASE:+x-wc}" parse x-wc outputs
worst=0
for v in "${names[@]}"; do
  f="$DIR/$v.log"
  cat "$f" >/dev/null # the page cache, for every contender alike
  rm -f "$OUT"/*.t "$OUT"/*.c
  for _ in $(seq "$ROUNDS"); do
    run wc wc -l "$f"
    run one "$BIN" report --format csv --workers 1 "$f"
    run all "$BIN" report --format csv "$f"
    [ -z "$BASE" ] || run base "$BASE" report --format csv "$f"
  done
  same=identical
  cmp -s "$OUT/one.out" "$OUT/all.out" || same=DIFFER
  if [ -n "$BASE" ] && ! cmp -s "$OUT/all.out" "$OUT/base.out"; then same="$same (base differs)"; fi
  w=$(median <"$OUT/wc.t") o=$(median <"$OUT/one.t") a=$(median <"$OUT/all.t")
  oc=$(median <"$OUT/one.c") ac=$(median <"$OUT/all.c")
  b="" bc=""
  if [ -n "$BASE" ]; then b=$(median <"$OUT/base.t") bc=$(median <"$OUT/base.c"); fi
  # The parser alone on all cores, nothing counted: the floor under any
  # report of this log (testdata/report/parsefloor).
  pf=$("$OUT/parsefloor" -rounds "$ROUNDS" "$f" | awk '$1 == "parse" { $1 = ""; print }' | tr ' ' '\n' | grep . | median)
  bpl=$(($(stat -c %s "$f") / LINES))
  hosts=$(($(wc -l <"$OUT/one.out") - 1))
  awk -v v="$v" -v bpl="$bpl" -v h="$hosts" -v w="$w" -v o="$o" -v oc="$oc" -v a="$a" -v ac="$ac" -v b="$b" -v bc="$bc" -v pf="$pf" -v same="$same" 'BEGIN {
    w = (w > 0 ? w : 0.01) # /usr/bin/time counts hundredths
    bs = ""; bx = ""
    if (b != "") { bs = sprintf("%.2f (%.2f)", b, bc); bx = sprintf("%.1fx", b / w) }
    printf "%-8s %7d %6d %5.2fs %12s %12s %5.1fx %5.1fx %12s %6s %5.2fs %5.1fx %s\n", v, bpl, h, w,
      sprintf("%.2f (%.2f)", o, oc), sprintf("%.2f (%.2f)", a, ac), o / w, a / w, bs, bx, pf, pf / w, same }'
  worst=$(awk -v a="$a" -v w="$w" -v m="$worst" 'BEGIN { if (w <= 0) w = 0.01; r = a / w; print (r > m ? r : m) }')
  [ "${same#identical}" != "$same" ] || { echo "report-perf: $v: one core and all cores disagree" >&2; exit 1; }
done
echo "worst all-core ratio to wc -l: ${worst}x (goal: at most 4x on an idle machine)"
