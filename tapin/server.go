// Package tapin takes the dnstap streams of an ISP's resolvers (Frame
// Streams, as Unbound, BIND and Knot Resolver send them) and turns every
// client lookup of a listed name into a dns_lookup evidence event.
package tapin

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/signatures"
)

// ContentType is the Frame Streams content type of dnstap.
var ContentType = []byte("protobuf:dnstap.Dnstap")

// MaxFrame bounds one data frame. A dnstap message holds at most two DNS
// messages of 64 KB and some addresses.
const MaxFrame = 256 << 10

// Matcher is what ingest needs of the signature store.
type Matcher interface{ Current() *signatures.Set }

// Recorder takes evidence.
type Recorder interface{ Record(evidence.Event) }

// Stats counts what the server did; all counters only grow.
type Stats struct {
	Connections uint64 // streams accepted (handshake done)
	Active      int64  // streams open now
	Frames      uint64 // data frames read
	Lookups     uint64 // listed names recorded as evidence
	Skipped     uint64 // frames of other message types, or a response whose query was already counted
	Unparsed    uint64 // client messages whose question could not be read (a resolver logs what clients send)
	Errors      uint64 // streams closed for a malformed frame or a failed handshake
}

// Server accepts dnstap streams on one listener.
type Server struct {
	ln    net.Listener
	label string // "unix:PATH" or "tcp:ADDR", the resolver when a stream has no identity
	src   Matcher
	rec   Recorder
	log   zerolog.Logger
	now   func() time.Time

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// queries remembers the resolvers that log client queries: their
	// client responses would count the same lookup twice.
	queries sync.Map

	wg                                               sync.WaitGroup
	conns_, frames, lookups, skipped, unparsed, errs atomic.Uint64
	active                                           atomic.Int64
}

// Listen binds spec: "unix:PATH" (a stale socket file is replaced) or
// "tcp:ADDR".
func Listen(spec string, src Matcher, rec Recorder, log zerolog.Logger) (*Server, error) {
	network, addr, ok := strings.Cut(spec, ":")
	if !ok || addr == "" || network != "unix" && network != "tcp" {
		return nil, fmt.Errorf("dnstap: listen %q: want unix:PATH or tcp:ADDR", spec)
	}
	if network == "unix" {
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(addr) // left by a previous run
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
	return &Server{ln: ln, label: network + ":" + ln.Addr().String(), src: src, rec: rec, log: log,
		now: time.Now, conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Connections: s.conns_.Load(), Active: s.active.Load(), Frames: s.frames.Load(), Lookups: s.lookups.Load(),
		Skipped: s.skipped.Load(), Unparsed: s.unparsed.Load(), Errors: s.errs.Load()}
}

// Serve accepts streams until ctx ends, then closes them.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	defer stop()
	var err error
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
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			break
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
		return nil
	}
	return fmt.Errorf("dnstap: %w", err)
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
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
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
	c.SetReadDeadline(time.Time{})
	s.conns_.Add(1)
	s.active.Add(1)
	defer s.active.Add(-1)
	in := &ingest{s: s, resolver: peer}
	buf := make([]byte, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
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

// ingest is the per-stream state of frame handling.
type ingest struct {
	s        *Server
	resolver string // the stream's socket, when frames carry no identity
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
			s.queries.Store(string(f.identity)+"\x00"+in.resolver, true)
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
			_, in.queriesElsewhere = s.queries.Load(string(f.identity) + "\x00" + in.resolver)
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
	ev := evidence.Event{
		Time: s.now().UTC(), Kind: evidence.DNSLookup, Host: host.Unmap(), Port: uint16(f.queryPort),
		Sig: m.Signature.ID, Family: m.Signature.Family, Evidence: m.Domain.Evidence, Serial: set.Serial(),
		QName: string(name), QType: dns.Type(qtype).String(), Resolver: in.resolver,
	}
	if f.timeSec != 0 {
		ev.Time = time.Unix(int64(f.timeSec), int64(f.timeNsec)).UTC()
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

// Close releases the listener of a server that never served.
func (s *Server) Close() { s.ln.Close() }
