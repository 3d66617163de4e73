package dnsblock

import (
	"encoding/binary"
	"errors"
)

// The hot path reads and writes DNS messages as bytes: unpacking into a
// dns.Msg costs a dozen allocations per query, more than the whole answer.
// miekg/dns is still used where a message is built once (tests, rare paths).

const (
	headerLen = 12

	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagRA = 1 << 7
	flagAD = 1 << 5
	flagCD = 1 << 4

	rcodeSuccess  = 0
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5

	typeA     = 1
	typeNS    = 2
	typeCNAME = 5
	typeSOA   = 6
	typeAAAA  = 28
	typeOPT   = 41
	classIN   = 1
	classANY  = 255

	optCookie = 10

	maxNameWire = 255
	maxPointers = 64 // a longer pointer chain is a loop
	minUDPSize  = 512
	maxUDPSize  = 4096
)

var (
	errShort   = errors.New("message too short")
	errName    = errors.New("bad name")
	errCount   = errors.New("question count is not 1")
	errOPT     = errors.New("bad OPT record")
	errTrailer = errors.New("bad record after the question")
)

// query is what the shim needs of a client's message. Slices point into the
// message buffer.
type query struct {
	id      uint16
	flags   uint16
	opcode  uint8
	qname   []byte // wire form, as the client wrote it (case kept)
	qtype   uint16
	qclass  uint16
	qEnd    int // offset just past the question
	edns    bool
	udpSize uint16 // the client's EDNS payload size (0 without EDNS)
	do      bool
	ednsVer uint8
	text    []byte // lower-case dotted form without the trailing dot
	cut     int    // see readName: -1, or where the labels right of one holding a '.' start in text

	// DNS cookies (cookie.go): the COOKIE option as sent (a client cookie,
	// perhaps followed by a server cookie), the server cookie to answer
	// with, and whether the query presented a valid one of ours.
	cookie    []byte
	srvCookie [serverCookieLen]byte
	cookieOut bool
	cookieOK  bool
}

// udpLimit is the largest UDP answer the client accepts.
func (q *query) udpLimit() int {
	if !q.edns || q.udpSize < minUDPSize {
		return minUDPSize
	}
	return int(q.udpSize)
}

