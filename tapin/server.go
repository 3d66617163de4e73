// Package tapin reads the dnstap streams of an ISP's resolvers and records
// every client lookup of a listed name as a dns_lookup evidence event.
package tapin

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/internal/lifecycle"
	"wormsink/signatures"
)

// ContentType is the Frame Streams content type of dnstap.
var ContentType = []byte("protobuf:dnstap.Dnstap")

// MaxFrame bounds one data frame. A dnstap message holds at most two DNS
// messages of 64 KB and some addresses.
const MaxFrame = 256 << 10

// Defaults for Config.
const (
	// DefaultMaxConns bounds the streams open at once: an ISP has a few
	// dozen resolvers, each holding one stream (two while it reconnects).
	DefaultMaxConns = 64
	// DefaultIdleTimeout closes a stream that sent nothing, not even a
	// frame of an unlisted name, for this long. A resolver's stream is
	// busy; one that went quiet reconnects when it has frames again
	// (Unbound, BIND and Knot all do).
	DefaultIdleTimeout = 5 * time.Minute
	// MaxClockSkew is how far a frame's own time may be from the time it
	// was received. Beyond it the frame's time is not believed: the line
	// carries the receive time, and Stats.BadTime counts it.
	MaxClockSkew = 5 * time.Minute
	// handshakeTimeout bounds the Frame Streams handshake.
	handshakeTimeout = 10 * time.Second
)

// DefaultAllow is the tcp: allow list when Config.Allow is nil: loopback
// only, so a stream over the network needs the operator's word.
func DefaultAllow() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// Config says where a Server listens and whom it takes streams from.
//
// A dnstap frame is a resolver's report of what a client asked it;
// wormsink never exchanged a packet with that client. What a frame can
// prove is therefore at most what the resolver's own transport to the
// client proved (its socket_protocol: TCP, TLS, HTTPS and DNSCrypt over
// TCP completed a handshake, QUIC validated the address; UDP proves
// nothing), and only if the stream comes from a resolver the operator
// trusts: on tcp: a network in Allow, on unix: whoever the socket's
// directory lets in.
type Config struct {
	// Listen is "unix:PATH" or "tcp:ADDR". A unix socket path already in
	// use by a live listener is refused; a stale socket file is replaced.
	Listen string
	// Allow lists the networks tcp: streams may come from; nil means
	// DefaultAllow(). A connection from elsewhere is closed before the
	// handshake and counted in Stats.Refused. It does not apply to unix:.
	Allow []netip.Prefix
	// MaxConns bounds the connections open at once (handshakes
	// included); 0 means DefaultMaxConns. Past it a new connection is
	// closed at once and counted in Stats.Busy.
	MaxConns int
	// IdleTimeout closes a stream that sends nothing for that long; 0
	// means DefaultIdleTimeout. Counted in Stats.Idle.
	IdleTimeout time.Duration
}

// Stats counts what the server did; all counters only grow.
type Stats struct {
	Connections uint64 // streams accepted (handshake done)
	Active      int64  // streams open now
	Frames      uint64 // data frames read
	Lookups     uint64 // listed names recorded as evidence
	Skipped     uint64 // frames of other message types, or a response whose query was already counted
	Unparsed    uint64 // client messages whose question could not be read (a resolver logs what clients send)
	Errors      uint64 // streams closed for a malformed frame or a failed handshake
	Refused     uint64 // tcp: connections from outside Config.Allow, closed unread
	Busy        uint64 // connections closed because MaxConns were open
	Idle        uint64 // streams closed after IdleTimeout without a frame
	BadTime     uint64 // frames whose time was more than MaxClockSkew from now: recorded at the receive time
	NotHost     uint64 // lookups from an address that is no host (unspecified, broadcast, multicast), not recorded
}

// Server accepts dnstap streams on one listener.
type Server struct {
	gate lifecycle.Gate // Serve against Shutdown

	ln    net.Listener
	label string // "unix:PATH" or "tcp:ADDR", the resolver when a stream has no identity
	src   signatures.Source
	rec   evidence.Recorder
	log   zerolog.Logger
	now   func() time.Time

	allow    []netip.Prefix // tcp: only; nil for unix:
	maxConns int
	idle     time.Duration

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// queries remembers the resolvers that log client queries: their
	// client responses would count the same lookup twice. Bounded by
	// maxQueryKeys: a resolver gets one key however often it reconnects.
	queries map[string]struct{}

	wg                                               sync.WaitGroup
	conns_, frames, lookups, skipped, unparsed, errs atomic.Uint64
	refused, busy, idleN, badTime, notHost           atomic.Uint64
	active                                           atomic.Int64
}

