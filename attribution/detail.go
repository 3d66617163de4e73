package attribution

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// DetailReader reads FreeRADIUS "detail" files: records of a date line
// followed by tab-indented "Attribute = value" lines, a blank line between
// records. Errors carry NAME:LINE.
type DetailReader struct {
	sc   *bufio.Scanner
	name string
	loc  *time.Location
	line int
	// SubscriberAttribute names the attribute holding the subscriber id;
	// "" means User-Name.
	SubscriberAttribute string
}

// NewDetailReader reads records from r; name is used in errors and loc
// for the date line (which has no zone), the last resort for a time.
func NewDetailReader(r io.Reader, name string, loc *time.Location) *DetailReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	return &DetailReader{sc: sc, name: name, loc: loc}
}

// Next returns the next accounting record, io.EOF after the last one. A
// bad record is an error naming its line; reading may go on after it.
func (d *DetailReader) Next() (AcctEvent, error) {
	var attrs map[string]string
	var start int
	var header string
	for {
		if !d.sc.Scan() {
			if err := d.sc.Err(); err != nil {
				return AcctEvent{}, fmt.Errorf("%s:%d: %w", d.name, d.line+1, err)
			}
			if attrs != nil {
				return d.record(attrs, header, start)
			}
			return AcctEvent{}, io.EOF
		}
		d.line++
		text := d.sc.Text()
		if strings.TrimSpace(text) == "" {
			if attrs != nil {
				return d.record(attrs, header, start)
			}
			continue
		}
		if text[0] != ' ' && text[0] != '\t' {
			if attrs != nil {
				return AcctEvent{}, fmt.Errorf("%s:%d: record without the blank line before the next one", d.name, d.line)
			}
			attrs, header, start = map[string]string{}, strings.TrimSpace(text), d.line
			continue
		}
		if attrs == nil {
			return AcctEvent{}, fmt.Errorf("%s:%d: attribute before a date line", d.name, d.line)
		}
		k, v, ok := strings.Cut(strings.TrimSpace(text), " = ")
		if !ok {
			return AcctEvent{}, fmt.Errorf("%s:%d: want \"Attribute = value\"", d.name, d.line)
		}
		attrs[k] = unquoteDetail(v)
	}
}

func unquoteDetail(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		if s, err := strconv.Unquote(v); err == nil {
			return s
		}
		return v[1 : len(v)-1]
	}
	return v
}

var detailStatus = map[string]AcctStatus{
	"Start": AcctStart, "Stop": AcctStop, "Interim-Update": AcctInterim, "Alive": AcctInterim,
	"Accounting-On": AcctOn, "Accounting-Off": AcctOff,
}

// record builds the accounting record of one detail entry.
func (d *DetailReader) record(a map[string]string, header string, line int) (AcctEvent, error) {
	bad := func(format string, args ...any) (AcctEvent, error) {
		return AcctEvent{}, fmt.Errorf("%s:%d: %s", d.name, line, fmt.Sprintf(format, args...))
	}
	var ev AcctEvent
	st, ok := detailStatus[a["Acct-Status-Type"]]
	if !ok {
		n, err := strconv.ParseUint(a["Acct-Status-Type"], 10, 32)
		if err != nil {
			return bad("Acct-Status-Type %q not handled", cut(a["Acct-Status-Type"]))
		}
		st = AcctStatus(n)
	}
	switch st {
	case AcctStart, AcctStop, AcctInterim, AcctOn, AcctOff:
	default:
		return bad("Acct-Status-Type %d not handled", st)
	}
	ev.Status = st
	s := &ev.Session
	attr := d.SubscriberAttribute
	if attr == "" {
		attr = "User-Name"
	}
	s.Subscriber = cleanID(a[attr])
	s.ID = cleanID(a["Acct-Session-Id"])
	s.CallingStation = cleanID(a["Calling-Station-Id"])
	for _, k := range []string{"NAS-IP-Address", "NAS-IPv6-Address", "Packet-Src-IP-Address", "Packet-Src-IPv6-Address"} {
		if v, ok := a[k]; ok {
			n, err := netip.ParseAddr(v)
			if err != nil {
				return bad("bad %s", k)
			}
			s.NAS = n.Unmap()
			break
		}
	}
	if !s.NAS.IsValid() {
		return bad("no NAS-IP-Address")
	}
	if v, ok := a["Framed-IP-Address"]; ok {
		f, err := netip.ParseAddr(v)
		if err != nil || !f.Unmap().Is4() {
			return bad("bad Framed-IP-Address")
		}
		s.Framed = f.Unmap()
	}
	for k, p := range map[string]*netip.Prefix{"Framed-IPv6-Prefix": &s.FramedV6, "Delegated-IPv6-Prefix": &s.Delegated} {
		if v, ok := a[k]; ok {
			q, err := netip.ParsePrefix(v)
			if err != nil || !q.Addr().Is6() {
				return bad("bad %s", k)
			}
			*p = q.Masked()
		}
	}
	if (st == AcctStart || st == AcctStop || st == AcctInterim) && s.ID == "" {
		return bad("no Acct-Session-Id")
	}
	if v, ok := a["Acct-Session-Time"]; ok {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return bad("bad Acct-Session-Time")
		}
		ev.SessionTime = time.Duration(n) * time.Second
	}
	var delay time.Duration
	if v, ok := a["Acct-Delay-Time"]; ok {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			delay = time.Duration(n) * time.Second
		}
	}
	// The time: Event-Timestamp (the NAS's), else FreeRADIUS's receive
	// time (Timestamp) less the delay, else the date line.
	if v, ok := a["Event-Timestamp"]; ok {
		t, err := parseDetailTime(v)
		if err != nil {
			return bad("bad Event-Timestamp")
		}
		ev.At = t
	} else if v, ok := a["Timestamp"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return bad("bad Timestamp")
		}
		ev.At = time.Unix(n, 0).UTC().Add(-delay)
	} else {
		t, err := time.ParseInLocation(time.ANSIC, header, d.loc)
		if err != nil {
			return bad("bad date line")
		}
		ev.At = t.UTC().Add(-delay)
	}
	return ev, nil
}

// parseDetailTime reads Event-Timestamp as FreeRADIUS writes it ("Dec  6
// 2026 20:45:44 UTC"), or as a number of seconds.
func parseDetailTime(v string) (time.Time, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	for _, layout := range []string{"Jan _2 2006 15:04:05 MST", "Jan _2 2006 15:04:05.000000 MST", time.RFC3339} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("bad time")
}

func cut(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
