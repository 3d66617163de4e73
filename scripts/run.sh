#!/usr/bin/env bash
# make run: wormsink serve on unprivileged loopback ports with the built-in
# signatures. Override with ADDR, DNS_PORT, TFTP_PORT, METRICS_PORT, UPSTREAM, LOG.
# The default ports are ones nothing common listens on (not 5353: mDNS,
# held by avahi on most desktops); README.md lists them.
set -euo pipefail
bin=${1:-bin/wormsink}
dns=${DNS_PORT:-10053}
tftp=${TFTP_PORT:-10069}
metrics=${METRICS_PORT:-10090}
log=${LOG:-${TMPDIR:-/tmp}/wormsink-evidence.jsonl}
# The sinkhole serves on 127.0.0.2, so clients on this machine reach it from
# 127.0.0.1: wormsink never records its own address as an infected host.
addr=${ADDR:-127.0.0.2}
args=(serve --dns-listen "$addr:$dns" --tftp-listen "$addr:$tftp"
      --metrics-listen "127.0.0.1:$metrics" --log "$log" --user "")
if [ -n "${UPSTREAM:-}" ]; then
  args+=(--upstream "$UPSTREAM")
elif ! grep -qs '^nameserver' /etc/resolv.conf; then
  # No resolver to forward to: listed names are still answered, others SERVFAIL.
  args+=(--upstream 127.0.0.1:9)
fi
cat <<EOT
wormsink: DNS on $addr:$dns, TFTP on $addr:$tftp, metrics on http://127.0.0.1:$metrics/metrics
evidence log: $log
Try it from another terminal (the TFTP examples write nothing to disk):
  dig @$addr -p $dns windowsupdate.com        # Blaster's DDoS target: NXDOMAIN, weak evidence
  curl tftp://$addr:$tftp/msblast.exe          # refused, so curl exits 68 by design; the evidence names your address and port
  busybox tftp -g -r msblast.exe -l - $addr $tftp  # refused too, exits 1 (-l -: to stdout, no file)
  $bin report $log                 # who is infected
  tail -f $log                     # the evidence log as it is written
Stop with Ctrl-C (SIGTERM); reload signatures with SIGHUP.
EOT
exec "$bin" "${args[@]}"
