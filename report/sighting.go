package report

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// Sighting is one evidence line read back from a log. Its byte-slice fields
// point into the reader's buffers and stay valid only until the next line is
// parsed: copy what you keep. Reading a line therefore costs no allocation.
type Sighting struct {
	Time     time.Time // the (first) sighting the line stands for
	Last     time.Time // the last folded sighting; equal to Time when the line stands for one
	Kind     evidence.Kind
	Host     netip.Addr
	Port     uint16
	Sig      []byte
	Family   []byte
	Evidence signatures.Strength
	Count    uint64 // ≥ 1
	Sensor   []byte
	Serial   uint64

	// Per-event detail the exports use (docs/contract.md §3); empty when absent.
	QName, QType, Transport []byte // dns_sinkhole, dns_lookup
	File, Op, Server        []byte // tftp_*, and wire_match when it saw a TFTP request
	Peer, Role, Proto       []byte // wire_match
	DstPort                 uint16 // wire_match

	// Proof is how the source address was established; a line without the
	// field (a log from before it existed) is ProofDatagram: nothing then
	// checked the address.
	Proof evidence.Proof

	// Subscriber is who the line's host, port and time named when it was
	// written (attribution); empty when unknown or ambiguous.
	Subscriber []byte

	// Network is set, and Host invalid, for a network line: sightings the
	// writer's line budget folded per /24 or /48 instead of per host. It
	// names no host and carries no per-event detail.
	Network netip.Prefix
}

// LineKind says what a parsed line turned out to be.
type LineKind uint8

const (
	LineEvidence  LineKind = iota // an evidence line: the Sighting is filled
	LineService                   // a service line (start, reload, errors): skipped silently
	LineBlank                     // an empty or all-whitespace line: skipped silently
	LineMalformed                 // not JSON, or not an evidence line this reader understands
)

func (k LineKind) String() string {
	switch k {
	case LineEvidence:
		return "evidence"
	case LineService:
		return "service"
	case LineBlank:
		return "blank"
	}
	return "malformed"
}

// ErrMalformed is wrapped by every error Parse returns for a line it skips.
var ErrMalformed = errors.New("malformed line")

// value types as the JSON text had them
const (
	tNone   = iota // absent
	tString        // val is the decoded string
	tNumber        // val is the number's text
	tBool          // true or false
	tOther         // null, object or array
)

// wantType is the type each field's value must have, from the field table.
var wantType = func() (t [evidence.NumFields]uint8) {
	for _, f := range evidence.Fields() {
		switch f.Spec().Kind {
		case evidence.JSONString:
			t[f] = tString
		case evidence.JSONNumber:
			t[f] = tNumber
		case evidence.JSONBool:
			t[f] = tBool
		}
	}
	return t
}()

// fieldOf numbers a key by the field table; FieldNone for a key the
// table does not have (a newer writer's, another program's). Keys are
// looked up by their length and first and last bytes in a small table
// and then compared, which is a few times cheaper than hashing them for
// a map: a log whose lines skip optional keys misses Parser.next often.
func fieldOf(key []byte) evidence.Field {
	if len(key) < 2 {
		return evidence.FieldByName(string(key))
	}
	f := keyTable[keyHash(key)]
	if f == keyCollide {
		return evidence.FieldByName(string(key)) // no allocation: the map look-up converts in place
	}
	if f != evidence.FieldNone && f.Name() == string(key) {
		return f
	}
	return evidence.FieldNone
}

// keyCollide marks a keyTable slot two names share: those go to the map.
const keyCollide = evidence.Field(255)

// keyHash hashes a key of at least two bytes. The multiplier was chosen
// so that today's field names fall in distinct slots.
func keyHash(key []byte) uint8 {
	w := uint64(len(key)) | uint64(key[0])<<8 | uint64(key[1])<<16 | uint64(key[len(key)/2])<<24 | uint64(key[len(key)-1])<<32
	return uint8(w * 0xe6b58de744ab6ccf >> 56)
}

var keyTable = func() (t [256]evidence.Field) {
	for _, f := range evidence.Fields() {
		if len(f.Name()) < 2 {
			continue
		}
		h := keyHash([]byte(f.Name()))
		if t[h] != evidence.FieldNone {
			t[h] = keyCollide
		} else {
			t[h] = f
		}
	}
	return t
}()

// fields is what either scanner (the fast one or encoding/json) hands to
// finish: for each known key, the JSON type of its last value and the value.
// Sharing finish keeps both paths' meaning identical by construction.
type fields struct {
	typ   [evidence.NumFields]uint8
	val   [evidence.NumFields][]byte
	wrong uint64 // bit i: field i's last value is not of the type the table gives
	day   dayCache
}

