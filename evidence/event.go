// Package evidence records sightings: the Event every component emits and the
// Writer that appends it, folded, to the JSON-lines evidence log.
package evidence

import (
	"net/netip"
	"time"

	"wormsink/signatures"
)

// Kind names an evidence event, as written in the "event" field.
type Kind string

const (
	DNSSinkhole Kind = "dns_sinkhole"
	TFTPRefused Kind = "tftp_refused"
	TFTPRequest Kind = "tftp_request" // a file no signature names
	WireMatch   Kind = "wire_match"
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
}

func (e *Event) key() key {
	return key{
		kind: e.Kind, host: e.Host, port: e.Port, sig: e.Sig,
		qname: e.QName, qtype: e.QType, transport: e.Transport, rule: e.Rule,
		file: e.File, mode: e.Mode, op: e.Op, srv: e.Srv,
		peer: e.Peer, role: e.Role, proto: e.Proto, dstPort: e.DstPort, pcap: e.PCAP,
	}
}

// coarse is the key used when the detailed table is full: the host and what
// matched, so the abuse team still learns of the host and its count.
func (e *Event) coarse() key {
	return key{kind: e.Kind, host: e.Host, sig: e.Sig}
}
