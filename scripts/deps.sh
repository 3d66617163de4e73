#!/usr/bin/env bash
# Installs the Debian packages wormsink's tests use, only those missing.
# Services that packages would start (unbound, tftpd-hpa) are kept stopped:
# the tests start their own copies on loopback ports.
set -euo pipefail

# command -> Debian package
declare -A need=(
  [dig]=dnsutils
  [tftp]=tftp-hpa
  [tcpdump]=tcpdump
  [unbound]=unbound
  [unbound-checkconf]=unbound
  [curl]=curl
  [atftp]=atftp
  [in.tftpd]=tftpd-hpa
  [dnsperf]=dnsperf
  [jq]=jq
  [ip]=iproute2
  [chromium]=chromium
  [tcpreplay]=tcpreplay # make perf-capture
)
missing=()
for cmd in "${!need[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${need[$cmd]}")
  fi
done
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
apt-get update -qq >/dev/null || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