// parseQuery reads the header, the one question and an OPT record. name is
// scratch space for the dotted name (at least 256 bytes). A message with a
// header but a broken body returns the header filled in and an error, so
// the caller can answer FORMERR.
func parseQuery(msg []byte, q *query, name []byte) error {
	*q = query{}
	if len(msg) < headerLen {
		return errShort
	}
	q.id = binary.BigEndian.Uint16(msg)
	q.flags = binary.BigEndian.Uint16(msg[2:])
	q.opcode = uint8(q.flags>>11) & 0xf
	if binary.BigEndian.Uint16(msg[4:]) != 1 {
		return errCount
	}
	an := int(binary.BigEndian.Uint16(msg[6:]))
	ns := int(binary.BigEndian.Uint16(msg[8:]))
	ar := int(binary.BigEndian.Uint16(msg[10:]))
	off := headerLen
	for {
		if off >= len(msg) {
			return errShort
		}
		l := int(msg[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(msg) {
			return errName // pointers and extended labels have no place in a question
		}
		if off+1+l-headerLen > maxNameWire-1 {
			return errName
		}
		off += 1 + l
	}
	q.qname = msg[headerLen:off]
	dotted, cut := dottedName(q.qname, name[:0])
	q.cut = cut
	if off+4 > len(msg) {
		return errShort
	}
	q.qtype = binary.BigEndian.Uint16(msg[off:])
	q.qclass = binary.BigEndian.Uint16(msg[off+2:])
	off += 4
	q.qEnd = off
	q.text = dotted
	// Records after the question: only the OPT matters to the shim, the
	// rest must at least be well formed.
	for i := 0; i < an+ns+ar; i++ {
		start := off
		var err error
		off, err = skipName(msg, off)
		if err != nil || off+10 > len(msg) {
			return errTrailer
		}
		typ := binary.BigEndian.Uint16(msg[off:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		if off+10+rdlen > len(msg) {
			return errTrailer
		}
		if typ == typeOPT {
			if i < an+ns || q.edns || off != start+1 {
				return errOPT // OPT only once, in the additional section, owned by the root
			}
			q.edns = true
			q.udpSize = binary.BigEndian.Uint16(msg[off+2:])
			q.ednsVer = msg[off+5]
			q.do = msg[off+6]&0x80 != 0
			q.cookie = findCookie(msg[off+10 : off+10+rdlen])
		}
		off += 10 + rdlen
	}
	return nil
}

// findCookie returns the data of a well-formed COOKIE option in an OPT
// record's options: a client cookie of 8 bytes, alone or followed by a
// server cookie of 8 to 32 (RFC 7873 §4); nil otherwise. A malformed cookie
// is ignored rather than refused: it only costs the sender the proof.
func findCookie(opts []byte) []byte {
	for len(opts) >= 4 {
		code := binary.BigEndian.Uint16(opts)
		n := int(binary.BigEndian.Uint16(opts[2:]))
		if 4+n > len(opts) {
			return nil
		}
		if code == optCookie {
			if n == clientCookieLen || n >= clientCookieLen+8 && n <= clientCookieLen+32 {
				return opts[4 : 4+n]
			}
			return nil
		}
		opts = opts[4+n:]
	}
	return nil
}

// dottedName appends the lower-case dotted form of wire, a checked
// uncompressed name, to dst, and returns it with its cut (see readName).
// The whole name is copied and lowered at once, eight bytes at a time, and
// the length bytes then become dots: per label and per byte this was a
// third of a cache hit's CPU. A name whose copy holds a '.' (a label with a
// dot in it, or a length byte of 46) takes the label by label way, which
// finds the cut.
func dottedName(wire, dst []byte) (_ []byte, cut int) {
	if len(wire) <= 1 {
		return dst, -1
	}
	n := len(dst)
	dst = append(dst, wire[1:len(wire)-1]...)
	if lowerASCII(dst[n:]) {
		return dottedLabels(wire, dst[:n])
	}
	for p := int(wire[0]); p < len(wire)-2; p += 1 + int(wire[p+1]) {
		dst[n+p] = '.'
	}
	return dst, -1
}

// dottedLabels is dottedName label by label.
func dottedLabels(wire, dst []byte) (_ []byte, cut int) {
	cut = -1
	n := len(dst)
	for off := 0; wire[off] != 0; off += 1 + int(wire[off]) {
		var dotless bool
		dst, dotless = appendLabel(dst, wire[off+1:off+1+int(wire[off])])
		if !dotless {
			cut = len(dst) - n + 1
		}
	}
	return dst, cut
}

// lowerASCII lowers the ASCII capitals of b in place and reports whether b
// holds a '.'. Eight bytes at a time: a byte is a capital when, with its
// top bit clear, adding 0x80-'A' sets the top bit and adding 0x80-'Z'-1
// does not; no sum carries into the next byte.
func lowerASCII(b []byte) (dot bool) {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	var dots uint64
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		a := x &^ high
		upper := (a + (0x80-'A')*ones) &^ (a + (0x80-'Z'-1)*ones) &^ x & high
		binary.LittleEndian.PutUint64(b[i:], x|upper>>2)
		d := x ^ '.'*ones // a zero byte where x has a '.'
		dots |= (d - ones) &^ d & high
	}
	for ; i < len(b); i++ {
		c := b[i]
		if c == '.' {
			dots = 1
		}
		b[i] = lower(c)
	}
	return dots != 0
}

// appendLabel appends a wire label to a dotted lower-case name; dotless is
// false when the label itself holds a '.', which a dotted name cannot show.
func appendLabel(dst, label []byte) (_ []byte, dotless bool) {
	if len(dst) > 0 {
		dst = append(dst, '.')
	}
	dotless = true
	for _, c := range label {
		if c == '.' {
			dotless = false
		}
		dst = append(dst, lower(c))
	}
	return dst, dotless
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// skipName returns the offset after the name at off, which may end in a
// compression pointer. The pointer is not followed: readName and nameEqual
// check where it leads.
func skipName(msg []byte, off int) (int, error) {
	n := 0
	for {
		if off >= len(msg) {
			return 0, errShort
		}
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xc0 == 0xc0:
			if off+2 > len(msg) {
				return 0, errShort
			}
			return off + 2, nil
		case l > 63:
			return 0, errName
		}
		n += 1 + l
		if n > maxNameWire {
			return 0, errName
		}
		off += 1 + l
	}
}

// labels walks the labels of a possibly compressed name. A pointer must
// lead backwards, to a name written earlier, as RFC 1035 §4.1.4 means it
// (BIND rejects others too): a loop is then impossible, and a name that is
// not answered this way cannot be checked against the policy.
type labels struct {
	msg  []byte
	off  int
	wire int
}

// next returns the next label; an empty one ends the name.
func (it *labels) next() ([]byte, error) {
	for jumps := 0; ; {
		if it.off >= len(it.msg) {
			return nil, errShort
		}
		l := int(it.msg[it.off])
		switch {
		case l == 0:
			it.off++
			return it.msg[it.off-1 : it.off-1], nil
		case l&0xc0 == 0xc0:
			if it.off+2 > len(it.msg) {
				return nil, errShort
			}
			ptr := int(binary.BigEndian.Uint16(it.msg[it.off:]) & 0x3fff)
			jumps++
			if ptr >= it.off || jumps > maxPointers {
				return nil, errName
			}
			it.off = ptr
			continue
		case l > 63:
			return nil, errName
		}
		if it.off+1+l > len(it.msg) {
			return nil, errShort
		}
		it.wire += 1 + l
		if it.wire > maxNameWire-1 {
			return nil, errName
		}
		lab := it.msg[it.off+1 : it.off+1+l]
		it.off += 1 + l
		return lab, nil
	}
}

// readName decodes the (possibly compressed) name at off into dst as
// lower-case dotted text without the trailing dot. A label may hold a '.'
// byte, which the dotted text cannot show: cut is then where the labels
// right of the last such label start in text (past its end when it is
// the last one), -1 when there is none. Only those labels can be compared with
// listed names (see match).
func readName(msg []byte, off int, dst []byte) (text []byte, cut int, err error) {
	dst = dst[:0]
	cut = -1
	it := labels{msg: msg, off: off}
	for {
		lab, err := it.next()
		if err != nil {
			return nil, -1, err
		}
		if len(lab) == 0 {
			return dst, cut, nil
		}
		var dotless bool
		dst, dotless = appendLabel(dst, lab)
		if !dotless {
			cut = len(dst) + 1
		}
	}
}

// nameEqual compares the names at a and b of msg label by label, ignoring
// ASCII case: the wire form, so "a\.b" and "a.b" differ.
func nameEqual(msg []byte, a, b int) (bool, error) {
	x, y := labels{msg: msg, off: a}, labels{msg: msg, off: b}
	for {
		la, err := x.next()
		if err != nil {
			return false, err
		}
		lb, err := y.next()
		if err != nil {
			return false, err
		}
		if !equalFoldBytes(la, lb) {
			return false, nil
		}
		if len(la) == 0 {
			return true, nil
		}
	}
}

// checkName makes sure the name at off decodes (pointers, lengths).
func checkName(msg []byte, off int) error {
	it := labels{msg: msg, off: off}
	for {
		lab, err := it.next()
		if err != nil || len(lab) == 0 {
			return err
		}
	}
}

// appendWireName writes the name at off of msg uncompressed, case kept.
func appendWireName(dst, msg []byte, off int) ([]byte, error) {
	it := labels{msg: msg, off: off}
	for {
		lab, err := it.next()
		if err != nil {
			return dst, err
		}
		dst = append(dst, byte(len(lab)))
		dst = append(dst, lab...)
		if len(lab) == 0 {
			return dst, nil
		}
	}
}

// appendPresentation writes the name at off in lower-case presentation
// form, with '.' and other bytes a dotted name cannot show escaped as
// RFC 1035 §5.1 does; evidence of a name with such bytes must say which
// name it was.
func appendPresentation(dst, msg []byte, off int) []byte {
	it := labels{msg: msg, off: off}
	first := true
	for {
		lab, err := it.next()
		if err != nil || len(lab) == 0 {
			return dst
		}
		if !first {
			dst = append(dst, '.')
		}
		first = false
		for _, c := range lab {
			c = lower(c)
			switch {
			case c == '.' || c == '\\' || c == '"' || c == ';' || c == '(' || c == ')' || c == '@' || c == '$':
				dst = append(dst, '\\', c)
			case c <= ' ' || c >= 0x7f:
				dst = append(dst, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
			default:
				dst = append(dst, c)
			}
		}
	}
}

// equalFoldBytes compares two wire names ignoring ASCII case.
func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// sameQuestion compares two question sections: the name without regard to
// case, type and class byte for byte (folding them would take TYPE65 for
// TYPE97).
func sameQuestion(a, b []byte) bool {
	if len(a) != len(b) || len(a) < 5 {
		return false
	}
	n := len(a) - 4
	return equalFoldBytes(a[:n], b[:n]) && string(a[n:]) == string(b[n:])
}

// appendHeader writes a response header for q.
func appendHeader(dst []byte, q *query, rcode uint16, an, ns, ar uint16) []byte {
	flags := flagQR | uint16(q.opcode)<<11 | q.flags&(flagRD|flagCD) | flagRA | rcode
	dst = binary.BigEndian.AppendUint16(dst, q.id)
	dst = binary.BigEndian.AppendUint16(dst, flags)
	qd := uint16(0)
	if q.qEnd > 0 {
		qd = 1
	}
	dst = binary.BigEndian.AppendUint16(dst, qd)
	dst = binary.BigEndian.AppendUint16(dst, an)
	dst = binary.BigEndian.AppendUint16(dst, ns)
	return binary.BigEndian.AppendUint16(dst, ar)
}

// appendOPT writes the answer's OPT record: the client's payload size and
// DO bit echoed, as the issue asks, with the extended rcode given.
func appendOPT(dst []byte, q *query, extRcode uint8) []byte {
	size := q.udpSize
	if size < minUDPSize {
		size = minUDPSize
	}
	dst = append(dst, 0, 0, typeOPT)
	dst = binary.BigEndian.AppendUint16(dst, size)
	dst = append(dst, extRcode, 0)
	var f uint16
	if q.do {
		f = 1 << 15
	}
	dst = binary.BigEndian.AppendUint16(dst, f)
	if !q.cookieOut {
		return append(dst, 0, 0)
	}
	// The client cookie echoed and our server cookie (RFC 7873 §5.2).
	dst = binary.BigEndian.AppendUint16(dst, 4+clientCookieLen+serverCookieLen)
	dst = binary.BigEndian.AppendUint16(dst, optCookie)
	dst = binary.BigEndian.AppendUint16(dst, clientCookieLen+serverCookieLen)
	dst = append(dst, q.cookie[:clientCookieLen]...)
	return append(dst, q.srvCookie[:]...)
}

// errorAnswer is a bare answer with rcode: the question echoed when there
// was a readable one, and the client's OPT.
func errorAnswer(dst, msg []byte, q *query, rcode uint16) []byte {
	ar := uint16(0)
	if q.edns {
		ar = 1
	}
	dst = appendHeader(dst[:0], q, rcode, 0, 0, ar)
	if q.qEnd > 0 {
		dst = append(dst, msg[headerLen:q.qEnd]...)
	}
	if q.edns {
		dst = appendOPT(dst, q, 0)
	}
	return dst
}

// formErr answers a message whose header could be read but nothing else:
// no question, no OPT (RFC 6891 §7: FORMERR may not echo what it could not parse).
func formErr(dst, msg []byte) []byte {
	var q query
	q.id = binary.BigEndian.Uint16(msg)
	q.flags = binary.BigEndian.Uint16(msg[2:])
	q.opcode = uint8(q.flags>>11) & 0xf
	return errorAnswer(dst, msg, &q, rcodeFormErr)
}
