# Sourced by the DNS benchmarks (scripts/perf-dns-cpu.sh, testdata/dns/perf.sh):
# the one setup they share, in $dir, for the shim and Unbound with the same
# names as an RPZ.
#
#   perf_dns_setup NAMES POOL
#
# writes $dir/sigs.yaml (NAMES listed names in one signature, checked) and
# $dir/rpz.zone (the same set exported as an RPZ), $dir/queries.txt (10 %
# listed names, 90 % from a pool of POOL cacheable unlisted names under
# bench.test), $dir/upstream.conf (an Unbound answering every name under
# bench.test on port $up) and $dir/rpz.conf (an Unbound serving the RPZ on
# port $ub, forwarding to it); sets the free ports up, ub, ws and wb (for a
# second shim). $dir/wormsink must be built. Loopback only.
#
#   wait_dns PORT
#
# waits until something on 127.0.0.1:PORT answers a name of the pool
# through the upstream (60 s at most).

perf_dns_setup() {
  local names=$1 pool=$2
  awk -v n="$names" 'BEGIN {
    print "serial: 1\nsignatures:\n  - id: perf\n    family: Perf\n    domains:"
    for (i = 0; i < n; i++) printf "      - w%07d.worm.test\n", i
  }' >"$dir/sigs.yaml"
  "$dir/wormsink" sigs check "$dir/sigs.yaml" >/dev/null
  "$dir/wormsink" sigs export --format rpz --sinkhole-ip 192.0.2.66 "$dir/sigs.yaml" >"$dir/rpz.zone"

  probe=$(awk -v p="$pool" 'BEGIN { printf "u%0*d.bench.test", length(p), 1 }')
  awk -v n="$names" -v p="$pool" 'BEGIN {
    srand(1)
    w = length(p)
    for (i = 0; i < 200000; i++) {
      if (i % 10 == 0) printf "w%07d.worm.test A\n", int(rand() * n)
      else printf "u%0*d.bench.test A\n", w, int(rand() * p)
    }
  }' >"$dir/queries.txt"

  up=$(perf_dns_port); ub=$(perf_dns_port); ws=$(perf_dns_port); wb=$(perf_dns_port)
  local common="  do-ip6: no
  do-daemonize: no
  chroot: \"\"
  username: \"\"
  directory: \"$dir\"
  use-syslog: no
  logfile: \"\"
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  local-zone: \"test.\" nodefault"
  cat >"$dir/upstream.conf" <<EOC
server:
  interface: 127.0.0.1
  port: $up
  pidfile: "$dir/up.pid"
$common
  module-config: "iterator"
  local-zone: "bench.test." redirect
  local-data: "bench.test. 300 IN A 192.0.2.1"
remote-control:
  control-enable: no
EOC
  cat >"$dir/rpz.conf" <<EOC
server:
  interface: 127.0.0.1
  port: $ub
  pidfile: "$dir/rpz.pid"
$common
  num-threads: 1
  # The shim's own default (dnsblock.DefaultReadBuffer): the same room for
  # a burst on both sides.
  so-rcvbuf: 4m
  module-config: "respip iterator"
  do-not-query-localhost: no
  msg-cache-size: 64m
  rrset-cache-size: 128m
rpz:
  name: wormsink.rpz.
  zonefile: "$dir/rpz.zone"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$up
remote-control:
  control-enable: no
EOC
}

# perf_dns_port prints a free UDP port of 127.0.0.1.
# perf_dns_port prints a loopback port free for both UDP and TCP (the DNS
# servers listen on both; a port free for UDP alone was once held on TCP by
# another program's connection, and the shim could not start).
perf_dns_port() {
  /usr/bin/python3 -c '
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break'
}

wait_dns() { # port
  for _ in $(seq 1 600); do
    if dig @127.0.0.1 -p "$1" +tries=1 +time=1 +short "$probe" A 2>/dev/null | grep -q 192.0.2.1; then return 0; fi
    sleep 0.1
  done
  echo "perf: nothing answers on port $1" >&2
  tail -n 3 "$dir"/*.err >&2 2>/dev/null || true
  return 1
}