const maxQueryKeys = 4096

// Listen binds spec ("unix:PATH" or "tcp:ADDR") with the defaults of
// Config.
func Listen(spec string, src signatures.Source, rec evidence.Recorder, log zerolog.Logger) (*Server, error) {
	return New(Config{Listen: spec}, src, rec, log)
}

// New binds cfg.Listen; Serve takes streams on it.
func New(cfg Config, src signatures.Source, rec evidence.Recorder, log zerolog.Logger) (*Server, error) {
	spec := cfg.Listen
	network, addr, ok := strings.Cut(spec, ":")
	if !ok || addr == "" || network != "unix" && network != "tcp" {
		return nil, fmt.Errorf("dnstap: listen %q: want unix:PATH or tcp:ADDR", spec)
	}
	if network == "unix" {
		if err := removeStaleSocket(addr); err != nil {
			return nil, fmt.Errorf("dnstap: listen %s: %w", spec, err)
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("dnstap: %w", err)
	}
	if network == "unix" {
		// Resolvers run as their own users. Who may write evidence is
		// decided by the permissions of the socket's directory.
		if err := os.Chmod(addr, 0o666); err != nil {
			ln.Close()
			return nil, fmt.Errorf("dnstap: %w", err)
		}
	}
	s := &Server{ln: ln, label: network + ":" + ln.Addr().String(), src: src, rec: rec, log: log,
		now: time.Now, conns: map[net.Conn]struct{}{},
		maxConns: cfg.MaxConns, idle: cfg.IdleTimeout}
	if s.maxConns <= 0 {
		s.maxConns = DefaultMaxConns
	}
	if s.idle <= 0 {
		s.idle = DefaultIdleTimeout
	}
	if network == "tcp" {
		s.allow = cfg.Allow
		if s.allow == nil {
			s.allow = DefaultAllow()
		}
	}
	return s, nil
}

// removeStaleSocket clears the way for a unix socket at path: a socket
// file nobody listens on (left by a run that was killed) is removed; a
// live one, another instance's, is refused, as a bound port is; anything
// else at the path is left for net.Listen to fail on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return errors.New("socket in use by another process")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("socket there, and not stale: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// allowed reports whether a may stream to a tcp: listener.
func allowed(nets []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Connections: s.conns_.Load(), Active: s.active.Load(), Frames: s.frames.Load(), Lookups: s.lookups.Load(),
		Skipped: s.skipped.Load(), Unparsed: s.unparsed.Load(), Errors: s.errs.Load(),
		Refused: s.refused.Load(), Busy: s.busy.Load(), Idle: s.idleN.Load(), BadTime: s.badTime.Load(), NotHost: s.notHost.Load()}
}

// ErrServerClosed is what Serve returns once stopped, by Shutdown or by
// its context.
var ErrServerClosed = errors.New("dnstap: server closed")

