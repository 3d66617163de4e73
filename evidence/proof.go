package evidence

import (
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

func (n Networks) String() string {
	s := make([]string, len(n))
	for i, p := range n {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
