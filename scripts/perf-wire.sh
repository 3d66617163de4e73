#!/usr/bin/env bash
# Packet matcher performance, side by side: makes testdata/perf/mixed.pcap
# (2,000,000 mixed packets, mostly not TFTP; git-ignored) unless it exists,
# warms it into the page cache, then times cat, wormsink scan, the tcpdump
# filter and (when installed) tshark on it.
#   PACKETS=2000000 scripts/perf-wire.sh
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${PACKETS:-2000000}
file=testdata/perf/mixed.pcap
mkdir -p testdata/perf
if [ ! -s "$file" ]; then
  go test ./wire -run '^TestMixedCapture$' -count=1 -args -perf-out="$PWD/$file" -perf-packets="$packets" >&2
fi
go build -o bin/wormsink ./cmd/wormsink
cat "$file" >/dev/null # into the page cache
# t CMD...: wall seconds of CMD (bash's time keyword, no external tools).
t() { local TIMEFORMAT=%R; { time "$@" >/dev/null 2>"${ERR:-/dev/null}"; } 2>&1; }
ls -l "$file"
echo "cat:              $(t cat "$file") s"
ERR=/tmp/wormsink-scan.err
echo "wormsink scan:    $(t bin/wormsink scan "$file") s"
cat /tmp/wormsink-scan.err
ERR=/dev/null
echo "tcpdump filter:   $(t tcpdump -r "$file" -w /dev/null 'udp dst port 69') s"
if command -v tshark >/dev/null; then
  # tshark reads ~35,000 packets/s: time the first TSHARK_PACKETS only.
  n=${TSHARK_PACKETS:-500000}
  echo "tshark ($n pkts): $(t tshark -r "$file" -c "$n" -Y 'tftp.opcode == 1') s"
fi