// Serve accepts streams until ctx ends or Shutdown is called, then closes
// them (what each sent is recorded first) and returns ErrServerClosed.
func (s *Server) Serve(ctx context.Context) error {
	ctx, end, err := s.gate.Begin(ctx, ErrServerClosed)
	if err != nil {
		return err
	}
	defer end()
	stop := context.AfterFunc(ctx, func() {
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	defer stop()
	for {
		var c net.Conn
		c, err = s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			break
		}
		if s.allow != nil {
			if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err != nil || !allowed(s.allow, ap.Addr()) {
				// Not a resolver the operator named: nothing is read.
				s.refused.Add(1)
				c.Close()
				continue
			}
		}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			break
		}
		if len(s.conns) >= s.maxConns {
			s.mu.Unlock()
			s.busy.Add(1)
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.stream(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
	s.wg.Wait()
	if ctx.Err() != nil {
		return ErrServerClosed
	}
	return fmt.Errorf("dnstap: %w", err)
}

// Shutdown stops Serve and waits for it to return, or for ctx. Before
// Serve it closes the listener (removing a unix socket).
func (s *Server) Shutdown(ctx context.Context) error {
	serving, err := s.gate.Shutdown(ctx)
	if !serving {
		s.ln.Close()
	}
	return err
}

// stream runs one resolver's connection: the bidirectional handshake
// (READY, ACCEPT, START), data frames until STOP, then FINISH. Every frame
// read is handled before the next is read, so what a resolver sent before
// it stopped or went away is all recorded.
func (s *Server) stream(c net.Conn) {
	peer := s.label
	if a := c.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		peer = c.RemoteAddr().Network() + ":" + a.String()
	}
	fail := func(what string, err error) {
		s.errs.Add(1)
		s.log.Error().Str("event", "dnstap_error").Str("peer", peer).Str("error", fmt.Sprintf("%s: %v", what, err)).
			Msg("dnstap stream closed")
	}
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriter(c)
	c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	var cf framestream.ControlFrame
	if err := cf.DecodeTypeEscape(r, framestream.CONTROL_READY); err != nil {
		fail("handshake READY", err)
		return
	}
	if !cf.MatchContentType(ContentType) {
		fail("handshake READY", framestream.ErrContentTypeMismatch)
		return
	}
	accept := framestream.ControlAccept
	accept.SetContentType(ContentType)
	if err := accept.EncodeFlush(w); err != nil {
		fail("handshake ACCEPT", err)
		return
	}
	if err := cf.DecodeTypeEscape(r, framestream.CONTROL_START); err != nil {
		fail("handshake START", err)
		return
	}
	s.conns_.Add(1)
	s.active.Add(1)
	defer s.active.Add(-1)
	in := &ingest{s: s, resolver: peer, queryKey: peerKey(c, peer)}
	buf := make([]byte, 64<<10)
	var hdr [4]byte
	var deadlineAt time.Time
	for {
		// The idle deadline moves on with the frames, at most once a
		// second: setting it costs a timer update.
		if now := time.Now(); now.Sub(deadlineAt) > time.Second {
			c.SetReadDeadline(now.Add(s.idle))
			deadlineAt = now
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.idleN.Add(1)
				s.log.Info().Str("event", "dnstap_idle").Str("peer", peer).Msg("dnstap stream closed: idle")
				return
			}
			if !errors.Is(err, net.ErrClosed) {
				// A resolver that goes away without STOP (killed, restarted)
				// has had every complete frame it sent handled.
				s.log.Info().Str("event", "dnstap_closed").Str("peer", peer).Str("error", err.Error()).Msg("dnstap stream ended without STOP")
			}
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			if err := cf.Decode(r); err != nil {
				fail("control frame", err)
				return
			}
			if cf.ControlType != framestream.CONTROL_STOP {
				fail("control frame", fmt.Errorf("type %d in a data stream", cf.ControlType))
				return
			}
			finish := framestream.ControlFinish
			finish.EncodeFlush(w)
			return
		}
		if n > MaxFrame {
			fail("data frame", fmt.Errorf("%d bytes, more than %d", n, MaxFrame))
			return
		}
		if int(n) > len(buf) {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			fail("data frame", err)
			return
		}
		s.frames.Add(1)
		if err := in.handle(buf[:n]); err != nil {
			fail("data frame", err)
			return
		}
	}
}

// peerKey is what identifies a stream's resolver across its
// reconnections: its address without the port on tcp:, the socket on
// unix:.
func peerKey(c net.Conn, peer string) string {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return "tcp:" + ap.Addr().Unmap().String()
	}
	return peer
}

// ingest is the per-stream state of frame handling.
type ingest struct {
	s        *Server
	resolver string // the stream's socket, when frames carry no identity
	queryKey string // the resolver across reconnections (see peerKey)
	sawQuery bool
	// checked: queriesElsewhere holds whether an earlier stream of this
	// resolver logged client queries.
	checked, queriesElsewhere bool
	f                         frame
	name                      [256]byte
}

