// Package dnsblock is the DNS shim: it answers listed names with the sinkhole
// policy, recording evidence, and forwards all other queries to the resolvers.
package dnsblock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"wormsink/evidence"
	"wormsink/internal/dnsaddr"
	"wormsink/signatures"

	"github.com/rs/zerolog"
)

// ErrServerClosed is what Serve returns once stopped, by Shutdown or by
// its context.
var ErrServerClosed = errors.New("dnsblock: server closed")

// Server is the DNS shim on one UDP and one TCP socket.
type Server struct {
	cfg Config
	h   *handler
	log zerolog.Logger

	udp   *net.UDPConn
	tcp   *net.TCPListener
	pkt   bool // the UDP socket is bound to a wildcard: answer from the address asked
	ready chan struct{}
	done  chan struct{}

	wg     sync.WaitGroup // every serving goroutine
	conns  tcpConns
	closed atomic.Bool
	// waiting is set while one UDP reader sleeps in its coalescing wait:
	// the sleep holds the reader's P, and one at a time leaves the others
	// (with GOMAXPROCS > 1) to the netpoller, forwards and TCP.
	waiting atomic.Bool
	// pollers counts the goroutines that wait in the netpoller for
	// something other than the UDP socket: forwards (their upstream's
	// answer) and TCP connections. With one P they run only when a reader
	// yields or parks, and a reader that keeps finding queries after each
	// coalescing wait never parks; the Go scheduler polls the network on
	// its own only every 10 ms (sysmon). While pollers > 0 such a reader
	// therefore parks at least every pollEvery (serveUDPBatch).
	pollers atomic.Int32
	onePoll bool // GOMAXPROCS is 1: the readers' P is the only one
	started atomic.Bool
	life    sync.Mutex // orders Serve's start against Shutdown
}

// New checks cfg, binds the UDP and TCP sockets and opens the upstream
// sockets, so that a process can bind port 53 with privileges and drop
// them before it parses a single packet; Serve answers. With port 0, both
// sockets get the same port. src is asked for the signature set on every
// query, rec receives the evidence of every policy answer, log gets
// service lines (start, errors).
func New(cfg Config, src signatures.Source, rec evidence.Recorder, log zerolog.Logger) (*Server, error) {
	s, err := newServer(cfg, src, rec, log)
	if err != nil {
		return nil, err
	}
	for _, addr := range s.cfg.Upstreams {
		u, err := newUpstream(addr, s.cfg.UpstreamTCPConns, s.cfg.UpstreamTCPIdle, &s.h.stats.upStrays)
		if err != nil {
			s.closeUpstreams()
			return nil, err
		}
		s.h.ups = append(s.h.ups, u)
	}
	if err := s.listen(); err != nil {
		s.closeUpstreams()
		return nil, err
	}
	return s, nil
}

// newServer is New without sockets: the handler alone.
func newServer(cfg Config, src signatures.Source, rec evidence.Recorder, log zerolog.Logger) (*Server, error) {
	cfg.setDefaults()
	if src == nil {
		return nil, errors.New("no signature source")
	}
	if len(cfg.Upstreams) == 0 {
		return nil, ErrNoUpstream
	}
	ups := make([]string, len(cfg.Upstreams))
	for i, u := range cfg.Upstreams {
		n, err := dnsaddr.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("upstream %w", err)
		}
		ups[i] = n.String()
	}
	cfg.Upstreams = ups
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ttl := uint32(cfg.TTL / time.Second)
	h := &handler{
		src:   src,
		rec:   rec,
		allow: cfg.Allow,
		v4:    newRRSet(cfg.SinkholeIPs, false, ttl),
		v6:    newRRSet(cfg.SinkholeIPs, true, ttl),
		gv4:   newRRSet(cfg.NoticeIPs, false, uint32(cfg.GardenTTL/time.Second)),
		gv6:   newRRSet(cfg.NoticeIPs, true, uint32(cfg.GardenTTL/time.Second)),
		soa:   newPolicySOA(ttl),
		cache: newCache(cfg.CacheSize, cfg.CacheBytes, cfg.MaxCacheTTL, cfg.MaxNegativeTTL),
		lim:   newLimiter(cfg.MaxInflight, cfg.MaxInflightPerClient, cfg.MaxInflightBytes, cfg.MaxInflightBytesPerClient, cfg.JostleTimeout),
		cfg:   cfg,
		log:   log,

		cookies: newCookieJar(),
	}
	if h.v4.n == 0 && h.v6.n == 0 {
		return nil, ErrNoSinkholeIP
	}
	if cfg.Garden != nil && h.gv4.n == 0 && h.gv6.n == 0 {
		return nil, ErrNoNoticeIP
	}
	return &Server{
		cfg:   cfg,
		h:     h,
		log:   log,
		ready: make(chan struct{}),
		done:  make(chan struct{}),
		conns: tcpConns{max: cfg.MaxTCPConns, per: cfg.MaxTCPPerClient, all: make(map[*tcpConn]struct{}), by: make(map[netip.Addr]int)},
	}, nil
}

