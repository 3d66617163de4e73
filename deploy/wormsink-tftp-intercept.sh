#!/bin/sh
# wormsink-tftp-intercept.sh up|down [RULESET]
#
# up:   waits (at most 10 s) until wormsink listens on UDP $WORMSINK_INTERCEPT_PORT
#       (default 6969), sets the policy routing tproxy needs and loads RULESET
#       (default /etc/wormsink/tftp-intercept.nft). If wormsink never listens,
#       nothing is loaded and customers' TFTP keeps flowing uninspected.
# down: deletes the nft table inet wormsink, so UDP/69 is routed as if
#       wormsink were not there. The policy routing stays: without the mark
#       it matches nothing.
#
# Run it as root (systemd: ExecStartPost=+ / ExecStopPost=+), never as the
# wormsink user.
set -eu
ruleset=${2:-/etc/wormsink/tftp-intercept.nft}
port=${WORMSINK_INTERCEPT_PORT:-6969}

case "${1:-}" in
up)
	i=0
	until ss -Hlun "sport = :$port" | grep -q .; do
		i=$((i + 1))
		if [ "$i" -ge 100 ]; then
			echo "wormsink-tftp-intercept: nothing listens on UDP $port; interception stays off" >&2
			exit 1
		fi
		sleep 0.1
	done
	ip -4 rule show | grep -q 'fwmark 0x1 lookup 100' || ip -4 rule add fwmark 0x1 lookup 100
	ip -4 route replace local 0.0.0.0/0 dev lo table 100
	ip -6 rule show | grep -q 'fwmark 0x1 lookup 100' || ip -6 rule add fwmark 0x1 lookup 100
	ip -6 route replace local ::/0 dev lo table 100
	nft delete table inet wormsink 2>/dev/null || true
	nft -f "$ruleset"
	;;
down)
	nft delete table inet wormsink 2>/dev/null || true
	;;
*)
	echo "usage: $0 up|down [RULESET]" >&2
	exit 2
	;;
esac
