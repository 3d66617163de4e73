#!/usr/bin/env bash
# Remakes the real captures in testdata/pcap/real/ with real tools: tcpdump
# records while tftp-hpa, curl and atftp ask a real in.tftpd (tftpd-hpa) for
# worm and legitimate files. Everything runs inside a network namespace this
# script creates (so port 69 is ours and nothing leaves the machine), and the
# namespace is removed at the end. Needs root, tcpdump, tftp, curl, atftp,
# in.tftpd (scripts/deps.sh installs them).
#
# The crafted captures (VLAN, QinQ, IPv6, fragments, malformed requests...)
# are written by the generator: go test ./wire -run TestGenerateCrafted -update
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$here/real
mkdir -p "$out"
ns=wsmk$$
work=$(mktemp -d)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

in_ns() { ip netns exec "$ns" "$@"; }

ip netns add "$ns"
in_ns ip link set lo up

# The files served. Worm names hold a harmless stand-in, never a worm.
srv=$work/srv
mkdir -p "$srv/pxelinux.cfg"
for f in msblast.exe penis32.exe dllhost.exe pxelinux.0 router-confg mirai.arm7 tftp1.sh tftp2.sh; do
  printf 'wormsink test stand-in for %s\n' "$f" >"$srv/$f"
done
head -c 6176 /dev/zero | tr '\0' 'x' >"$srv/msblast.exe" # Blaster's size: 13 blocks
printf 'default linux\n' >"$srv/pxelinux.cfg/default"

# -a with an explicit IP fails (66) in a namespace with only lo: glibc's
# AI_ADDRCONFIG ignores loopback addresses. The namespace is ours, so bind all.
ip netns exec "$ns" /usr/sbin/in.tftpd -L -s "$srv" -a :69 &
pids+=($!)

# capture FILE IFACE CMD...: tcpdump on IFACE while CMD runs in the namespace.
capture() {
  local file=$1 iface=$2
  shift 2
  local log=$work/tcpdump.log
  : >"$log"
  # Started directly (not through a function) so $! is tcpdump itself.
  ip netns exec "$ns" tcpdump -i "$iface" --immediate-mode -U -n -s 0 -w "$out/$file" 'udp or icmp or icmp6' 2>"$log" &
  local tp=$!
  # Ready when tcpdump says it is listening.
  for _ in $(seq 100); do
    grep -q 'listening on' "$log" && break
    sleep 0.05
  done
  grep -q 'listening on' "$log" || { cat "$log" >&2; exit 1; }
  (cd "$work" && in_ns timeout 20 "$@") || true
  # Let the last replies land, then stop tcpdump cleanly so the file is whole.
  sleep 0.3
  # Background jobs of a script ignore SIGINT; tcpdump ends cleanly on TERM too.
  kill -TERM "$tp"
  wait "$tp" || true
  echo "made $file" >&2
}

capture tftp-hpa-msblast.pcap lo tftp -m binary 127.0.0.1 -c get msblast.exe
capture tftp-hpa-netascii-dllhost.pcap lo tftp -m ascii 127.0.0.1 -c get dllhost.exe
capture curl-options-penis32.pcap lo curl -s -o /dev/null --tftp-blksize 1024 tftp://127.0.0.1/penis32.exe
capture atftp-path-msblast.pcap lo atftp --get -r /MSBLAST.EXE -l "$work/got" 127.0.0.1 69
capture legit-pxe-router.pcap lo sh -c 'tftp -m binary 127.0.0.1 -c get pxelinux.0;
  tftp -m binary 127.0.0.1 -c get pxelinux.cfg/default; curl -s -o /dev/null tftp://127.0.0.1/router-confg'
capture any-sll2-msblast.pcap any tftp -m binary 127.0.0.1 -c get msblast.exe
# Today's loaders, as their published command lines run them: the Mirai
# loader's busybox fetch, then the Gafgyt infect line's two TFTP fetches.
capture busybox-mirai-gafgyt-loader.pcap lo sh -c 'busybox tftp -g -l dvrHelper -r mirai.arm7 127.0.0.1;
  tftp 127.0.0.1 -c get tftp1.sh; busybox tftp -r tftp2.sh -g 127.0.0.1'

gzip -9 -n -c "$out/tftp-hpa-msblast.pcap" >"$out/tftp-hpa-msblast.pcap.gz"
chown -R "$(id -u):$(id -g)" "$out" # tcpdump wrote them as its own user
ls -l "$out" >&2

# The crafted captures come from their generator.
(cd "$here/../.." && go test ./wire -run '^TestCraftedUpToDate$' -count=1 -update)