// Serve answers queries until ctx ends (it then shuts down, giving
// queries in progress up to Config.Timeout) or Shutdown is called, and
// returns ErrServerClosed. Ready is closed once it answers.
func (s *Server) Serve(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("dnsblock: Serve called twice")
	}
	s.life.Lock()
	if s.closed.Load() {
		s.life.Unlock()
		return ErrServerClosed
	}
	// One reader per P: a second reader on the same P took the queries
	// that arrived while the first answered, in batches of two or three,
	// and then parked in the netpoller, so one wake-up's work went out in
	// several sendmmsg calls (perf trace; docs/performance.md).
	readers := runtime.GOMAXPROCS(0)
	s.onePoll = readers == 1
	for range readers {
		s.wg.Add(1)
		go s.serveUDP()
	}
	s.wg.Add(1)
	go s.serveTCP()
	s.life.Unlock()
	close(s.ready)
	s.log.Info().Str("event", "dns_listen").Str("udp", s.UDPAddr().String()).Str("tcp", s.TCPAddr().String()).
		Strs("upstreams", s.cfg.Upstreams).Int("cache_size", s.cfg.CacheSize).Str("allow", prefixList(s.cfg.Allow)).
		Msg("dns shim serving; clients outside allow get REFUSED")
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		s.Shutdown(sctx)
	case <-s.done:
	}
	return ErrServerClosed
}

func (s *Server) listen() error {
	addr := s.cfg.Listen
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	// With port 0 the kernel picks the UDP port, which TCP may find taken:
	// try a few times.
	for attempt := 0; ; attempt++ {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		u, err := net.ListenUDP("udp", ua)
		if err != nil {
			return err // it names the address
		}
		p := u.LocalAddr().(*net.UDPAddr).Port
		t, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(p)))
		if err != nil {
			u.Close()
			if port == "0" && attempt < 10 {
				continue
			}
			return err // it names the address
		}
		s.udp, s.tcp = u, t.(*net.TCPListener)
		break
	}
	if s.cfg.ReadBuffer > 0 {
		// Best effort: a smaller buffer only means drops sooner.
		_ = s.udp.SetReadBuffer(s.cfg.ReadBuffer)
	}
	if ip := s.udp.LocalAddr().(*net.UDPAddr).IP; ip == nil || ip.IsUnspecified() {
		s.pkt = enablePktInfo(s.udp) == nil
	}
	return nil
}

