package sinkhole

import (
	"net"
	"net/netip"
)

// AnswerAddrs are the addresses DNS answers (the shim's, the policy
// zone's local data) send worms to so they reach a server listening at
// listen: its IP address when it names one. A wildcard, a host name or an
// unreadable address gives none: the operator must say which address of
// the machine worms are to be sent to.
func AnswerAddrs(listen string) []netip.Addr {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() || ip.Zone() != "" {
		return nil
	}
	return []netip.Addr{ip.Unmap()}
}
