package attribution

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/ipv4"
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
// An answer waits up to DefaultRADIUSGather plus DefaultBatchDelay, so at
// 5,000 requests a second some 600 are in flight.
const DefaultRADIUSInFlight = 4096

// DefaultRADIUSGather is how long the server lets requests queue in its
// socket once it has read all there was, before it reads again: one
// wake-up then takes them all (recvmmsg) instead of one wake-up each, CPU
// the DNS shim in the same process would otherwise lose. An answer waits
// for its commit anyway, which the writer gathers for DefaultBatchDelay.
// At 5,000 requests a second 20 ms is a hundred datagrams, within a
// default socket buffer (net.core.rmem_default, 208 KiB).
const DefaultRADIUSGather = 20 * time.Millisecond

// radiusReadBatch is how many datagrams one read takes from the socket.
const radiusReadBatch = 64

// RADIUSConfig configures a RADIUS accounting server.
type RADIUSConfig struct {
	Secrets *Secrets // required
	// SubscriberAttribute is the attribute holding the subscriber id; 0
	// means User-Name (1).
	SubscriberAttribute radius.Type
	InFlight            int // 0 means DefaultRADIUSInFlight
	// Gather is how long requests queue in the socket between reads once
	// it was drained; 0 means DefaultRADIUSGather, negative none.
	Gather time.Duration
	Log    zerolog.Logger
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
//
// One goroutine reads the socket in batches and checks, parses and queues
// what it read as one batch for the writer; another answers each batch
// once committed, in one sendmmsg. No goroutine, channel operation or
// wake-up per request; what it allocates per request is the peer's
// address and the strings that are stored.
type RADIUS struct {
	cfg  RADIUSConfig
	a    *Attributor
	conn radiusSocket   // nil without one
	gate lifecycle.Gate // Serve against Shutdown
	n    struct {
		requests, answered, unknown, badAuth, malformed, failed atomic.Uint64
	}
	// Now is the clock for records without Event-Timestamp; nil: time.Now.
	Now func() time.Time
	// rbuf is the reading goroutine's scratch for the authenticator check,
	// wbuf the answering goroutine's.
	rbuf, wbuf []byte
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
	if cfg.Gather == 0 {
		cfg.Gather = DefaultRADIUSGather
	}
	s := &RADIUS{cfg: cfg, a: a}
	switch {
	case cfg.Conn != nil:
		s.conn = newPacketSocket(cfg.Conn)
	case cfg.Listen != "":
		conn, err := listenRADIUS(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("attribution: radius: %w", err)
		}
		s.conn = conn
	}
	return s, nil
}

// radiusSocket is the server's socket, read and written in batches.
type radiusSocket interface {
	batchConn
	LocalAddr() net.Addr
	Close() error
	// gathers reports whether a read takes all the datagrams waiting, so
	// that pausing between reads gathers them.
	gathers() bool
}

// packetSocket is a radiusSocket on a net.PacketConn (RADIUSConfig.Conn,
// and Listen where there is no listenRADIUS of the system's own).
type packetSocket struct {
	batchConn
	c       net.PacketConn
	batches bool
}

func newPacketSocket(c net.PacketConn) *packetSocket {
	if uc, ok := c.(*net.UDPConn); ok {
		// Room for what arrives while the server gathers and commits (the
		// kernel caps it at net.core.rmem_max).
		uc.SetReadBuffer(1 << 20)
	}
	bc, batches := newBatchConn(c)
	return &packetSocket{bc, c, batches}
}

func (p *packetSocket) LocalAddr() net.Addr { return p.c.LocalAddr() }
func (p *packetSocket) Close() error        { return p.c.Close() }
func (p *packetSocket) gathers() bool       { return p.batches }

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

// radiusBatch is what one read took: the records queued for the writer,
// and what their answers need.
type radiusBatch struct {
	evs    []AcctEvent
	reqs   []radiusReq // reqs[i] asked for evs[i]
	out    []ipv4.Message
	commit Commit
}

// radiusReq is what an answer needs from its request. Its buffers are
// kept from batch to batch.
type radiusReq struct {
	to     *net.UDPAddr
	secret []byte
	id     byte
	auth   [16]byte // the Request Authenticator
	proxy  []byte   // the Proxy-State attributes, whole and in order
	resp   []byte
	bufs   [1][]byte
}

// next is a fresh request slot, its buffers reused.
func (b *radiusBatch) next() *radiusReq {
	if len(b.reqs) < cap(b.reqs) {
		b.reqs = b.reqs[:len(b.reqs)+1]
	} else {
		b.reqs = append(b.reqs, radiusReq{})
	}
	r := &b.reqs[len(b.reqs)-1]
	r.proxy = r.proxy[:0]
	return r
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
	bc, batches := conn, conn.gathers()
	// The batches bound the requests waiting for their commit: with none
	// free the server stops reading, and the NAS retransmits.
	nb := max(1, s.cfg.InFlight/radiusReadBatch)
	free := make(chan *radiusBatch, nb)
	for range nb {
		free <- &radiusBatch{}
	}
	// Answers go from a goroutine of their own, a batch once committed, so
	// that reading goes on while the writer commits.
	ready := make(chan *radiusBatch, nb)
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for b := range ready {
			s.answer(bc, b)
			free <- b
		}
	}()
	defer func() { close(ready); <-answered }()
	msgs := make([]ipv4.Message, radiusReadBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, radius.MaxPacketLength)}
	}
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	for {
		var b *radiusBatch
		select {
		case b = <-free:
		case <-ctx.Done():
			return ErrServerClosed
		}
		n, err := bc.ReadBatch(msgs, 0)
		if err != nil {
			free <- b
			if ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("attribution: radius: %w", err)
		}
		b.evs, b.reqs = b.evs[:0], b.reqs[:0]
		for i := range msgs[:n] {
			s.take(b, &msgs[i])
		}
		if len(b.evs) == 0 {
			free <- b
		} else if b.commit, err = s.a.AccountBatch(context.WithoutCancel(ctx), b.evs); err != nil {
			s.n.failed.Add(uint64(len(b.evs)))
			free <- b
		} else {
			ready <- b // never blocks: it has room for every batch
		}
		if batches && n < len(msgs) && s.cfg.Gather > 0 {
			// The socket is drained: let the next requests gather in it.
			pause.Reset(s.cfg.Gather)
			select {
			case <-pause.C:
			case <-ctx.Done():
				return ErrServerClosed
			}
		}
	}
}

