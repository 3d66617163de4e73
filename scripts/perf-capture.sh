#!/usr/bin/env bash
# Live capture performance, side by side with tcpdump: tcpreplay sends a
# mirror-port replay at top speed over a veth pair into a network namespace,
# where `wormsink serve --capture` and tcpdump (with the filter expression
# equivalent to the built-in signatures) both capture it. Two replays: the
# mixed one (40 % IPv6 TCP, the rest IPv4 TCP/UDP, one worm request in
# 10,000, some behind IPv6 extension headers or in fragments) and the same
# with every frame VLAN-tagged (every third QinQ). For each: the frames the
# kernel filters passed, kernel drops, and the worm requests each found.
#   PACKETS=400000 WORKERS=2 RING_MB=64 scripts/perf-capture.sh
# Needs root, tcpreplay, tcpdump, curl, jq. Everything it makes (two
# namespaces, the veth pair inside them, files under a temp dir and
# testdata/perf/, which git ignores) is removed or kept there.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "perf-capture needs root (network namespaces, AF_PACKET)" >&2; exit 1; }
packets=${PACKETS:-400000}
workers=${WORKERS:-$(nproc)}
ring=${RING_MB:-64}
ns_r=ws15pr$$ ns_c=ws15pc$$
tmp=$(mktemp -d /tmp/ws15-perf.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns_r" 2>/dev/null || true
  ip netns del "$ns_c" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p testdata/perf bin
go build -o bin/wormsink ./cmd/wormsink
for v in false true; do
  f=testdata/perf/replay-vlan-$v-$packets.pcap
  if [ ! -s "$f" ]; then
    go test ./wire -run '^TestReplayCapture$' -count=1 -args -replay-out="$PWD/$f" -replay-packets="$packets" -replay-vlan=$v >&2
  fi
done

ip netns add "$ns_r"
ip netns add "$ns_c"
ip -n "$ns_r" link add ws15r type veth peer name ws15c netns "$ns_c"
ip -n "$ns_r" link set ws15r up
ip -n "$ns_c" link set ws15c up
ip -n "$ns_c" link set lo up

# The tcpdump expression equivalent to wormsink's kernel filter for the
# built-in set: its UDP and TCP ports (TCP both ways, for the handshake),
# ICMP echo requests, every fragment, IPv6 behind extension headers (whole:
# tcpdump's protochain cannot follow them behind a VLAN tag), and all of it
# behind up to two VLAN tags.
FILTER=$(go test ./wire -run '^TestTcpdumpExpression$' -count=1 -v -args -print-tcpdump | grep -F ' or (vlan and (')

metric() { # metric NAME: its value from wormsink's /metrics
  ip netns exec "$ns_c" curl -sf http://127.0.0.1:9915/metrics | awk -v m="$1" '$1 == m { print $2 }'
}
requesters() { # requesters LOG: distinct hosts asking for a worm file
  jq -r 'select(.event == "wire_match" and .role == "requester") | .host' "$1" | sort -u | wc -l
}

printf '%-6s %-9s %9s %10s %8s %8s %6s %s\n' replay capturer sent passed drops worms ratio "replay rate"
for v in false true; do
  f=testdata/perf/replay-vlan-$v-$packets.pcap
  want=$((packets / 10000))
  rm -f "$tmp"/*
  ip netns exec "$ns_c" bin/wormsink serve --capture ws15c --dns-listen "" --tftp-listen "" \
    --metrics-listen 127.0.0.1:9915 --log "$tmp/ws.log" --capture-workers "$workers" --capture-ring-mb "$ring" \
    2>"$tmp/ws.err" &
  ws=$!
  pids+=("$ws")
  # -Z root: tcpdump would otherwise chown its output file to its own user.
  ip netns exec "$ns_c" tcpdump -n -i ws15c -Z root -w "$tmp/td.pcap" "$FILTER" 2>"$tmp/td.err" &
  td=$!
  pids+=("$td")
  for _ in $(seq 300); do
    kill -0 "$td" "$ws" 2>/dev/null || { cat "$tmp/td.err" "$tmp/ws.err" >&2; exit 1; }
    [ -n "$(metric wormsink_capture_packets_total 2>/dev/null)" ] && grep -q 'listening on' "$tmp/td.err" && break
    sleep 0.1
  done
  grep -q 'listening on' "$tmp/td.err" || { cat "$tmp/td.err" "$tmp/ws.err" >&2; exit 1; }
  ip netns exec "$ns_r" tcpreplay -i ws15r --topspeed "$f" >"$tmp/replay.out" 2>&1
  rate=$(awk '/Rated:/ { print $(NF-1), $NF; exit }' "$tmp/replay.out")
  # Wait until wormsink has read all the kernel passed to it (or dropped).
  prev=-1
  for _ in $(seq 300); do
    k=$(metric wormsink_capture_kernel_packets_total) r=$(metric wormsink_capture_packets_total) d=$(metric wormsink_capture_kernel_drops_total)
    [ "$((r + d))" -ge "$k" ] && [ "$k" = "$prev" ] && break
    prev=$k
    sleep 0.2
  done
  kill -INT "$td"
  wait "$td" || true
  kill -TERM "$ws"
  wait "$ws" || true
  pids=()
  sent=$(awk '/Actual:/ { print $2; exit }' "$tmp/replay.out")
  tdpass=$(awk '/received by filter/ { print $1 }' "$tmp/td.err")
  tddrop=$(awk '/dropped by kernel/ { print $1 }' "$tmp/td.err")
  bin/wormsink scan "$tmp/td.pcap" >"$tmp/td.log" 2>/dev/null || true
  name=plain; [ "$v" = true ] && name=vlan
  printf '%-6s %-9s %9s %10s %8s %5s/%-3s %6s %s\n' "$name" wormsink "$sent" "$k" "$d" "$(requesters "$tmp/ws.log")" "$want" \
    "$(awk -v a="$k" -v b="$tdpass" 'BEGIN { printf "%.2f", a / b }')" "$rate"
  printf '%-6s %-9s %9s %10s %8s %5s/%-3s\n' "$name" tcpdump "$sent" "$tdpass" "$tddrop" "$(requesters "$tmp/td.log")" "$want"
done
