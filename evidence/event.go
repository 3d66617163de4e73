// Package evidence records sightings: the Event every component emits and the
// Writer that appends it, folded, to the JSON-lines evidence log.
package evidence

import (
	"math"
	"net/netip"
	"time"
	"unicode/utf8"

	"wormsink/signatures"
)

// Recorder takes evidence: what every component that sees sightings is
// given (the Writer is one). Record must not block.
type Recorder interface {
	Record(Event)
}

// Kind names an evidence event, as written in the "event" field.
type Kind string

const (
	DNSSinkhole Kind = "dns_sinkhole"
	TFTPRefused Kind = "tftp_refused"
	TFTPRequest Kind = "tftp_request" // a file no signature names
	WireMatch   Kind = "wire_match"
	// DNSLookup is a listed name a resolver was asked for, seen in its
	// dnstap stream: QName, QType, Transport, Rule and Resolver are set.
	DNSLookup Kind = "dns_lookup"
)

// Role says what a wire_match implicates the host in.
const (
	RoleRequester = "requester" // asked for the worm
	RoleServer    = "server"    // served it
	RoleSource    = "source"    // sent the pattern
)

// Event is one sighting. Only the fields of its Kind are written; it is a
// plain value so that recording one costs no allocation.
type Event struct {
	Time     time.Time
	Kind     Kind
	Host     netip.Addr // the host to notify
	Port     uint16     // its source port: carrier-grade NAT needs it
	Sig      string     // signature id; empty for tftp_request
	Family   string
	Evidence signatures.Strength
	Count    uint64 // sightings this event stands for; 0 means 1
	Serial   uint64 // signature serial that matched

	// dns_sinkhole
	QName     string
	QType     string
	Transport string // udp or tcp
	Rule      string // the listed name that matched, when it differs from QName (wildcards, CNAME chains)

	// tftp_refused, tftp_request, wire_match
	File string
	Mode string
	Op   string         // read or write
	Srv  netip.AddrPort // tftp: the sinkhole's local address

	// wire_match
	Peer    netip.Addr
	Role    string
	Proto   string
	DstPort uint16
	PCAP    string // scan: the capture file
	Packet  uint64 // scan: the packet number, from 1

	// tftp_refused, tftp_request seen by the transparent interceptor
	// (serve --tftp-intercept): Srv is then the address the client asked,
	// and a refusal also records the server it asked (Role "server", Peer
	// the client).
	Intercepted bool // the request was addressed to another host and intercepted on its way
	Passed      bool // it was passed on, unchanged, to the server it was addressed to

	// dns_lookup
	Resolver string // the resolver's dnstap identity, else the address it streamed from

	// Proof says how the source address was established. Lines
	// of different proof are never folded together, so every line's proof
	// is exactly that of the sightings it counts.
	Proof Proof

	// Named says Host did not send the packet: the packet only named it
	// (the server a request was sent to). A packet proves things about its
	// sender only, so the Writer keeps such a sighting weak and a
	// datagram, whatever the caller set and whatever network Host is in.
	Named bool

	// Set by the Writer, not by callers: the length in bytes of a value
	// the writer cut to MaxStringLen, before the cut; 0 when not cut.
	qnameLen, fileLen, modeLen, resolverLen int32
}

// key is what folding compares: the same host, port, event, signature and
// detail as sent. The port is part of it because behind carrier-grade NAT
// one address is many customers.
type key struct {
	kind      Kind
	host      netip.Addr
	port      uint16
	sig       string
	qname     string
	qtype     string
	transport string
	rule      string
	file      string
	mode      string
	op        string
	srv       netip.AddrPort
	peer      netip.Addr
	role      string
	proto     string
	dstPort   uint16
	pcap      string
	resolver  string
	proof     Proof

	intercepted, passed, named bool

	qnameLen, fileLen, modeLen, resolverLen int32
}

func (e *Event) key() key {
	return key{
		kind: e.Kind, host: e.Host, port: e.Port, sig: e.Sig,
		qname: e.QName, qtype: e.QType, transport: e.Transport, rule: e.Rule,
		file: e.File, mode: e.Mode, op: e.Op, srv: e.Srv,
		peer: e.Peer, role: e.Role, proto: e.Proto, dstPort: e.DstPort, pcap: e.PCAP,
		intercepted: e.Intercepted, passed: e.Passed, named: e.Named,
		proof:    e.Proof,
		qnameLen: e.qnameLen, fileLen: e.fileLen, modeLen: e.modeLen, resolverLen: e.resolverLen,
		resolver: e.Resolver,
	}
}

// aggKey is what a network line folds on when the line budget is spent:
// the event, what matched and how strongly, and the sender's network.
type aggKey struct {
	kind     Kind
	sig      string
	evidence signatures.Strength
	net      netip.Prefix
}

// Networks a network line stands for: a /24 is what one IPv4 customer
// network or one forged-source sweep covers; a /48 is one IPv6 site.
const (
	AggregateBits4 = 24
	AggregateBits6 = 48
)

// NetworkOf returns the network a sighting of host folds into when the line
// budget is spent: its /24 (IPv4) or /48 (IPv6).
func NetworkOf(host netip.Addr) netip.Prefix {
	host = host.Unmap()
	bits := AggregateBits6
	if host.Is4() {
		bits = AggregateBits4
	}
	p, err := host.Prefix(bits)
	if err != nil { // no address at all
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return p
}

// wholeFamily is the last resort when even the network table is full: one
// line for all of IPv4 or all of IPv6.
func wholeFamily(host netip.Addr) netip.Prefix {
	if host.Unmap().Is4() || !host.IsValid() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// cutLong cuts the values an attacker chooses (file names, qnames, TFTP
// modes, a dnstap stream's resolver identity) to MaxStringLen bytes before they are folded or held, so a flood of
// long names neither fills memory nor makes long lines, and names that
// differ only past the cut fold together (their original lengths apart).
func (e *Event) cutLong() {
	e.QName = cutRaw(e.QName, &e.qnameLen)
	e.File = cutRaw(e.File, &e.fileLen)
	e.Mode = cutRaw(e.Mode, &e.modeLen)
	e.Resolver = cutRaw(e.Resolver, &e.resolverLen)
}

func cutRaw(s string, n *int32) string {
	if len(s) <= MaxStringLen {
		return s
	}
	*n = int32(min(len(s), math.MaxInt32))
	i := MaxStringLen
	for j := 0; j < utf8.UTFMax-1 && i > 0 && !utf8.RuneStart(s[i]); j++ {
		i-- // do not split a character
	}
	return s[:i]
}

// coarse is the key used when the detailed table is full: the host and what
// matched, so the abuse team still learns of the host and its count. Proof
// is not part of it: a coarse line carries the best proof of the sightings
// it folds (all of them came from that host address).
//
// A dns_lookup keeps its resolver apart: two resolvers are two witnesses.
func (e *Event) coarse() key {
	return key{kind: e.Kind, host: e.Host, sig: e.Sig, resolver: e.Resolver}
}

// IsHost reports whether a can be a host to notify: not the unspecified,
// the limited broadcast or a multicast address, which a forged or
// confused packet can carry but no customer holds. Subnet broadcast
// addresses are the machine's own to know (see Config.Own).
func IsHost(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && a != limitedBroadcast
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
