#!/usr/bin/env bash
# Installs the Debian packages wormsink's tests use, only those missing.
# Services that packages would start (unbound, named, tftpd-hpa) are kept stopped
# (policy-rc.d) and, once installed, disabled, so that after a reboot they
# do not hold ports 53 and 69: the tests start their own copies on loopback
# ports. Only the packages this run installs (with their dependencies) are
# touched; services of packages already installed stay as they were.
#   scripts/deps.sh                            install what is missing
#   scripts/deps.sh --disable-services PKG...  only disable PKG's services
# DEPS_DRY_RUN=1 prints the service commands instead of running them.
set -euo pipefail

run() {
  if [ -n "${DEPS_DRY_RUN:-}" ]; then echo "$*"; else "$@" >/dev/null 2>&1; fi
}

# disable_services PKG...: disable every service the packages ship, as
# systemd units and as SysV init scripts (machines without systemd).
disable_services() {
  local pkg f
  for pkg in "$@"; do
    while read -r f; do
      case "$f" in
        /lib/systemd/system/*@*|/usr/lib/systemd/system/*@*) ;; # templates: enabled per instance
        /lib/systemd/system/*.service|/lib/systemd/system/*.socket|/lib/systemd/system/*.timer|\
        /usr/lib/systemd/system/*.service|/usr/lib/systemd/system/*.socket|/usr/lib/systemd/system/*.timer)
          if command -v systemctl >/dev/null 2>&1; then
            # Works without a running systemd too (it edits the symlinks).
            run systemctl --no-reload disable "${f##*/}" || true
          fi ;;
        /etc/init.d/*)
          if command -v update-rc.d >/dev/null 2>&1; then
            run update-rc.d "${f##*/}" disable || true
          fi ;;
      esac
    done < <(dpkg -L "$pkg" 2>/dev/null)
  done
}

if [ "${1:-}" = --disable-services ]; then
  shift
  disable_services "$@"
  exit 0
fi

# command (or a path, where the tests need that one) -> Debian package.
# internal/testutil's TestDepsInstallWhatTestsRun fails when a test or a
# script runs a program this map leaves out.
declare -A need=(
  [dig]=dnsutils
  [tftp]=tftp-hpa
  [tcpdump]=tcpdump
  [taskset]=util-linux # make perf-dns-cpu: servers pinned to CPU 0
  [perf]=linux-perf # make perf-dns-cpu PERF_RECORD=FILE
  [unbound]=unbound
  [unbound-checkconf]=unbound
  [named]=bind9
  [named-checkconf]=bind9-utils
  [tsig-keygen]=bind9
  [pdns_recursor]=pdns-recursor
  [curl]=curl
  [atftp]=atftp
  [in.tftpd]=tftpd-hpa
  [dnsperf]=dnsperf
  [jq]=jq
  [ip]=iproute2
  [unshare]=util-linux
  [ss]=iproute2
  [nft]=nftables
  [busybox]=busybox
  [setpriv]=util-linux
  [git]=git
  [systemd-analyze]=systemd
  [make]=make
  [chromium]=chromium
  # the resolvers and the rule parser the export tests use
  [kresd]=knot-resolver
  [dnsmasq]=dnsmasq
  [suricata-update]=suricata-update
  [tcpreplay]=tcpreplay # make perf-capture
  [logrotate]=logrotate
  [bird]=bird2 # BGP peers of the quarantine tests
  [birdc]=bird2
  [vtysh]=frr
  [/usr/bin/python3]=python3 # the xARF schema check: Debian's, not a pyenv or venv one
  [git]=git
  [systemd-analyze]=systemd
  [bc]=bc # make perf-rpz
  [/usr/bin/time]=time # make perf-wire: peak RSS
  # attribution: a real RADIUS server and client, conntrack NAT logging
  [freeradius]=freeradius
  [radclient]=freeradius-utils
  [ulogd]=ulogd2
  [sysctl]=procps # conntrack timestamps in the NAT namespace
  # the signature feed: a real web server serving it, the minisign tool it interoperates with
  [nginx]=nginx
  [minisign]=minisign
  # the desk's notices go to a real SMTP server
  [aiosmtpd]=python3-aiosmtpd
)
missing=()
# PostgreSQL's server programs are not in PATH: the store tests start their own cluster.
pg=(/usr/lib/postgresql/*/bin/initdb)
[ -x "${pg[0]}" ] || missing+=(postgresql)
for cmd in "${!need[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${need[$cmd]}")
  fi
done
# ulogd2's JSON output is a plugin of its own package, not a command.
uj=(/usr/lib/*/ulogd/ulogd_output_JSON.so)
[ -e "${uj[0]}" ] || missing+=(ulogd2-json)
# Python modules: Debian's python3 (not a pyenv or venv one) must import them.
/usr/bin/python3 -c 'import jsonschema' >/dev/null 2>&1 || missing+=(python3-jsonschema)
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  made_policy=1
fi
trap '[ $made_policy -eq 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
installed() { dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" {print $2}' | sort; }
before=$(installed)
apt-get update -qq >/dev/null || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
mapfile -t new < <(comm -13 <(echo "$before") <(installed))
disable_services "${new[@]}"
echo "deps: installed ${new[*]}; their services are disabled" >&2
