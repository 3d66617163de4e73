package attribution

import (
	"net/netip"
	"time"
)

// Session is one RADIUS accounting session: who held which addresses from
// Start until Stop.
type Session struct {
	NAS            netip.Addr // NAS-IP-Address, else the sender's address
	ID             string     // Acct-Session-Id
	Subscriber     string     // User-Name, or the configured attribute
	Framed         netip.Addr // Framed-IP-Address
	FramedV6       netip.Prefix
	Delegated      netip.Prefix
	CallingStation string
	Start, Last    time.Time // Last: the latest Start, Interim-Update or Stop
	Stop           time.Time // zero while open
}

// Binding is one NAT binding: inside address and port translated to a
// public address and port range from Start until End. A session binding
// has PortLo == PortHi; a port block covers PortLo..PortHi and has no
// inside port.
type Binding struct {
	Public         netip.Addr
	PortLo, PortHi uint16
	Inside         netip.Addr
	InsidePort     uint16
	Start, Last    time.Time // Last: the latest event that confirmed it (interim re-send)
	End            time.Time // zero while open
	Source         string    // the format it came from: ulogd-json, junos-pba, ipfix
}

// NATEventKind says what a NAT log line reports.
type NATEventKind uint8

const (
	NATOpen    NATEventKind = iota + 1 // a new binding (conntrack NEW, block allocation)
	NATClose                           // its end (conntrack DESTROY, block release)
	NATInterim                         // a re-send confirming an open block
)

// NATEvent is one parsed NAT log record.
type NATEvent struct {
	Kind    NATEventKind
	Binding Binding
	At      time.Time // when it happened: Start for NATOpen, End for NATClose
}