// handle turns one dnstap frame into evidence when it is a client lookup of
// a listed name. An unlisted name costs a decode and a lookup, nothing more.
func (in *ingest) handle(b []byte) error {
	s := in.s
	f := &in.f
	if err := decodeFrame(b, f); err != nil {
		return err
	}
	msg := f.queryMsg
	switch f.msgType {
	case typeClientQuery:
		if !in.sawQuery {
			in.sawQuery = true
			k := string(f.identity) + "\x00" + in.queryKey
			s.mu.Lock()
			if s.queries == nil || len(s.queries) >= maxQueryKeys {
				// A flood of identities: forget them rather than grow.
				s.queries = make(map[string]struct{})
			}
			s.queries[k] = struct{}{}
			s.mu.Unlock()
		}
	case typeClientResponse:
		// Count responses only from resolvers that do not log queries.
		if in.sawQuery {
			s.skipped.Add(1)
			return nil
		}
		if !in.checked {
			// A resolver that logs queries and reconnected may send the
			// responses to queries counted on its previous stream first.
			s.mu.Lock()
			_, in.queriesElsewhere = s.queries[string(f.identity)+"\x00"+in.queryKey]
			s.mu.Unlock()
			in.checked = true
		}
		if in.queriesElsewhere {
			s.skipped.Add(1)
			return nil
		}
		if msg == nil {
			msg = f.respMsg
		}
	default:
		s.skipped.Add(1)
		return nil
	}
	name, qtype, ok := question(msg, &in.name)
	if !ok {
		s.unparsed.Add(1)
		return nil
	}
	if len(name) == 0 {
		return nil
	}
	set := s.src.Current()
	// MatchName keeps nothing of the name it is given, so the buffer is
	// lent to it as a string without a copy.
	m, listed := set.MatchName(unsafe.String(&name[0], len(name)))
	if !listed {
		return nil
	}
	host, ok := netip.AddrFromSlice(f.queryAddr)
	if !ok {
		s.unparsed.Add(1)
		return nil
	}
	if !evidence.IsHost(host) {
		s.notHost.Add(1)
		return nil
	}
	now := s.now().UTC()
	ev := evidence.Event{
		Time: now, Kind: evidence.DNSLookup, Host: host.Unmap(), Port: uint16(f.queryPort),
		Sig: m.Signature.ID, Family: m.Signature.Family, Evidence: m.Domain.Evidence, Serial: set.Serial(),
		QName: string(name), QType: dns.Type(qtype).String(), Resolver: in.resolver,
	}
	if f.timeSec != 0 {
		// The frame's own time, unless it is absurd: a resolver's clock a
		// few seconds off is normal, a line dated 2000 or 9999 is not
		// evidence of anything.
		if t, ok := frameTime(f.timeSec, f.timeNsec, now); ok {
			ev.Time = t
		} else {
			s.badTime.Add(1)
		}
	}
	if f.protocol < uint64(len(transports)) {
		ev.Transport = transports[f.protocol]
	}
	// The proof, as the resolver saw the client: a query over TCP (plain,
	// TLS, HTTPS, DNSCrypt) came after a completed handshake with that
	// address; over QUIC after the handshake's address validation.
	switch ev.Transport {
	case "tcp", "dot", "doh", "dnscrypt-tcp":
		ev.Proof = evidence.ProofTCP
	case "doq":
		ev.Proof = evidence.ProofExchange
	}
	if p := m.Domain.Pattern(); p != ev.QName {
		ev.Rule = p
	}
	if len(f.identity) > 0 {
		ev.Resolver = string(f.identity)
	}
	s.rec.Record(ev)
	s.lookups.Add(1)
	return nil
}

// frameTime is a frame's time if it lies within MaxClockSkew of now.
func frameTime(sec uint64, nsec uint32, now time.Time) (time.Time, bool) {
	lo, hi := now.Add(-MaxClockSkew).Unix(), now.Add(MaxClockSkew).Unix()
	if sec > math.MaxInt64 || int64(sec) < lo || int64(sec) > hi || nsec >= 1e9 {
		return time.Time{}, false
	}
	t := time.Unix(int64(sec), int64(nsec)).UTC()
	if t.Before(now.Add(-MaxClockSkew)) || t.After(now.Add(MaxClockSkew)) {
		return time.Time{}, false
	}
	return t, true
}