func (f *fields) reset() {
	f.typ = [evidence.NumFields]uint8{}
	f.wrong = 0
}

// set records field i's last value.
func (f *fields) set(i evidence.Field, typ uint8, val []byte) {
	f.typ[i], f.val[i] = typ, val
	if typ == wantType[i] {
		f.wrong &^= 1 << i
	} else {
		f.wrong |= 1 << i
	}
}

// wrong has a bit per field: this does not compile with more than 64.
const _ uint64 = 1 << (evidence.NumFields - 1)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Errors finish returns are preallocated: a bad line in a hot loop must not
// cost an allocation per line either.
var (
	errNotObject   = malformed("not a JSON object")
	errBadJSON     = malformed("not valid JSON")
	errNoHost      = malformed("no host")
	errNoTime      = malformed("no time")
	errNoEvent     = malformed("no event")
	errNoEvidence  = malformed("no evidence")
	errBadHost     = malformed("bad host")
	errBadTime     = malformed("bad time")
	errBadLast     = malformed("bad last")
	errBadEvent    = malformed("unknown event")
	errBadEvidence = malformed("bad evidence")
	errBadPort     = malformed("bad port")
	errBadCount    = malformed("bad count")
	errBadSerial   = malformed("bad serial")
	errBadDstPort  = malformed("bad dst_port")
	errBadProof    = malformed("bad proof")
	errBadNetwork  = malformed("bad network")
	errHostAndNet  = malformed("both host and network")
	errBadField    = malformed("a field has the wrong type")
	errTooLong     = malformed("line too long")
)

// toSighting turns scanned fields into a Sighting.
func toSighting(f *fields, rec *Sighting) (LineKind, error) {
	if f.typ[evidence.FieldHost] == tNone && f.typ[evidence.FieldNetwork] == tNone {
		if f.typ[evidence.FieldLevel] != tNone {
			return LineService, nil
		}
		return LineMalformed, errNoHost
	}
	if f.typ[evidence.FieldHost] != tNone && f.typ[evidence.FieldNetwork] != tNone {
		return LineMalformed, errHostAndNet
	}
	// Every field must have the type the table gives it when present.
	if f.wrong != 0 {
		return LineMalformed, errBadField
	}
	if f.typ[evidence.FieldTime] == tNone {
		return LineMalformed, errNoTime
	}
	if f.typ[evidence.FieldEvent] == tNone {
		return LineMalformed, errNoEvent
	}
	if f.typ[evidence.FieldEvidence] == tNone {
		return LineMalformed, errNoEvidence
	}
	switch string(f.val[evidence.FieldEvent]) {
	case string(evidence.DNSSinkhole):
		rec.Kind = evidence.DNSSinkhole
	case string(evidence.DNSLookup):
		rec.Kind = evidence.DNSLookup
	case string(evidence.TFTPRefused):
		rec.Kind = evidence.TFTPRefused
	case string(evidence.TFTPRequest):
		rec.Kind = evidence.TFTPRequest
	case string(evidence.WireMatch):
		rec.Kind = evidence.WireMatch
	default:
		return LineMalformed, errBadEvent
	}
	switch string(f.val[evidence.FieldEvidence]) {
	case "strong":
		rec.Evidence = signatures.Strong
	case "weak":
		rec.Evidence = signatures.Weak
	default:
		return LineMalformed, errBadEvidence
	}
	rec.Proof = evidence.ProofDatagram
	if f.typ[evidence.FieldProof] != tNone {
		p, ok := parseProof(f.val[evidence.FieldProof])
		if !ok {
			return LineMalformed, errBadProof
		}
		rec.Proof = p
	}
	var ok bool
	if f.typ[evidence.FieldNetwork] != tNone {
		rec.Host = netip.Addr{}
		if rec.Network, ok = parseNetwork(f.val[evidence.FieldNetwork]); !ok {
			return LineMalformed, errBadNetwork
		}
	} else {
		rec.Network = netip.Prefix{}
		if rec.Host, ok = parseAddr(f.val[evidence.FieldHost]); !ok {
			return LineMalformed, errBadHost
		}
	}
	if rec.Time, ok = f.day.parse(f.val[evidence.FieldTime]); !ok || !plausible(rec.Time) {
		return LineMalformed, errBadTime
	}
	rec.Last = rec.Time
	if f.typ[evidence.FieldLast] != tNone {
		if rec.Last, ok = f.day.parse(f.val[evidence.FieldLast]); !ok || !plausible(rec.Last) {
			return LineMalformed, errBadLast
		}
		if rec.Last.Before(rec.Time) {
			rec.Last = rec.Time
		}
	}
	var n uint64
	if n, ok = uintField(f, evidence.FieldPort, math.MaxUint16); !ok {
		return LineMalformed, errBadPort
	}
	rec.Port = uint16(n)
	if n, ok = uintField(f, evidence.FieldDstPort, math.MaxUint16); !ok {
		return LineMalformed, errBadDstPort
	}
	rec.DstPort = uint16(n)
	if rec.Count, ok = uintField(f, evidence.FieldCount, math.MaxUint64); !ok {
		return LineMalformed, errBadCount
	}
	if rec.Count == 0 {
		rec.Count = 1 // docs/contract.md §3: 1 when absent
	}
	if rec.Serial, ok = uintField(f, evidence.FieldSerial, math.MaxUint64); !ok {
		return LineMalformed, errBadSerial
	}
	rec.Sig = f.str(evidence.FieldSignature)
	rec.Family = f.str(evidence.FieldFamily)
	rec.Sensor = f.str(evidence.FieldSensor)
	rec.QName = f.str(evidence.FieldQName)
	rec.QType = f.str(evidence.FieldQType)
	rec.Transport = f.str(evidence.FieldTransport)
	rec.File = f.str(evidence.FieldFile)
	rec.Op = f.str(evidence.FieldOp)
	rec.Server = f.str(evidence.FieldServer)
	rec.Peer = f.str(evidence.FieldPeer)
	rec.Role = f.str(evidence.FieldRole)
	rec.Proto = f.str(evidence.FieldProto)
	rec.Subscriber = f.str(evidence.FieldSubscriber)
	return LineEvidence, nil
}

