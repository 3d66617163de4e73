// Package tftp is the TFTP packet codec the sinkhole, the interceptor and the
// packet matcher share: parsing requests, telling replies apart, building ERRORs.
package tftp

import (
	"bytes"
	"errors"
)

// TFTP opcodes (RFC 1350).
const (
	OpRRQ   = 1
	OpWRQ   = 2
	OpData  = 3
	OpAck   = 4
	OpError = 5
	OpOACK  = 6
)

// ErrMalformed is returned for a packet that is not a well-formed request.
var ErrMalformed = errors.New("malformed tftp request")

// Request is a TFTP read or write request, its fields pointing into the
// packet it was parsed from: parsing allocates nothing, because the packet
// matcher parses every UDP payload it sees on port 69.
type Request struct {
	Op   uint16
	File []byte // as sent, path and case included
	Mode []byte // as sent
	opts []byte // the option pairs, NUL-terminated strings
}

// OpName is "read" or "write".
func (r *Request) OpName() string {
	if r.Op == OpWRQ {
		return "write"
	}
	return "read"
}

// HasOptions reports whether the request carried RFC 2347 options.
func (r *Request) HasOptions() bool { return len(r.opts) > 0 }

// EachOption calls fn for each option name and value, as sent.
func (r *Request) EachOption(fn func(name, value []byte)) {
	p := r.opts
	for len(p) > 0 {
		i := bytes.IndexByte(p, 0)
		name := p[:i]
		p = p[i+1:]
		j := bytes.IndexByte(p, 0)
		fn(name, p[:j])
		p = p[j+1:]
	}
}

// MaxRequest is the largest request accepted: RFC 1350 requests fit a
// 512-byte packet, options (RFC 2347) may take it up to a plain MTU.
const MaxRequest = 1472

// ParseRequest parses a TFTP RRQ or WRQ from a UDP payload. It accepts what
// real clients send (any mode case, options, trailing NUL padding) and
// rejects anything else, so that --any-port scanning does not mistake other
// protocols for TFTP. It never allocates.
func ParseRequest(p []byte) (Request, error) {
	var r Request
	if len(p) < 4 || len(p) > MaxRequest || p[0] != 0 || (p[1] != OpRRQ && p[1] != OpWRQ) {
		return r, ErrMalformed
	}
	r.Op = uint16(p[1])
	rest := p[2:]
	i := bytes.IndexByte(rest, 0)
	if i <= 0 {
		return r, ErrMalformed
	}
	r.File = rest[:i]
	rest = rest[i+1:]
	j := bytes.IndexByte(rest, 0)
	if j <= 0 || !validMode(rest[:j]) {
		return r, ErrMalformed
	}
	r.Mode = rest[:j]
	rest = rest[j+1:]
	// Options: name NUL value NUL pairs; NUL padding after them is tolerated.
	end := len(rest)
	for end > 0 && rest[end-1] == 0 {
		end--
	}
	if end == 0 {
		return r, nil
	}
	if end == len(rest) {
		return r, ErrMalformed // the last option is not NUL-terminated
	}
	opts := rest[:end+1] // keep the last NUL
	q := opts
	for len(q) > 0 {
		k := bytes.IndexByte(q, 0)
		if k <= 0 {
			return r, ErrMalformed
		}
		q = q[k+1:]
		v := bytes.IndexByte(q, 0)
		if v < 0 {
			return r, ErrMalformed // an option without a value
		}
		q = q[v+1:]
	}
	r.opts = opts
	return r, nil
}

// validMode accepts the RFC 1350 modes in any letter case.
func validMode(m []byte) bool {
	switch len(m) {
	case 4:
		return bytes.EqualFold(m, []byte("mail"))
	case 5:
		return bytes.EqualFold(m, []byte("octet"))
	case 8:
		return bytes.EqualFold(m, []byte("netascii"))
	}
	return false
}
