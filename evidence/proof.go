package evidence

import (
	"fmt"
	"net/netip"
	"strings"
)

// Proof says how a sighting's source address was established: whether the
// host could be someone else's forgery. It is independent of Evidence,
// which says what the request proves about the host if the address is
// real. The zero value is the weakest, so a component that says nothing
// claims nothing.
//
// The values are ordered: a larger Proof is stronger, and a host's proof
// in a report is the largest of its sightings'.
type Proof uint8

const (
	// ProofDatagram: one UDP datagram and nothing more. Anyone can send it
	// with any source address.
	ProofDatagram Proof = iota
	// ProofTrustedSource: the address is inside a network whose edge drops
	// forged sources (serve --trusted-sources).
	ProofTrustedSource
	// ProofExchange: the host answered something only the holder of the
	// address could have seen (a TFTP follow-up to the refusal's port, a
	// DNS server cookie echoed back).
	ProofExchange
	// ProofTCP: seen on a TCP connection whose handshake completed.
	ProofTCP
)

var proofNames = [...]string{
	ProofDatagram:      "datagram",
	ProofTrustedSource: "trusted-source",
	ProofExchange:      "exchange",
	ProofTCP:           "tcp",
}

// String is the name written in the log's "proof" field. The names are
// constants, so writing one costs no allocation.
func (p Proof) String() string {
	if int(p) < len(proofNames) {
		return proofNames[p]
	}
	return "datagram"
}

// ParseProof reads a name String writes.
func ParseProof(s string) (Proof, bool) {
	for i, n := range proofNames {
		if n == s {
			return Proof(i), true
		}
	}
	return ProofDatagram, false
}

// Verified reports whether p is more than a lone datagram.
func (p Proof) Verified() bool { return p > ProofDatagram }

// Networks is a set of address prefixes (--trusted-sources, --exclude).
// Contains is a linear scan: the lists are a handful of customer ranges.
type Networks []netip.Prefix

// ParseNetworks reads "CIDR,CIDR,..." (each as ParsePrefix reads it);
// empty text is an empty set.
func ParseNetworks(s string) (Networks, error) {
	var out Networks
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePrefix reads one network: a CIDR prefix, or a bare address standing
// for itself (/32 or /128). Hosts are compared unmapped (an IPv4-mapped
// IPv6 address is its IPv4 address), so an IPv4-mapped prefix
// ::ffff:a.b.c.d/N is the IPv4 network a.b.c.d/N-96; one shorter than /96
// reaches past the mapped addresses and is refused.
func ParsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("network %q: not a CIDR prefix or an address", s)
	}
	u, ok := UnmapPrefix(p)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("network %q: an IPv4-mapped prefix shorter than /96 covers more than IPv4 addresses; write the IPv4 network (a.b.c.d/N) instead", s)
	}
	return u, nil
}

// UnmapPrefix returns p masked, with an IPv4-mapped prefix (/96 or longer)
// as its IPv4 network. ok is false for an IPv4-mapped address under a
// prefix shorter than /96, which is no IPv4 network.
func UnmapPrefix(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return p, true
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked(), true
	}
	return p.Masked(), true
}

// Set and String make Networks a command-line flag.
func (n *Networks) Set(s string) error {
	v, err := ParseNetworks(s)
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// Contains reports whether a (IPv4-mapped IPv6 counts as IPv4) is in one of
// the networks.
func (n Networks) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range n {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (n *Networks) String() string {
	if n == nil {
		return ""
	}
	return n.join()
}

func (n Networks) join() string {
	s := make([]string, len(n))
	for i, p := range n {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
