package tapin

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// Message types and transports of the dnstap schema (dnstap.proto) that
// matter here.
const (
	typeClientQuery    = 5
	typeClientResponse = 6

	dnstapMessage = 1 // Dnstap.Type MESSAGE
)

var transports = [...]string{1: "udp", 2: "tcp", 3: "dot", 4: "doh", 5: "dnscrypt-udp", 6: "dnscrypt-tcp", 7: "doq"}

// frame is the part of one dnstap message evidence needs. Byte fields
// point into the frame buffer: decoding allocates nothing.
type frame struct {
	identity  []byte
	msgType   uint64
	protocol  uint64
	queryAddr []byte
	queryPort uint64
	timeSec   uint64
	timeNsec  uint32
	queryMsg  []byte
	respMsg   []byte
}

var (
	errProto     = errors.New("not a dnstap protobuf message")
	errNoMessage = errors.New("dnstap frame without a message")
)

// decodeFrame reads a serialized dnstap.Dnstap protobuf by hand: the
// generated code allocates a struct per field and frame, and ingest must
// cost nothing for the many names that are not listed.
func decodeFrame(b []byte, f *frame) error {
	*f = frame{}
	var typ uint64
	haveMsg := false
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errProto
		}
		b = b[n:]
		switch {
		case num == 1 && wt == protowire.BytesType:
			f.identity, n = protowire.ConsumeBytes(b)
		case num == 14 && wt == protowire.BytesType:
			var msg []byte
			msg, n = protowire.ConsumeBytes(b)
			// A message field given twice is merged, as protobuf does.
			if n >= 0 && decodeMessage(msg, f) != nil {
				return errProto
			}
			haveMsg = true
		case num == 15 && wt == protowire.VarintType:
			typ, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, wt, b)
		}
		if n < 0 {
			return errProto
		}
		b = b[n:]
	}
	if typ != dnstapMessage || !haveMsg {
		return errNoMessage
	}
	return nil
}

func decodeMessage(msg []byte, f *frame) error {
	for len(msg) > 0 {
		num, wt, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return errProto
		}
		msg = msg[n:]
		switch {
		case num == 1 && wt == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(msg)
			f.msgType = uint64(uint32(v)) // an enum is 32 bits on the wire's reader
		case num == 3 && wt == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(msg)
			f.protocol = uint64(uint32(v))
		case num == 4 && wt == protowire.BytesType:
			f.queryAddr, n = protowire.ConsumeBytes(msg)
		case num == 6 && wt == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(msg)
			f.queryPort = uint64(uint32(v)) // uint32 in the schema
		case num == 8 && wt == protowire.VarintType:
			f.timeSec, n = protowire.ConsumeVarint(msg)
		case num == 9 && wt == protowire.Fixed32Type:
			f.timeNsec, n = protowire.ConsumeFixed32(msg)
		case num == 10 && wt == protowire.BytesType:
			f.queryMsg, n = protowire.ConsumeBytes(msg)
		case num == 14 && wt == protowire.BytesType:
			f.respMsg, n = protowire.ConsumeBytes(msg)
		default:
			n = protowire.ConsumeFieldValue(num, wt, msg)
		}
		if n < 0 {
			return errProto
		}
		msg = msg[n:]
	}
	return nil
}

// question reads the first question of a DNS message into buf as a
// lower-case dotted name without the root dot. ok is false for a message
// without a question, a compressed or broken name, or a label holding a
// dot (which no listed name can match).
func question(msg []byte, buf *[256]byte) (name []byte, qtype uint16, ok bool) {
	if len(msg) < 12 || msg[4] == 0 && msg[5] == 0 {
		return nil, 0, false
	}
	i, n := 12, 0
	for {
		if i >= len(msg) {
			return nil, 0, false
		}
		l := int(msg[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(msg) || n+l+1 > len(buf) {
			return nil, 0, false
		}
		if n > 0 {
			buf[n] = '.'
			n++
		}
		for _, c := range msg[i : i+l] {
			if c == '.' {
				return nil, 0, false
			}
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[n] = c
			n++
		}
		i += l
	}
	if i+4 > len(msg) {
		return nil, 0, false
	}
	return buf[:n], uint16(msg[i])<<8 | uint16(msg[i+1]), true
}