// take checks one datagram and, when it is an authentic accounting
// request from a known client, adds its record to b.
func (s *RADIUS) take(b *radiusBatch, m *ipv4.Message) {
	s.n.requests.Add(1)
	ua, ok := m.Addr.(*net.UDPAddr)
	if !ok {
		return
	}
	src := ua.AddrPort()
	secret := s.cfg.Secrets.Secret(src.Addr())
	if secret == nil {
		s.n.unknown.Add(1)
		return
	}
	pkt := m.Buffers[0][:m.N]
	if len(pkt) < 20 || radius.Code(pkt[0]) != radius.CodeAccountingRequest {
		s.n.malformed.Add(1)
		return
	}
	l := int(binary.BigEndian.Uint16(pkt[2:4]))
	if l < 20 || l > len(pkt) {
		s.n.malformed.Add(1)
		return
	}
	pkt = pkt[:l] // octets past the Length are padding (RFC 2865 §3)
	if !s.authentic(pkt, secret) {
		s.n.badAuth.Add(1)
		return
	}
	ev, err := s.event(pkt[20:], src.Addr())
	if err != nil {
		s.n.malformed.Add(1)
		s.cfg.Log.Debug().Str("event", "radius_malformed").Str("from", src.String()).Str("error", err.Error()).Msg("accounting request dropped")
		return
	}
	r := b.next()
	r.to, r.secret, r.id = ua, secret, pkt[1]
	copy(r.auth[:], pkt[4:20])
	// A proxy matches the answer by its Proxy-State (RFC 2866 §4.2); event
	// has checked the attributes' lengths.
	for a := pkt[20:]; len(a) > 0; a = a[a[1]:] {
		if a[0] == 33 {
			r.proxy = append(r.proxy, a[:a[1]]...)
		}
	}
	b.evs = append(b.evs, ev)
}

