#!/usr/bin/env bash
# Packet matcher performance, side by side: makes testdata/perf/mixed.pcap
# (2,000,000 mixed packets, mostly not TFTP; git-ignored) unless it exists,
# warms it into the page cache, then times cat, wormsink scan, the tcpdump
# filter and (when installed) tshark on it.
#   PACKETS=2000000 PCAP=testdata/perf/mixed.pcap scripts/perf-wire.sh
# It changes nothing outside the work tree and its own temp directory: the
# tcpdump contender writes to stdout, because tcpdump run as root hands a
# file named by -w to its own user (for -w /dev/null: /dev/null itself).
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${PACKETS:-2000000}
file=${PCAP:-testdata/perf/mixed.pcap}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$file")"
if [ ! -s "$file" ]; then
  go test ./wire -run '^TestMixedCapture$' -count=1 -args -perf-out="$(realpath -m "$file")" -perf-packets="$packets" >&2
fi
go build -o bin/wormsink ./cmd/wormsink
cat "$file" >/dev/null # into the page cache
# t CMD...: wall seconds of CMD (bash's time keyword, no external tools).
t() { local TIMEFORMAT=%R; { time "$@" >/dev/null 2>"${ERR:-/dev/null}"; } 2>&1; }
ls -l "$file"
echo "cat:              $(t cat "$file") s"
ERR=$tmp/scan.err
echo "wormsink scan:    $(t bin/wormsink scan "$file") s"
cat "$tmp/scan.err"
ERR=/dev/null
echo "tcpdump filter:   $(t tcpdump -r "$file" -w - 'udp dst port 69') s"
if command -v tshark >/dev/null; then
  # tshark reads ~35,000 packets/s: time the first TSHARK_PACKETS only.
  n=${TSHARK_PACKETS:-500000}
  echo "tshark ($n pkts): $(t tshark -r "$file" -c "$n" -Y 'tftp.opcode == 1') s"
fi
