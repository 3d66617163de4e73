package attribution

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"wormsink/internal/lifecycle"
)

// IPFIX information elements of RFC 8158 NAT logging (and RFC 7011's
// addresses and ports).
const (
	ieSourceTransportPort     = 7
	ieSourceIPv4Address       = 8
	ieSourceIPv6Address       = 27
	ieFlowStartMilliseconds   = 152
	iePostNATSourceIPv4       = 225
	iePostNAPTSourcePort      = 227
	ieNATEvent                = 230
	iePostNATSourceIPv6       = 281
	ieObservationTimeMillis   = 323
	iePortRangeStart          = 361
	iePortRangeEnd            = 362
	ipfixVersion              = 10
	ipfixMaxTemplates         = 4096
	ipfixTemplateSet          = 2
	ipfixOptionsTemplateSet   = 3
	ipfixVariableLength       = 65535
	ipfixEnterpriseBit        = 0x8000
	ipfixMessageHeaderLen     = 16
	ipfixSetHeaderLen         = 4
	ipfixMinDataSetID         = 256
	natEventSessionCreate     = 4
	natEventSessionDelete     = 5
	natEvent64SessionCreate   = 6
	natEvent64SessionDelete   = 7
	natEventPortBlockAllocate = 16
	natEventPortBlockDealloc  = 17
)

// ipfixField is one field of a template.
type ipfixField struct {
	id         uint16 // 0 for enterprise-specific fields, which are skipped
	length     uint16
	enterprise bool
}

type templateKey struct {
	exporter netip.Addr
	domain   uint32
	id       uint16
}

// IPFIXDecoder turns IPFIX messages (RFC 7011) carrying RFC 8158 NAT
// events into NATEvents. It keeps the templates each exporter sent, at
// most ipfixMaxTemplates of them.
type IPFIXDecoder struct {
	templates map[templateKey][]ipfixField
}

// NewIPFIXDecoder returns a decoder without templates.
func NewIPFIXDecoder() *IPFIXDecoder {
	return &IPFIXDecoder{templates: map[templateKey][]ipfixField{}}
}

