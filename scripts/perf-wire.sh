#!/usr/bin/env bash
# Packet matcher performance, side by side: makes testdata/perf/mixed.pcap
# (2,000,000 mixed packets, mostly not TFTP; git-ignored) unless it exists,
# warms it into the page cache, then times cat, wormsink scan on one core
# (--workers 1) and on all cores, ROUNDS times interleaved (the machine may
# be shared: the medians are compared, each within the same rounds), checks
# both scans wrote the same bytes, and times the tcpdump filter and (when
# installed) tshark.
#   PACKETS=2000000 ROUNDS=5 PCAP=testdata/perf/mixed.pcap scripts/perf-wire.sh
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${PACKETS:-2000000}
rounds=${ROUNDS:-5}
file=${PCAP:-testdata/perf/mixed.pcap}
mkdir -p "$(dirname "$file")"
if [ ! -s "$file" ]; then
  go test ./wire -run '^TestMixedCapture$' -count=1 -args -perf-out="$(realpath -m "$file")" -perf-packets="$packets" >&2
fi
go build -o bin/wormsink ./cmd/wormsink
tmp=$(mktemp -d /tmp/wormsink-perf-wire.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cat "$file" >/dev/null # into the page cache
# t CMD...: wall seconds of CMD (bash's time keyword, no external tools).
t() { local TIMEFORMAT=%R; { time "$@" >"${OUT:-/dev/null}" 2>"${ERR:-/dev/null}"; } 2>&1; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ls -l "$file"
for _ in $(seq "$rounds"); do
  t cat "$file" >>"$tmp/cat"
  OUT=$tmp/one.out ERR=$tmp/one.err t bin/wormsink scan --workers 1 "$file" >>"$tmp/one"
  OUT=$tmp/all.out ERR=$tmp/all.err t bin/wormsink scan "$file" >>"$tmp/all"
done
c=$(median <"$tmp/cat") o=$(median <"$tmp/one") a=$(median <"$tmp/all")
echo "cat:                         $c s (median of $rounds)"
echo "wormsink scan --workers 1:   $o s  $(awk -v a="$o" -v b="$c" 'BEGIN { printf "%.1fx cat", a / b }')"
echo "wormsink scan (all $(nproc) cores): $a s  $(awk -v a="$a" -v b="$c" 'BEGIN { printf "%.1fx cat", a / b }')"
cat "$tmp/all.err"
if cmp -s "$tmp/one.out" "$tmp/all.out"; then echo "outputs: identical ($(wc -l <"$tmp/all.out") lines)"; else echo "outputs DIFFER" >&2; exit 1; fi
if [ -x /usr/bin/time ]; then
  for w in 1 "$(nproc)"; do
    /usr/bin/time -f "%M" -o "$tmp/rss" bin/wormsink scan --workers "$w" "$file" >/dev/null 2>&1
    echo "peak RSS, --workers $w: $(cat "$tmp/rss") KiB"
  done
fi
# To stdout: tcpdump run as root hands a file named by -w to its own user.
echo "tcpdump filter:   $(t tcpdump -r "$file" -w - 'udp dst port 69') s"
if command -v tshark >/dev/null; then
  # tshark reads ~35,000 packets/s: time the first TSHARK_PACKETS only.
  n=${TSHARK_PACKETS:-500000}
  echo "tshark ($n pkts): $(t tshark -r "$file" -c "$n" -Y 'tftp.opcode == 1') s"
fi
