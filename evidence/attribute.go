package evidence

import (
	"net/netip"
	"time"

	"github.com/rs/zerolog"
)

// Attributor names the subscriber behind a sighting's host, port and time
// (package attribution keeps RADIUS sessions and NAT bindings for it).
// Attribute is called once per host line as it is written, so it must not
// block.
type Attributor interface {
	Attribute(host netip.Addr, port uint16, t time.Time) Attribution
}

// Attribution is what a line says about the subscriber: the fields
// "subscriber", "nat_inside" and "subscriber_candidates". It never
// guesses: when several subscribers match, only their number is given.
type Attribution struct {
	Subscriber string         // the one subscriber the host, port and time name
	NATInside  netip.AddrPort // the inside address (and port) NAT resolved the host and port to
	Candidates int            // when more than one matched (or the port was outside every binding): how many
}

// SetAttributor makes the Writer attribute every host line it writes from
// now on; nil stops it.
func (w *Writer) SetAttributor(a Attributor) {
	if a == nil {
		w.attr.Store(nil)
		return
	}
	w.attr.Store(&a)
}

// attribute writes the attribution fields of a host line.
func attribute(e *zerolog.Event, a Attribution) {
	if a.Subscriber != "" {
		text(e, FieldSubscriber, a.Subscriber, 0)
	}
	if a.NATInside.IsValid() {
		if a.NATInside.Port() == 0 {
			str(e, FieldNATInside, a.NATInside.Addr().String())
		} else {
			str(e, FieldNATInside, a.NATInside.String())
		}
	}
	if a.Subscriber == "" && a.Candidates > 0 {
		e.Int(FieldSubscriberCandidates.Name(), a.Candidates)
	}
}