// Decode reads one message from exporter and calls fn with each NAT event
// it holds. Records of other kinds are skipped; a malformed message is an
// error (the events before the fault are still delivered).
func (d *IPFIXDecoder) Decode(exporter netip.Addr, msg []byte, fn func(NATEvent)) error {
	if len(msg) < ipfixMessageHeaderLen {
		return errors.New("ipfix: short message")
	}
	if binary.BigEndian.Uint16(msg) != ipfixVersion {
		return errors.New("ipfix: not version 10")
	}
	n := int(binary.BigEndian.Uint16(msg[2:]))
	if n < ipfixMessageHeaderLen || n > len(msg) {
		return errors.New("ipfix: bad message length")
	}
	exportTime := time.Unix(int64(binary.BigEndian.Uint32(msg[4:])), 0).UTC()
	domain := binary.BigEndian.Uint32(msg[12:])
	b := msg[ipfixMessageHeaderLen:n]
	for len(b) > 0 {
		if len(b) < ipfixSetHeaderLen {
			return errors.New("ipfix: short set header")
		}
		id := binary.BigEndian.Uint16(b)
		l := int(binary.BigEndian.Uint16(b[2:]))
		if l < ipfixSetHeaderLen || l > len(b) {
			return errors.New("ipfix: bad set length")
		}
		body := b[ipfixSetHeaderLen:l]
		b = b[l:]
		switch {
		case id == ipfixTemplateSet:
			if err := d.templatesFrom(exporter, domain, body, false); err != nil {
				return err
			}
		case id == ipfixOptionsTemplateSet:
			if err := d.templatesFrom(exporter, domain, body, true); err != nil {
				return err
			}
		case id >= ipfixMinDataSetID:
			t, ok := d.templates[templateKey{exporter, domain, id}]
			if !ok {
				continue // its template has not come yet
			}
			if err := decodeRecords(t, body, exportTime, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *IPFIXDecoder) templatesFrom(exporter netip.Addr, domain uint32, b []byte, options bool) error {
	for len(b) >= 4 {
		id := binary.BigEndian.Uint16(b)
		count := int(binary.BigEndian.Uint16(b[2:]))
		b = b[4:]
		if options {
			if len(b) < 2 {
				return errors.New("ipfix: short options template")
			}
			b = b[2:] // scope field count
		}
		if id < ipfixMinDataSetID {
			return errors.New("ipfix: bad template id")
		}
		fields := make([]ipfixField, 0, min(count, 256))
		for i := 0; i < count; i++ {
			if len(b) < 4 {
				return errors.New("ipfix: short template")
			}
			f := ipfixField{id: binary.BigEndian.Uint16(b), length: binary.BigEndian.Uint16(b[2:])}
			b = b[4:]
			if f.id&ipfixEnterpriseBit != 0 {
				if len(b) < 4 {
					return errors.New("ipfix: short template")
				}
				b = b[4:]
				f.id, f.enterprise = 0, true
			}
			fields = append(fields, f)
		}
		k := templateKey{exporter, domain, id}
		if count == 0 { // withdrawal
			delete(d.templates, k)
			continue
		}
		if _, ok := d.templates[k]; !ok && len(d.templates) >= ipfixMaxTemplates {
			return errors.New("ipfix: too many templates")
		}
		d.templates[k] = fields
	}
	return nil
}

// decodeRecords reads the data records of one set.
func decodeRecords(t []ipfixField, b []byte, exportTime time.Time, fn func(NATEvent)) error {
	minLen := 0
	for _, f := range t {
		if f.length == ipfixVariableLength {
			minLen++
		} else {
			minLen += int(f.length)
		}
	}
	if minLen == 0 {
		return errors.New("ipfix: empty template")
	}
	for len(b) >= minLen {
		var r natRecord
		for _, f := range t {
			l := int(f.length)
			if f.length == ipfixVariableLength {
				if len(b) < 1 {
					return errors.New("ipfix: short record")
				}
				l = int(b[0])
				b = b[1:]
				if l == 255 {
					if len(b) < 2 {
						return errors.New("ipfix: short record")
					}
					l = int(binary.BigEndian.Uint16(b))
					b = b[2:]
				}
			}
			if len(b) < l {
				return errors.New("ipfix: short record")
			}
			if !f.enterprise {
				r.set(f.id, b[:l])
			}
			b = b[l:]
		}
		if ev, ok := r.natEvent(exportTime); ok {
			fn(ev)
		}
	}
	return nil // the rest is padding
}

type natRecord struct {
	event           int
	in, pub         netip.Addr
	inPort, pubPort uint16
	lo, hi          uint16
	hasPort         bool
	hasRange        bool
	at              time.Time
}

func beUint(v []byte) uint64 {
	var n uint64
	for _, c := range v {
		n = n<<8 | uint64(c)
	}
	return n
}

func (r *natRecord) set(id uint16, v []byte) {
	switch id {
	case ieNATEvent:
		if len(v) >= 1 && len(v) <= 8 {
			r.event = int(beUint(v))
		}
	case ieSourceIPv4Address:
		if len(v) == 4 {
			r.in = netip.AddrFrom4([4]byte(v))
		}
	case ieSourceIPv6Address:
		if len(v) == 16 {
			r.in = netip.AddrFrom16([16]byte(v))
		}
	case iePostNATSourceIPv4:
		if len(v) == 4 {
			r.pub = netip.AddrFrom4([4]byte(v))
		}
	case iePostNATSourceIPv6:
		if len(v) == 16 {
			r.pub = netip.AddrFrom16([16]byte(v))
		}
	case ieSourceTransportPort:
		if len(v) == 2 {
			r.inPort = uint16(beUint(v))
		}
	case iePostNAPTSourcePort:
		if len(v) == 2 {
			r.pubPort, r.hasPort = uint16(beUint(v)), true
		}
	case iePortRangeStart:
		if len(v) == 2 {
			r.lo, r.hasRange = uint16(beUint(v)), true
		}
	case iePortRangeEnd:
		if len(v) == 2 {
			r.hi = uint16(beUint(v))
		}
	case ieObservationTimeMillis, ieFlowStartMilliseconds:
		if len(v) == 8 && (r.at.IsZero() || id == ieObservationTimeMillis) {
			r.at = time.UnixMilli(int64(beUint(v))).UTC()
		}
	}
}

func (r *natRecord) natEvent(exportTime time.Time) (NATEvent, bool) {
	var ev NATEvent
	if !r.in.IsValid() || !r.pub.IsValid() {
		return ev, false
	}
	b := &ev.Binding
	b.Inside, b.Public, b.Source = r.in, r.pub, "ipfix"
	switch r.event {
	case natEventSessionCreate, natEvent64SessionCreate, natEventSessionDelete, natEvent64SessionDelete:
		if !r.hasPort || r.pubPort == 0 {
			return ev, false
		}
		b.PortLo, b.PortHi, b.InsidePort = r.pubPort, r.pubPort, r.inPort
		ev.Kind = NATOpen
		if r.event == natEventSessionDelete || r.event == natEvent64SessionDelete {
			ev.Kind = NATClose
		}
	case natEventPortBlockAllocate, natEventPortBlockDealloc:
		if !r.hasRange || r.lo == 0 || r.hi < r.lo {
			return ev, false
		}
		b.PortLo, b.PortHi = r.lo, r.hi
		ev.Kind = NATOpen
		if r.event == natEventPortBlockDealloc {
			ev.Kind = NATClose
		}
	default:
		return ev, false
	}
	ev.At = r.at
	if ev.At.IsZero() {
		ev.At = exportTime
	}
	b.Last = ev.At
	if ev.Kind == NATOpen {
		b.Start = ev.At
	} else {
		b.End = ev.At
	}
	return ev, true
}

// IPFIXStats counts what an IPFIX collector received.
type IPFIXStats struct {
	Messages, Malformed, Refused, Events uint64
}

// IPFIX is a collector of RFC 8158 NAT events over UDP. Only exporters in
// Allow are heard: a NAT event names who held an address, so a forged one
// could put a sighting on the wrong subscriber.
type IPFIX struct {
	a    *Attributor
	cfg  IPFIXConfig
	conn net.PacketConn
	gate lifecycle.Gate // Serve against Shutdown
	n    struct{ messages, malformed, refused, events atomic.Uint64 }
}

// IPFIXConfig configures an IPFIX collector.
type IPFIXConfig struct {
	// Allow are the exporters heard; nil means DefaultIPFIXAllow.
	Allow []netip.Prefix
	Log   zerolog.Logger
	// Listen is the UDP address NewIPFIX binds; Conn, when set, a socket
	// already bound that the collector takes over instead.
	Listen string
	Conn   net.PacketConn
}

// DefaultIPFIXAllow is loopback only: an exporter elsewhere must be named.
var DefaultIPFIXAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// NewIPFIX returns a collector storing through a, bound to cfg.Listen (or
// on cfg.Conn) before Serve.
func NewIPFIX(cfg IPFIXConfig, a *Attributor) (*IPFIX, error) {
	if cfg.Allow == nil {
		cfg.Allow = DefaultIPFIXAllow
	}
	conn, err := packetConn(cfg.Conn, cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("attribution: ipfix: %w", err)
	}
	if conn == nil {
		return nil, errors.New("attribution: ipfix: no socket (IPFIXConfig.Listen)")
	}
	return &IPFIX{a: a, cfg: cfg, conn: conn}, nil
}

// Addr is the collector's socket address.
func (c *IPFIX) Addr() net.Addr { return c.conn.LocalAddr() }

// Shutdown stops Serve and waits for it until ctx ends; before Serve it
// closes the socket.
func (c *IPFIX) Shutdown(ctx context.Context) error {
	serving, err := c.gate.Shutdown(ctx)
	if !serving {
		c.conn.Close()
	}
	return err
}

// Stats returns the counters.
func (c *IPFIX) Stats() IPFIXStats {
	return IPFIXStats{Messages: c.n.messages.Load(), Malformed: c.n.malformed.Load(), Refused: c.n.refused.Load(), Events: c.n.events.Load()}
}

// Serve reads messages until ctx ends or Shutdown, then closes the socket
// and returns ErrServerClosed.
func (c *IPFIX) Serve(ctx context.Context) error {
	ctx, end, err := c.gate.Begin(ctx, ErrServerClosed)
	if err != nil {
		return err
	}
	defer end()
	conn := c.conn
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	d := NewIPFIXDecoder()
	buf := make([]byte, 65535)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ErrServerClosed
			}
			return fmt.Errorf("attribution: ipfix: %w", err)
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := ua.AddrPort().Addr().Unmap()
		allowed := false
		for _, p := range c.cfg.Allow {
			if p.Contains(src) {
				allowed = true
				break
			}
		}
		if !allowed {
			c.n.refused.Add(1)
			continue
		}
		c.n.messages.Add(1)
		err = d.Decode(src, buf[:n], func(ev NATEvent) {
			if c.a.NAT(ctx, ev) == nil {
				c.n.events.Add(1)
			}
		})
		if err != nil {
			c.n.malformed.Add(1)
			c.cfg.Log.Debug().Str("event", "ipfix_malformed").Str("from", src.String()).Str("error", err.Error()).Msg("IPFIX message skipped")
		}
	}
}

// packetConn is conn, or a UDP socket bound to listen, or nil for neither.
func packetConn(conn net.PacketConn, listen string) (net.PacketConn, error) {
	if conn != nil || listen == "" {
		return conn, nil
	}
	return net.ListenPacket("udp", listen)
}