// parseProof is evidence.ParseProof without the string conversion.
func parseProof(b []byte) (evidence.Proof, bool) {
	switch string(b) {
	case "datagram":
		return evidence.ProofDatagram, true
	case "trusted-source":
		return evidence.ProofTrustedSource, true
	case "exchange":
		return evidence.ProofExchange, true
	case "tcp":
		return evidence.ProofTCP, true
	}
	return evidence.ProofDatagram, false
}

func (f *fields) str(i evidence.Field) []byte {
	if f.typ[i] != tString {
		return nil
	}
	return f.val[i]
}

// Times a log can hold: from the epoch (a capture with no clock) to well
// past any sensor's life, and inside what UnixNano represents.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

func plausible(t time.Time) bool { return !t.Before(minTime) && t.Before(maxTime) }

// uintField reads an optional non-negative integer field no larger than max;
// absent is 0.
func uintField(f *fields, i evidence.Field, max uint64) (uint64, bool) {
	switch f.typ[i] {
	case tNone:
		return 0, true
	case tNumber:
	default:
		return 0, false
	}
	b := f.val[i]
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	if len(b) < 20 { // 19 digits cannot overflow: no check per digit
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false // negative, fraction or exponent
			}
			n = n*10 + uint64(c-'0')
		}
		return n, n <= max
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false // negative, fraction or exponent
		}
		d := uint64(c - '0')
		if n > (max-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// parseAddr parses dotted-quad IPv4 by hand (the common case) and leaves
// everything else to netip, whose rules it mirrors: no leading zeros.
// Each octet is read as one to three digits in straight-line code: a
// loop over the bytes with a test per byte mispredicted its branches on
// every address of another shape than the last.
func parseAddr(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	i := 0
	for oct := range 4 {
		if i >= len(b) || b[i]-'0' > 9 {
			return parseAddrLoop(b)
		}
		n := uint(b[i] - '0')
		i++
		if i < len(b) && b[i]-'0' <= 9 {
			if n == 0 {
				return parseAddrLoop(b) // leading zero
			}
			n = n*10 + uint(b[i]-'0')
			i++
			if i < len(b) && b[i]-'0' <= 9 {
				n = n*10 + uint(b[i]-'0')
				i++
			}
		}
		if n > 255 {
			return parseAddrLoop(b)
		}
		ip[oct] = byte(n)
		if oct < 3 {
			if i >= len(b) || b[i] != '.' {
				return parseAddrLoop(b)
			}
			i++
		}
	}
	if i != len(b) {
		return parseAddrLoop(b)
	}
	return netip.AddrFrom4(ip), true
}

// parseAddrLoop is parseAddr a byte at a time, for what is not a plain
// dotted quad: IPv6, or nothing valid.
func parseAddrLoop(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	oct, n, digits := 0, 0, 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			if digits == 1 && n == 0 {
				return parseAddr6(b) // leading zero: IPv6 ("0::1") or nothing
			}
			n = n*10 + int(c-'0')
			digits++
			if n > 255 {
				return parseAddr6(b) // perhaps IPv6 ("2001::")
			}
		case c == '.':
			if digits == 0 || oct == 3 {
				return slowAddr(b)
			}
			ip[oct] = byte(n)
			oct++
			n, digits = 0, 0
		default:
			return parseAddr6(b)
		}
	}
	if oct != 3 || digits == 0 {
		return slowAddr(b)
	}
	ip[3] = byte(n)
	return netip.AddrFrom4(ip), true
}

