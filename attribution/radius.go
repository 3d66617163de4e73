package attribution

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"layeh.com/radius"

	"wormsink/internal/lifecycle"
)

// Secrets are the RADIUS clients allowed to send accounting (NAS or
// proxy networks) and their shared secrets: the longest network wins.
type Secrets struct {
	nets []netip.Prefix // longest first
	keys [][]byte
}

// LoadSecrets reads a secrets file: lines "CIDR SECRET" (an address stands
// for itself; the secret is the rest of the line), # comments.
func LoadSecrets(path string) (*Secrets, error) {
	return loadFile(path, "radius secrets", ParseSecrets)
}

// ParseSecrets parses a secrets file read from r; name is used in errors.
// Errors never quote a secret.
func ParseSecrets(r io.Reader, name string) (*Secrets, error) {
	s := &Secrets{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		cidr, secret, ok := strings.Cut(line, " ")
		if !ok {
			cidr, secret, ok = strings.Cut(line, "\t")
		}
		secret = strings.TrimSpace(secret)
		if !ok || secret == "" {
			return nil, fmt.Errorf("%s:%d: want \"CIDR SECRET\"", name, n)
		}
		p, err := parsePrefixOrAddr(cidr)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		for _, q := range s.nets {
			if q == p {
				return nil, fmt.Errorf("%s:%d: %s listed twice", name, n, p)
			}
		}
		i := len(s.nets)
		for i > 0 && s.nets[i-1].Bits() < p.Bits() {
			i--
		}
		s.nets = append(s.nets[:i], append([]netip.Prefix{p}, s.nets[i:]...)...)
		s.keys = append(s.keys[:i], append([][]byte{[]byte(secret)}, s.keys[i:]...)...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(s.nets) == 0 {
		return nil, fmt.Errorf("%s: no clients", name)
	}
	return s, nil
}

// Secret returns the secret of the client at a, or nil when a may not send.
func (s *Secrets) Secret(a netip.Addr) []byte {
	a = a.Unmap()
	for i, p := range s.nets {
		if p.Contains(a) {
			return s.keys[i]
		}
	}
	return nil
}

// DefaultRADIUSInFlight bounds the accounting requests waiting for their
// commit at once; past it the listener stops reading and the NAS retries.
const DefaultRADIUSInFlight = 1024

// RADIUSConfig configures a RADIUS accounting server.
type RADIUSConfig struct {
	Secrets *Secrets // required
	// SubscriberAttribute is the attribute holding the subscriber id; 0
	// means User-Name (1).
	SubscriberAttribute radius.Type
	InFlight            int // 0 means DefaultRADIUSInFlight
	Log                 zerolog.Logger
	// Listen is the UDP address NewRADIUS binds ("" with no Conn: no
	// socket, for reading requests without serving them).
	Listen string
	// Conn, when set, is a socket already bound that the server takes
	// over instead of binding Listen; Serve and Shutdown close it.
	Conn net.PacketConn
}

// RADIUSStats counts the requests a RADIUS server saw.
type RADIUSStats struct {
	Requests, Answered, UnknownClient, BadAuthenticator, Malformed, Failed uint64
}

// RADIUS is a RADIUS accounting server (RFC 2866): it stores each valid
// Accounting-Request through the Attributor and answers only once stored,
// so a NAS retransmits what was not.
type RADIUS struct {
	cfg  RADIUSConfig
	a    *Attributor
	conn net.PacketConn
	gate lifecycle.Gate // Serve against Shutdown
	n    struct {
		requests, answered, unknown, badAuth, malformed, failed atomic.Uint64
	}
	// Now is the clock for records without Event-Timestamp; nil: time.Now.
	Now func() time.Time
}

// NewRADIUS returns a server storing through a, bound to cfg.Listen (or
// on cfg.Conn), before Serve: a port taken is an error here.
func NewRADIUS(cfg RADIUSConfig, a *Attributor) (*RADIUS, error) {
	if cfg.Secrets == nil {
		return nil, errors.New("attribution: radius: no secrets")
	}
	if cfg.SubscriberAttribute == 0 {
		cfg.SubscriberAttribute = 1
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = DefaultRADIUSInFlight
	}
	conn, err := packetConn(cfg.Conn, cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("attribution: radius: %w", err)
	}
	return &RADIUS{cfg: cfg, a: a, conn: conn}, nil
}

// packetConn is conn, or a UDP socket bound to listen, or nil for neither.
func packetConn(conn net.PacketConn, listen string) (net.PacketConn, error) {
	if conn != nil || listen == "" {
		return conn, nil
	}
	return net.ListenPacket("udp", listen)
}

// Addr is the server's socket address (nil without one).
func (s *RADIUS) Addr() net.Addr {
	if s.conn == nil {
		return nil
	}
	return s.conn.LocalAddr()
}

// Shutdown stops Serve and waits, until ctx ends, for the requests in
// flight to be stored and answered. Before Serve it closes the socket.
func (s *RADIUS) Shutdown(ctx context.Context) error {
	serving, err := s.gate.Shutdown(ctx)
	if !serving && s.conn != nil {
		s.conn.Close()
	}
	return err
}

// Stats returns the counters.
func (s *RADIUS) Stats() RADIUSStats {
	return RADIUSStats{Requests: s.n.requests.Load(), Answered: s.n.answered.Load(), UnknownClient: s.n.unknown.Load(),
		BadAuthenticator: s.n.badAuth.Load(), Malformed: s.n.malformed.Load(), Failed: s.n.failed.Load()}
}

// Serve reads requests until ctx ends or Shutdown, then closes the
// socket, waits for the requests in flight and returns ErrServerClosed.
func (s *RADIUS) Serve(ctx context.Context) error {
	if s.conn == nil {
		return errors.New("attribution: radius: no socket (RADIUSConfig.Listen)")
	}
	ctx, end, err := s.gate.Begin(ctx, ErrServerClosed)
	if err != nil {
		return err
	}
	defer end()
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	sem := make(chan struct{}, s.cfg.InFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	buf := make([]byte, radius.MaxPacketLength)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("attribution: radius: %w", err)
		}
		s.n.requests.Add(1)
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := ua.AddrPort()
		secret := s.cfg.Secrets.Secret(src.Addr())
		if secret == nil {
			s.n.unknown.Add(1)
			continue
		}
		if n < 20 || radius.Code(buf[0]) != radius.CodeAccountingRequest || int(binary.BigEndian.Uint16(buf[2:4])) > n {
			s.n.malformed.Add(1)
			continue
		}
		if !radius.IsAuthenticRequest(buf[:n], secret) {
			s.n.badAuth.Add(1)
			continue
		}
		pkt, err := radius.Parse(buf[:n], secret)
		if err != nil {
			s.n.malformed.Add(1)
			continue
		}
		ev, err := s.event(pkt, src.Addr())
		if err != nil {
			s.n.malformed.Add(1)
			s.cfg.Log.Debug().Str("event", "radius_malformed").Str("from", src.String()).Str("error", err.Error()).Msg("accounting request dropped")
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.a.Account(context.WithoutCancel(ctx), ev); err != nil {
				// No answer: the NAS retransmits what was not stored.
				s.n.failed.Add(1)
				return
			}
			resp := pkt.Response(radius.CodeAccountingResponse)
			// A proxy matches the answer by its Proxy-State (RFC 2866 §4.2).
			for _, av := range pkt.Attributes {
				if av.Type == 33 {
					resp.Attributes = append(resp.Attributes, av)
				}
			}
			b, err := resp.Encode()
			if err != nil {
				s.n.failed.Add(1)
				return
			}
			if _, err := conn.WriteTo(b, net.UDPAddrFromAddrPort(src)); err == nil {
				s.n.answered.Add(1)
			}
		}()
	}
}

// event reads an accounting record from an authentic request.
func (s *RADIUS) event(p *radius.Packet, from netip.Addr) (AcctEvent, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	var ev AcctEvent
	var delay uint32
	var status uint32
	var eventTS time.Time
	for _, av := range p.Attributes {
		v := []byte(av.Attribute)
		if av.Type == s.cfg.SubscriberAttribute {
			ev.Session.Subscriber = cleanID(string(v))
		}
		switch av.Type {
		case 4: // NAS-IP-Address
			if a, ok := netip.AddrFromSlice(v); ok && len(v) == 4 {
				ev.Session.NAS = a
			}
		case 95: // NAS-IPv6-Address
			if a, ok := netip.AddrFromSlice(v); ok && len(v) == 16 && !ev.Session.NAS.IsValid() {
				ev.Session.NAS = a
			}
		case 8: // Framed-IP-Address
			if a, ok := netip.AddrFromSlice(v); ok && len(v) == 4 {
				ev.Session.Framed = a
			}
		case 97: // Framed-IPv6-Prefix
			p, err := radiusPrefix(v)
			if err != nil {
				return ev, fmt.Errorf("Framed-IPv6-Prefix: %w", err)
			}
			ev.Session.FramedV6 = p
		case 123: // Delegated-IPv6-Prefix
			p, err := radiusPrefix(v)
			if err != nil {
				return ev, fmt.Errorf("Delegated-IPv6-Prefix: %w", err)
			}
			ev.Session.Delegated = p
		case 31: // Calling-Station-Id
			ev.Session.CallingStation = cleanID(string(v))
		case 40: // Acct-Status-Type
			if len(v) != 4 {
				return ev, errors.New("Acct-Status-Type: not 4 bytes")
			}
			status = binary.BigEndian.Uint32(v)
		case 41: // Acct-Delay-Time
			if len(v) == 4 {
				delay = binary.BigEndian.Uint32(v)
			}
		case 44: // Acct-Session-Id
			ev.Session.ID = cleanID(string(v))
		case 46: // Acct-Session-Time
			if len(v) == 4 {
				ev.SessionTime = time.Duration(binary.BigEndian.Uint32(v)) * time.Second
			}
		case 55: // Event-Timestamp
			if len(v) == 4 {
				eventTS = time.Unix(int64(binary.BigEndian.Uint32(v)), 0)
			}
		}
	}
	if !ev.Session.NAS.IsValid() {
		ev.Session.NAS = from
	}
	ev.Status = AcctStatus(status)
	switch ev.Status {
	case AcctStart, AcctStop, AcctInterim:
		if ev.Session.ID == "" {
			return ev, errors.New("no Acct-Session-Id")
		}
	case AcctOn, AcctOff:
	default:
		return ev, fmt.Errorf("Acct-Status-Type %d not handled", status)
	}
	ev.At = eventTS
	if ev.At.IsZero() {
		ev.At = now().Add(-time.Duration(delay) * time.Second)
	}
	return ev, nil
}

// radiusPrefix decodes an IPv6 prefix attribute: reserved byte, prefix
// length, then only as many address bytes as the length needs (RFC 3162).
// Bits past the length are cleared rather than refused.
func radiusPrefix(v []byte) (netip.Prefix, error) {
	if len(v) < 2 || len(v) > 18 || v[1] > 128 {
		return netip.Prefix{}, errors.New("bad length")
	}
	var a [16]byte
	copy(a[:], v[2:])
	return netip.PrefixFrom(netip.AddrFrom16(a), int(v[1])).Masked(), nil
}

// cleanID keeps an identifier a NAS sent printable: it goes into the store,
// the evidence log and reports.
func cleanID(s string) string {
	const maxID = 253
	if len(s) > maxID {
		s = s[:maxID]
	}
	ok := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f || s[i] >= 0x80 {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