// authentic checks a request's Request Authenticator: MD5 of the packet
// with 16 zero octets in its place, then the secret (RFC 2866 §3).
func (s *RADIUS) authentic(pkt, secret []byte) bool {
	var zero [16]byte
	h := append(s.rbuf[:0], pkt[:4]...)
	h = append(h, zero[:]...)
	h = append(h, pkt[20:]...)
	h = append(h, secret...)
	s.rbuf = h
	sum := md5.Sum(h)
	return subtle.ConstantTimeCompare(sum[:], pkt[4:20]) == 1
}

// answer waits for a batch's commit and sends its answers.
func (s *RADIUS) answer(bc batchConn, b *radiusBatch) {
	if err := b.commit.Wait(context.Background()); err != nil {
		// No answer: the NAS retransmits what was not stored.
		s.n.failed.Add(uint64(len(b.reqs)))
		return
	}
	b.out = b.out[:0]
	for i := range b.reqs {
		r := &b.reqs[i]
		r.resp, s.wbuf = response(r.resp, s.wbuf, r)
		r.bufs[0] = r.resp
		b.out = append(b.out, ipv4.Message{Buffers: r.bufs[:], Addr: r.to})
	}
	for out := b.out; len(out) > 0; {
		n, err := bc.WriteBatch(out, 0)
		s.n.answered.Add(uint64(n))
		if err != nil {
			n++ // that one could not be sent: its NAS retransmits
		}
		out = out[min(n, len(out)):]
	}
}

// response encodes the Accounting-Response to r into buf (RFC 2866 §3):
// the request's identifier, its Proxy-State attributes in order, and the
// Response Authenticator, MD5 of the answer with the Request Authenticator
// in its place, then the secret. scratch is reused for the hash input.
func response(buf, scratch []byte, r *radiusReq) (resp, scratchOut []byte) {
	l := 20 + len(r.proxy)
	buf = append(buf[:0], byte(radius.CodeAccountingResponse), r.id, byte(l>>8), byte(l))
	buf = append(buf, r.auth[:]...)
	buf = append(buf, r.proxy...)
	scratch = append(append(scratch[:0], buf...), r.secret...)
	sum := md5.Sum(scratch)
	copy(buf[4:20], sum[:])
	return buf, scratch
}

// batchConn reads and writes datagrams several at once where it can.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// newBatchConn reads and writes c in batches (recvmmsg, sendmmsg) when it
// is a UDP socket; batches reports whether reads are batched.
func newBatchConn(c net.PacketConn) (bc batchConn, batches bool) {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return oneByOne{c}, false
	}
	pc := ipv4.NewPacketConn(uc)
	if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
		return pc, true
	}
	// An IPv6 socket (perhaps dual-stack): x/net would give sendmmsg an
	// IPv4-mapped peer as an IPv4 address, which such a socket refuses, so
	// its answers go one by one.
	return splitConn{pc, oneByOne{c}}, true
}

type splitConn struct {
	r *ipv4.PacketConn
	w oneByOne
}

func (c splitConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	return c.r.ReadBatch(ms, flags)
}
func (c splitConn) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	return c.w.WriteBatch(ms, flags)
}

// oneByOne is a batchConn on any PacketConn: a datagram per call.
type oneByOne struct{ net.PacketConn }

func (c oneByOne) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	n, from, err := c.ReadFrom(ms[0].Buffers[0])
	if err != nil {
		return 0, err
	}
	ms[0].N, ms[0].Addr = n, from
	return 1, nil
}

func (c oneByOne) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	for i := range ms {
		if _, err := c.WriteTo(ms[i].Buffers[0], ms[i].Addr); err != nil {
			return i, err
		}
	}
	return len(ms), nil
}

// event reads an accounting record from the attributes of an authentic
// request (the octets after its authenticator); it fails for attributes
// whose lengths do not add up, as layeh's parser does.
func (s *RADIUS) event(attrs []byte, from netip.Addr) (AcctEvent, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	var ev AcctEvent
	var delay uint32
	var status uint32
	var eventTS time.Time
	for b := attrs; len(b) > 0; {
		if len(b) < 2 || int(b[1]) < 2 || int(b[1]) > len(b) {
			return ev, errors.New("attribute length does not fit")
		}
		typ, v := b[0], b[2:b[1]]
		b = b[b[1]:]
		if radius.Type(typ) == s.cfg.SubscriberAttribute {
			ev.Session.Subscriber = cleanID(string(v))
		}
		switch typ {
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