// parseNetwork reads a network line's prefix; it must be written masked,
// as the writer does, so one network has one spelling.
func parseNetwork(b []byte) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(string(b))
	if err != nil || p != p.Masked() || p.Addr().Is4In6() {
		return netip.Prefix{}, false
	}
	return p, true
}

// parseAddr6 parses IPv6 written in hex groups and colons, with at most
// one "::", by hand (netip.ParseAddr would cost a string per line);
// anything else (an embedded IPv4 address, a zone, a stray byte) it leaves
// to netip, whose rules it mirrors.
func parseAddr6(b []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // where the "::" stands in ip
	s := b
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
		if len(s) == 0 {
			return netip.IPv6Unspecified(), true
		}
	}
	i := 0
	for i < 16 {
		off, acc := 0, uint32(0)
		for ; off < len(s); off++ {
			c := s[off]
			switch {
			case c >= '0' && c <= '9':
				acc = acc<<4 + uint32(c-'0')
			case c >= 'a' && c <= 'f':
				acc = acc<<4 + uint32(c-'a'+10)
			case c >= 'A' && c <= 'F':
				acc = acc<<4 + uint32(c-'A'+10)
			case c == ':':
			default:
				return slowAddr(b) // a dot, a zone, or no address: netip decides
			}
			if c == ':' {
				break
			}
			if off > 3 {
				return netip.Addr{}, false // more than four digits
			}
		}
		if off == 0 {
			return netip.Addr{}, false // a group without digits
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		// s[0] is a colon.
		if len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false // a second "::"
			}
			ellipsis = i
			s = s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return slowAddr(b) // trailing bytes: netip decides
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		for j := i - 1; j >= ellipsis; j-- {
			ip[j+n] = ip[j]
		}
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" standing for no group
	}
	return netip.AddrFrom16(ip), true
}

func slowAddr(b []byte) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	return a, err == nil
}

// parseTime reads the log's own format (RFC 3339, UTC "Z", any fraction of
// up to nine digits) by hand and anything else with time.Parse, so the two
// agree on every input (FuzzParseTime checks).
func parseTime(b []byte) (time.Time, bool) {
	if t, ok := fastTime(b); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	return t, err == nil
}

// dayCache remembers the last date a log's times had (they change once a
// day) and its day number, so a time on that day is read without the
// calendar arithmetic.
type dayCache struct {
	date [10]byte // "2026-11-24", valid as fastDate reads it
	days int64
	ok   bool
}

// parse is parseTime, faster on the date seen last.
func (c *dayCache) parse(b []byte) (time.Time, bool) {
	if c.ok && len(b) >= 20 && [10]byte(b[:10]) == c.date {
		if t, ok := fastClock(b, c.days); ok {
			return t, true
		}
	} else if days, ok := fastDate(b); ok {
		c.date, c.days, c.ok = [10]byte(b[:10]), days, true
		if t, ok := fastClock(b, days); ok {
			return t, true
		}
	}
	return parseTime(b)
}

func fastTime(b []byte) (time.Time, bool) {
	days, ok := fastDate(b)
	if !ok {
		return time.Time{}, false
	}
	return fastClock(b, days)
}

// fastDate reads the date of a time in the log's format (at least 20
// bytes) and returns its day number.
func fastDate(b []byte) (int64, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' {
		return 0, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	if !(ok1 && ok2 && ok3) || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) {
		return 0, false
	}
	return daysFromCivil(year, month, day), true
}

// fastClock reads the rest of a time whose date (day number days) fastDate
// read: "Thh:mm:ss", an optional fraction, "Z".
func fastClock(b []byte, days int64) (time.Time, bool) {
	if len(b) < 20 || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	hour, ok4 := digits(b[11:13])
	min, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok4 && ok5 && ok6) || hour > 23 || min > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := digits(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for i := len(frac) - 1; i < 9; i++ {
			n *= 10
		}
		nsec = n
	}
	return time.Unix(days*86400+int64(hour*3600+min*60+sec), int64(nsec)).UTC(), true
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil counts days since 1970-01-01 (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
