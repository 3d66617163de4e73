package attribution

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ulogdRecord is the part of an ulogd2 JSON line (stack NFCT → IP2STR →
// JSON) that names a NAT binding.
type ulogdRecord struct {
	Event     *int   `json:"ct.event"` // 1 NEW, 2 UPDATE, 4 DESTROY
	Src       string `json:"src_ip"`   // inside address (original source)
	SPort     *int   `json:"orig.l4.sport"`
	Public    string `json:"reply.ip.daddr.str"` // the source after NAT
	PPort     *int   `json:"reply.l4.dport"`
	StartSec  *int64 `json:"flow.start.sec"`
	StartUsec int64  `json:"flow.start.usec"`
	EndSec    *int64 `json:"flow.end.sec"`
	EndUsec   int64  `json:"flow.end.usec"`
	Timestamp string `json:"timestamp"`
	Family    *int   `json:"oob.family"`
}

// ErrSkip is returned by parsers for a well-formed record that is no NAT
// binding (an UPDATE event, a connection that was not translated).
var ErrSkip = errors.New("not a NAT binding")

// ParseULOGD parses one ulogd2 JSON line of conntrack events. NEW opens a
// binding, DESTROY closes it. Times come from flow.start/flow.end
// (nf_conntrack_timestamp=1); without them, from "timestamp", which
// ulogd writes in the local time of loc without an offset.
func ParseULOGD(line []byte, loc *time.Location) (NATEvent, error) {
	var r ulogdRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return NATEvent{}, fmt.Errorf("ulogd-json: %w", cutErr(err))
	}
	if r.Event == nil {
		return NATEvent{}, errors.New("ulogd-json: no ct.event (is the input NFCT?)")
	}
	var ev NATEvent
	switch *r.Event {
	case 1:
		ev.Kind = NATOpen
	case 4:
		ev.Kind = NATClose
	default:
		return NATEvent{}, ErrSkip
	}
	if r.Src == "" || r.Public == "" {
		return NATEvent{}, errors.New("ulogd-json: no src_ip or reply.ip.daddr.str (add IP2STR to the stack)")
	}
	if r.SPort == nil || r.PPort == nil {
		return NATEvent{}, ErrSkip // no ports: ICMP and the like
	}
	in, err1 := netip.ParseAddr(r.Src)
	pub, err2 := netip.ParseAddr(r.Public)
	if err1 != nil || err2 != nil {
		return NATEvent{}, errors.New("ulogd-json: bad address")
	}
	if *r.SPort < 0 || *r.SPort > 65535 || *r.PPort <= 0 || *r.PPort > 65535 {
		return NATEvent{}, errors.New("ulogd-json: bad port")
	}
	in, pub = in.Unmap(), pub.Unmap()
	if in == pub && *r.SPort == *r.PPort {
		return NATEvent{}, ErrSkip // not translated
	}
	b := &ev.Binding
	b.Public, b.Inside = pub, in
	b.PortLo, b.PortHi, b.InsidePort = uint16(*r.PPort), uint16(*r.PPort), uint16(*r.SPort)
	b.Source = "ulogd-json"
	var stamp time.Time
	if r.Timestamp != "" {
		t, err := time.ParseInLocation("2006-01-02T15:04:05", r.Timestamp, loc)
		if err != nil {
			return NATEvent{}, errors.New("ulogd-json: bad timestamp")
		}
		stamp = t
	}
	if r.StartSec != nil {
		b.Start = unixUsec(*r.StartSec, r.StartUsec)
	}
	switch ev.Kind {
	case NATOpen:
		if b.Start.IsZero() {
			b.Start = stamp
		}
		if b.Start.IsZero() {
			return NATEvent{}, errors.New("ulogd-json: no time")
		}
		ev.At, b.Last = b.Start, b.Start
	case NATClose:
		if r.EndSec != nil {
			ev.At = unixUsec(*r.EndSec, r.EndUsec)
		} else {
			ev.At = stamp
		}
		if ev.At.IsZero() {
			return NATEvent{}, errors.New("ulogd-json: no time")
		}
		b.End, b.Last = ev.At, ev.At
	}
	return ev, nil
}

func unixUsec(sec, usec int64) time.Time {
	if usec < 0 || usec >= 1e6 {
		usec = 0
	}
	return time.Unix(sec, usec*1000).UTC()
}

// cutErr keeps a decoder's error short: it may quote the input.
func cutErr(err error) error {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return errors.New(s)
}
