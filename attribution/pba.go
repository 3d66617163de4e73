package attribution

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ParsePBA parses one Juniper port-block allocation syslog line:
//
//	MX:  JSERVICES_NAT_PORT_BLOCK_ALLOC: 100.64.0.10 -> 198.51.100.1:10240-10367 0x5e1b3a72
//	     (…_RELEASE, and …_ACTIVE or …_INTERIM for the interim re-sends;
//	     the hexadecimal number is the event's Unix time)
//	SRX: RT_SRC_NAT_PBA_ALLOC: Subscriber 100.64.0.10 used/maximum [1/8] blocks,
//	     allocates port block [10240-10367] from 198.51.100.1 in source pool p1 lsys_id: 0
//	     (…_RELEASE "releases port block", …_INTERIM)
//
// Without the hexadecimal time the line's syslog header gives it: RFC 3339
// (RFC 5424, rsyslog's file format), else "Jan _2 15:04:05" read in loc, in
// the year that puts it nearest to now.
func ParsePBA(line []byte, loc *time.Location, now time.Time) (NATEvent, error) {
	s := string(line)
	var ev NATEvent
	var rest string
	var kind string
	if i := strings.Index(s, "JSERVICES_NAT_PORT_BLOCK_"); i >= 0 {
		kind, rest, _ = strings.Cut(s[i+len("JSERVICES_NAT_PORT_BLOCK_"):], ":")
		if err := parseMXBlock(strings.TrimSpace(rest), &ev); err != nil {
			return ev, err
		}
	} else if i := strings.Index(s, "RT_SRC_NAT_PBA_"); i >= 0 {
		kind, rest, _ = strings.Cut(s[i+len("RT_SRC_NAT_PBA_"):], ":")
		if err := parseSRXBlock(rest, &ev); err != nil {
			return ev, err
		}
	} else {
		return ev, ErrSkip
	}
	switch kind {
	case "ALLOC":
		ev.Kind = NATOpen
	case "RELEASE":
		ev.Kind = NATClose
	case "ACTIVE", "INTERIM":
		ev.Kind = NATInterim
	default:
		return ev, ErrSkip
	}
	if ev.At.IsZero() {
		t, err := syslogTime(s, loc, now)
		if err != nil {
			return ev, err
		}
		ev.At = t
	}
	b := &ev.Binding
	b.Source = FormatPBA
	b.Last = ev.At
	switch ev.Kind {
	case NATOpen:
		b.Start = ev.At
	case NATClose:
		b.End = ev.At
	}
	return ev, nil
}

// parseMXBlock parses "IN -> PUB:LO-HI [0xTIME]".
func parseMXBlock(s string, ev *NATEvent) error {
	f := strings.Fields(s)
	if len(f) < 3 || f[1] != "->" {
		return errors.New("junos-pba: want \"INSIDE -> PUBLIC:LO-HI\"")
	}
	in, err := netip.ParseAddr(f[0])
	if err != nil {
		return errors.New("junos-pba: bad inside address")
	}
	ap, ports, ok := cutLast(f[2], ":")
	if !ok {
		return errors.New("junos-pba: want PUBLIC:LO-HI")
	}
	pub, err := netip.ParseAddr(strings.Trim(ap, "[]"))
	if err != nil {
		return errors.New("junos-pba: bad public address")
	}
	if err := setBlock(ev, in, pub, ports); err != nil {
		return err
	}
	if len(f) >= 4 && strings.HasPrefix(f[3], "0x") {
		sec, err := strconv.ParseUint(f[3][2:], 16, 32)
		if err != nil {
			return errors.New("junos-pba: bad time")
		}
		ev.At = time.Unix(int64(sec), 0).UTC()
	}
	return nil
}

// parseSRXBlock parses "Subscriber IN … port block [LO-HI] from PUB …".
func parseSRXBlock(s string, ev *NATEvent) error {
	f := strings.Fields(s)
	var in, pub netip.Addr
	var ports string
	var err error
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "Subscriber":
			if in, err = netip.ParseAddr(f[i+1]); err != nil {
				return errors.New("junos-pba: bad subscriber address")
			}
		case "block":
			ports = strings.Trim(f[i+1], "[]")
		case "from":
			if pub, err = netip.ParseAddr(f[i+1]); err != nil {
				return errors.New("junos-pba: bad public address")
			}
		}
	}
	if !in.IsValid() || !pub.IsValid() || ports == "" {
		return errors.New("junos-pba: want \"Subscriber IN … port block [LO-HI] from PUBLIC\"")
	}
	return setBlock(ev, in, pub, ports)
}

func setBlock(ev *NATEvent, in, pub netip.Addr, ports string) error {
	los, his, ok := strings.Cut(ports, "-")
	lo, err1 := strconv.ParseUint(los, 10, 16)
	hi, err2 := strconv.ParseUint(his, 10, 16)
	if !ok || err1 != nil || err2 != nil || lo > hi || lo == 0 {
		return errors.New("junos-pba: bad port range")
	}
	b := &ev.Binding
	b.Inside, b.Public = in.Unmap(), pub.Unmap()
	b.PortLo, b.PortHi = uint16(lo), uint16(hi)
	return nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// syslogTime reads the time of a syslog line's header.
func syslogTime(s string, loc *time.Location, now time.Time) (time.Time, error) {
	s = strings.TrimLeft(s, " ")
	if strings.HasPrefix(s, "<") { // <PRI>, and "1 " for RFC 5424
		if i := strings.IndexByte(s, '>'); i > 0 {
			s = s[i+1:]
			s = strings.TrimPrefix(s, "1 ")
		}
	}
	if first, _, _ := strings.Cut(s, " "); len(first) >= 19 {
		if t, err := time.Parse(time.RFC3339Nano, first); err == nil {
			return t.UTC(), nil
		}
	}
	if len(s) >= len(time.Stamp) {
		if t, err := time.ParseInLocation(time.Stamp, s[:len(time.Stamp)], loc); err == nil {
			// No year: the one nearest to now (logs read around New Year).
			best := t.AddDate(now.In(loc).Year(), 0, 0)
			for _, y := range []int{-1, 1} {
				c := best.AddDate(y, 0, 0)
				if absDur(c.Sub(now)) < absDur(best.Sub(now)) {
					best = c
				}
			}
			return best.UTC(), nil
		}
	}
	return time.Time{}, errors.New("junos-pba: no time (neither a hexadecimal time nor a syslog header)")
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