// Ready is closed once the shim answers queries (Serve has started).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// UDPAddr is the bound UDP address.
func (s *Server) UDPAddr() netip.AddrPort {
	if s.udp == nil {
		return netip.AddrPort{}
	}
	return s.udp.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TCPAddr is the bound TCP address.
func (s *Server) TCPAddr() netip.AddrPort {
	if s.tcp == nil {
		return netip.AddrPort{}
	}
	return s.tcp.Addr().(*net.TCPAddr).AddrPort()
}

// Stats returns the counters.
func (s *Server) Stats() Stats { return s.h.stats.snapshot() }

// CacheLen is the number of cached answers.
func (s *Server) CacheLen() int {
	if s.h.cache == nil {
		return 0
	}
	return s.h.cache.len()
}

// Shutdown closes the listeners, lets queries in progress finish until ctx
// ends, then closes client connections and upstream sockets. Before Serve
// it releases what New bound.
func (s *Server) Shutdown(ctx context.Context) error {
	s.life.Lock()
	first := s.closed.CompareAndSwap(false, true)
	s.life.Unlock()
	if !first {
		return nil
	}
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
	// Idle TCP clients would hold Shutdown until their idle timeout.
	s.conns.each(func(t *tcpConn) { t.c.SetReadDeadline(time.Now()) })
	wait := make(chan struct{})
	go func() { s.wg.Wait(); close(wait) }()
	var err error
	select {
	case <-wait:
	case <-ctx.Done():
		err = ctx.Err()
		s.conns.each(func(t *tcpConn) { t.c.Close() })
	}
	s.closeUpstreams()
	close(s.done)
	return err
}

func (s *Server) closeUpstreams() {
	for _, u := range s.h.ups {
		u.close()
	}
}

// serveUDP is one reader of the UDP socket. Everything that needs no
// upstream is answered here, synchronously and without allocation; a
// forwarded query gets a goroutine of its own so one slow upstream answer
// never holds up the socket.
func (s *Server) serveUDP() {
	defer s.wg.Done()
	if b := newUDPBatch(s.udp); b != nil {
		s.serveUDPBatch(b)
		return
	}
	buf := make([]byte, 65535)
	oob := make([]byte, oobSize)
	var reply []byte
	sc := newScratch()
	for {
		n, oobn, _, from, err := s.udp.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		msg := buf[:n]
		if s.pkt {
			reply = replyOOB(reply[:0], oob[:oobn])
		}
		resp, fwd := s.h.answer(sc, msg, from, false)
		if fwd {
			s.startForward(msg, from, reply, sc.q.udpLimit())
			continue
		}
		if resp != nil {
			s.udp.WriteMsgUDPAddrPort(resp, reply, from)
		}
	}
}

// startForward hands a query to the upstreams on its own goroutine, or
// drops it (counted) when the limiter has no slot or no bytes for it. msg
// and reply are copied: the read buffers are reused at once. answer is the
// largest answer the client takes, which the upstream's answer is read into.
func (s *Server) startForward(msg []byte, from netip.AddrPort, reply []byte, answer int) {
	t, ok := s.admit(from, len(msg)+len(reply)+answer+forwardOverhead)
	if !ok {
		s.h.stats.dropped.Add(1)
		return
	}
	s.wg.Add(1)
	s.pollers.Add(1)
	go s.forwardUDP(t, append([]byte(nil), msg...), from, append([]byte(nil), reply...))
}

// pollEvery is how long a reader that is the only one (GOMAXPROCS 1) goes
// on coalescing without parking while forwards or TCP connections wait in
// the netpoller: their answers wait at most about this long for the P,
// instead of the 10 ms after which the runtime polls the network itself.
const pollEvery = time.Millisecond

// forwardOverhead is what a forward holds besides its messages: its
// goroutine's stack and its scratch.
const forwardOverhead = 16 << 10

// tcpForwardBytes is what a forward over TCP may hold: the query, its framed
// copy for the upstream, and an answer as large as TCP allows, held until
// the client has taken it.
func tcpForwardBytes(query int) int { return 2*query + 2 + 2 + maxMessage + forwardOverhead }

// maxMessage is the largest DNS message over TCP.
const maxMessage = 65535

// admit asks the limiter for a forward slot for a client, holding size bytes.
func (s *Server) admit(from netip.AddrPort, size int) (*ticket, bool) {
	t, why := s.h.lim.acquire(from.Addr(), time.Now(), size)
	switch why {
	case clientShare:
		s.h.stats.clientLimited.Add(1)
	case overBudget:
		s.h.stats.budgetLimited.Add(1)
	}
	return t, t != nil
}

// serveUDPBatch is serveUDP reading and writing many packets per system call.
//
// At an ordinary rate each read finds one query or two, and what the shim
// pays per query is then mostly per wake-up: the netpoller, an empty
// recvmmsg, a sendmmsg for one answer. After a batch that did not fill its
// vector (the socket is empty now) the reader
// therefore waits Config.Coalesce (its answers already sent) and reads
// again without parking, so that one system call each way serves what
// arrived meanwhile, as a network card's interrupt moderation does. Only
// after a full batch (more is waiting) does it read at once, so a rate the
// waits cannot keep up with fills the batches and is read without waiting;
// an empty socket parks it in the netpoller as before.
func (s *Server) serveUDPBatch(b *udpBatch) {
	var reply []byte
	sc := newScratch()
	var parked time.Time // when the reader last waited in the netpoller, while pollers > 0
	for {
		n, err := b.read()
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		poll := false // skip the coalescing wait: read again, so that an empty socket parks the reader
		if s.onePoll && s.pollers.Load() > 0 {
			now := time.Now()
			if b.parked || parked.IsZero() {
				parked = now
			}
			poll = now.Sub(parked) >= pollEvery
		} else {
			parked = time.Time{}
		}
		if s.h.cache != nil {
			sc.now, sc.batch = s.h.cache.now(), true
		}
		for i := range n {
			msg, from, oob, ok := b.packet(i)
			if !ok {
				s.h.stats.dropped.Add(1)
				continue
			}
			reply = reply[:0]
			if s.pkt {
				reply = replyOOB(reply, oob)
			}
			sc.out = b.slot()
			resp, fwd := s.h.answer(sc, msg, from, false)
			if fwd {
				s.startForward(msg, from, reply, sc.q.udpLimit())
				continue
			}
			if resp != nil {
				b.queue(i, resp, reply)
			}
		}
		b.flush()
		if s.cfg.Coalesce > 0 && n < coalesceBelow && !poll && s.waiting.CompareAndSwap(false, true) {
			// Let what is runnable on this P (a forward's answer, TCP) go
			// first: while the rate keeps the socket from going empty the
			// reader never parks, so this is where they get the P.
			runtime.Gosched()
			b.wait(s.cfg.Coalesce)
			s.waiting.Store(false)
		}
	}
}

func (s *Server) forwardUDP(t *ticket, msg []byte, from netip.AddrPort, oob []byte) {
	defer s.wg.Done()
	defer s.pollers.Add(-1)
	defer s.h.lim.release(t)
	sc := getScratch()
	defer putScratch(sc)
	// The parsed query points into the reader's buffer: parse the copy again.
	if err := parseQuery(msg, &sc.q, sc.name[:]); err != nil {
		return
	}
	if resp := s.h.forward(t.ctx, sc, msg, from, false); resp != nil {
		s.udp.WriteMsgUDPAddrPort(resp, oob, from)
	}
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: back off instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		if !s.h.allowed(from.Addr()) {
			// Outsiders get no connection to hold: closed at once, with
			// a reset rather than a FIN so no state lingers here.
			s.h.stats.refused.Add(1)
			s.h.stats.tcpRejected.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			continue
		}
		t := &tcpConn{c: c, from: from, idle: s.cfg.TCPIdle}
		t.touch()
		evicted, ok := s.conns.add(t)
		if evicted != nil {
			s.h.stats.tcpEvicted.Add(1)
			evicted.evict()
		}
		if !ok {
			s.h.stats.dropped.Add(1)
			s.h.stats.tcpRejected.Add(1)
			c.Close()
			continue
		}
		s.wg.Add(1)
		s.pollers.Add(1)
		go s.serveConn(t)
	}
}

