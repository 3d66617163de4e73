// Package dnsaddr reads a DNS server's address (the shim's upstreams, the
// RPZ primary's secondaries): an IP address with an optional port, 53 when left out.
package dnsaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPort is the port of an address given without one.
const DefaultPort = 53

// Parse reads "IP", "IP:port", "[IPv6]" or "[IPv6]:port". A host name is
// refused: the shim would need a resolver to find its resolver, and a
// secondary is known to its primary by address. A zone (fe80::1%eth0) is
// refused too: the address must mean the same on every interface.
func Parse(s string) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.AddrPort{}, errors.New("empty address")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("%q: port 0", s)
		}
		return check(s, ap)
	}
	host := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		if h, p, ok := cutPort(s); ok {
			if _, err := netip.ParseAddr(h); err == nil {
				return netip.AddrPort{}, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, p)
			}
		}
		return netip.AddrPort{}, fmt.Errorf("%q: want IP or IP:port (an address, not a host name)", s)
	}
	return check(s, netip.AddrPortFrom(ip, DefaultPort))
}

func check(s string, ap netip.AddrPort) (netip.AddrPort, error) {
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q: an address with a zone", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// cutPort splits "host:port" and "[host]:port".
func cutPort(s string) (host, port string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", false
	}
	host, port = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if _, err := strconv.ParseUint(port, 10, 16); err == nil {
		return host, port, false // a good port: the host is what failed
	}
	return host, port, true
}

// ParseList reads a comma-separated list of addresses, skipping empty
// items.
func ParseList(s string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		ap, err := Parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, ap)
	}
	return out, nil
}
