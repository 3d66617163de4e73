#!/usr/bin/env bash
# make run: wormsink serve on unprivileged loopback ports with the built-in
# signatures, shipping its log to an abuse desk on a loopback port with a
# fresh SQLite database. Override with ADDR, DNS_PORT, TFTP_PORT,
# METRICS_PORT, DESK_PORT, UPSTREAM, LOG.
# The default ports are ones nothing common listens on (not 5353: mDNS,
# held by avahi on most desktops); README.md lists them.
set -euo pipefail
bin=${1:-bin/wormsink}
dns=${DNS_PORT:-10053}
tftp=${TFTP_PORT:-10069}
metrics=${METRICS_PORT:-10090}
deskport=${DESK_PORT:-10080}
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
# The desk: a fresh database, a first admin with a random password, and a
# sensor token for serve --ship-to. The log is shipped from its start, so
# the desk shows cases from what is already in it.
deskdir=$(mktemp -d "${TMPDIR:-/tmp}/wormsink-desk.XXXXXX")
deskdb="sqlite:$deskdir/desk.db"
password=$(head -c 15 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$password" | "$bin" desk user add admin --role admin --db "$deskdb" >/dev/null
"$bin" desk token add make-run --role sensor --db "$deskdb" >"$deskdir/token" 2>/dev/null
rm -f "$(dirname "$log")/.$(basename "$log").ship"
args+=(--ship-to "http://127.0.0.1:$deskport" --ship-token-file "$deskdir/token")
"$bin" desk --listen "127.0.0.1:$deskport" --db "$deskdb" >"$deskdir/desk.log" 2>&1 &
desk_pid=$!
cat <<EOT
wormsink: DNS on $addr:$dns, TFTP on $addr:$tftp, metrics on http://127.0.0.1:$metrics/metrics
evidence log: $log
Try it from another terminal (the TFTP examples write nothing to disk):
  dig @$addr -p $dns windowsupdate.com        # Blaster's DDoS target: NXDOMAIN, weak evidence
  curl tftp://$addr:$tftp/msblast.exe          # refused, so curl exits 68 by design; the evidence names your address and port
  busybox tftp -g -r msblast.exe -l - $addr $tftp  # refused too, exits 1 (-l -: to stdout, no file)
  $bin report $log                 # who is infected
  tail -f $log                     # the evidence log as it is written
The abuse desk: http://127.0.0.1:$deskport/  (log in as admin, password $password)
  its database and log (removed at exit): $deskdir
Stop with Ctrl-C (SIGTERM); reload signatures with SIGHUP.
EOT
"$bin" "${args[@]}" &
serve_pid=$!
trap 'kill -TERM "$serve_pid" "$desk_pid" 2>/dev/null || true' TERM INT
status=0
wait "$serve_pid" || status=$?
# A trapped signal ends the first wait early: wait for serve to finish.
wait "$serve_pid" 2>/dev/null || true
kill -TERM "$desk_pid" 2>/dev/null || true
wait "$desk_pid" 2>/dev/null || true
rm -rf "$deskdir" # the desk of make run is fresh every time
exit "$status"