// tcpPipeline bounds the forwarded queries of one TCP client in progress;
// past it the connection is not read until one finishes.
const tcpPipeline = 16

func (s *Server) serveConn(t *tcpConn) {
	defer s.wg.Done()
	defer s.pollers.Add(-1)
	c := t.c
	var inner sync.WaitGroup
	sem := make(chan struct{}, tcpPipeline)
	defer func() {
		inner.Wait()
		s.conns.remove(t)
		c.Close()
	}()
	sc := getScratch()
	defer putScratch(sc)
	buf := make([]byte, 0, 1024)
	var l [2]byte
	// The idle timer runs from the last answered query: reading a message
	// slowly does not extend it.
	for !s.closed.Load() && !t.err.Load() {
		c.SetReadDeadline(t.lastActive().Add(s.cfg.TCPIdle))
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		msg := buf[:n]
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		if cap(buf) > smallMessage {
			buf = make([]byte, 0, 1024) // one large query does not keep its buffer for the connection's life
		}
		resp, fwd := s.h.answer(sc, msg, t.from, true)
		if !fwd {
			if resp == nil || resp[3]&0xf == rcodeRefused && !s.h.allowed(t.from.Addr()) {
				return // nothing to say, or not to this client: no reason to keep the connection
			}
			t.touch()
			t.write(resp)
			continue
		}
		sem <- struct{}{}
		// Admitted before the query is copied: past the budget nothing of
		// it is kept, and the client hears SERVFAIL at once.
		tk, ok := s.admit(t.from, tcpForwardBytes(n))
		if !ok {
			<-sem
			s.h.stats.servFail.Add(1)
			t.write(errorAnswer(sc.out, msg, &sc.q, rcodeServFail))
			continue
		}
		t.busy.Add(1)
		inner.Add(1)
		go func(msg []byte) {
			defer inner.Done()
			defer func() { <-sem }()
			defer t.busy.Add(-1)
			// The bytes are held until the answer is written: a client
			// that does not read holds its budget, not more.
			defer s.h.lim.release(tk)
			fs := getScratch()
			defer putScratch(fs)
			if parseQuery(msg, &fs.q, fs.name[:]) != nil {
				return
			}
			resp := s.h.forward(tk.ctx, fs, msg, t.from, true)
			t.touch()
			t.write(resp)
		}(append([]byte(nil), msg...))
	}
}

func prefixList(ps []netip.Prefix) string {
	var b []byte
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = p.AppendTo(b)
	}
	return string(b)
}

// CacheBytes is what the cached answers count against Config.CacheBytes.
func (s *Server) CacheBytes() int {
	if s.h.cache == nil {
		return 0
	}
	return s.h.cache.size()
}

// InflightBytes is what the forwards in progress hold, counted against
// Config.MaxInflightBytes.
func (s *Server) InflightBytes() int { return s.h.lim.inFlightBytes() }

// TCPConns is the number of client TCP connections held.
func (s *Server) TCPConns() int { return s.conns.len() }
