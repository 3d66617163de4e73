package sinkhole

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// guard is the net.PacketConn pin/tftp serves on. Reading, it takes
// datagrams off the real socket and hands pin/tftp only the requests that
// are well-formed and within the rate limits, options stripped; it records
// every well-formed request as evidence, answered or not. Writing, it lets
// through one ERROR per forwarded request, cut to that request's size, and
// nothing else.
//
// pin/tftp's single read loop is the only reader, so the read side (limits,
// intern table) needs no lock; writes come from pin/tftp's handler
// goroutines and share only the pending table.
type guard struct {
	s     *Server
	conn  *net.UDPConn
	local netip.AddrPort // the socket's address
	pkt   bool           // per-packet local addresses (IP_PKTINFO) are on
	v6    bool           // the socket is AF_INET6 (dual-stack when wildcard)

	start   time.Time
	sources *sourceTable
	perSrc  gcra
	total   gcra
	totTAT  int64

	names map[string]string // interned file names and modes

	buf [MaxRequest + 1]byte // one more than a request may be, to see oversize datagrams
	oob [128]byte

	mu      sync.Mutex
	pending map[uint64]*due // by token
	free    []*due          // dues taken, for reuse: a due holds its sighting, too large for a map to store in place without allocating
	next    uint64
	ex      *exchanges

	// sending is held (shared) by every reply on its way out, and taken
	// whole once at the end of Serve: after that no reply leaves, so the
	// stop line's count of replies is every reply a client can receive.
	sending sync.RWMutex
	stopped bool // under sending

	closing  atomic.Bool
	failed   chan struct{} // closed when the socket failed
	failErr  error
	failOnce sync.Once
}

// due is a reply pin/tftp may send: to whom, at most how large, from
// which local address, and since when (so a reply that never comes frees
// its slot).
type due struct {
	to    netip.AddrPort // as the socket reported it (v4-mapped on a dual-stack socket)
	local netip.Addr
	size  int
	at    int64
	ev    evidence.Event // the sighting, recorded once the reply has gone (and its follow-up came or not)
}

// Bounds on replies in flight: pin/tftp answers within microseconds, so
// these are generous.
const (
	maxPending = 4096
	pendingTTL = int64(2 * time.Second)
	maxNames   = 4096
)

func newGuard(s *Server, conn *net.UDPConn) *guard {
	g := &guard{
		s:       s,
		conn:    conn,
		start:   time.Now(),
		sources: newSourceTable(s.cfg.Sources),
		perSrc:  newGCRA(s.cfg.SourceRate, s.cfg.SourceBurst),
		total:   newGCRA(s.cfg.TotalRate, s.cfg.TotalBurst),
		names:   make(map[string]string),
		pending: make(map[uint64]*due),
		failed:  make(chan struct{}),
		ex:      newExchanges(s),
	}
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		g.local = ua.AddrPort()
		g.local = netip.AddrPortFrom(g.local.Addr().Unmap(), g.local.Port())
	}
	if g.local.Addr().IsUnspecified() {
		// A wildcard socket: learn which address each request was sent to,
		// for the evidence and as the source of the reply.
		g.pkt, g.v6 = enablePktinfo(conn)
	}
	return g
}

// errClosing is what reads return once the server is stopping. It is a
// timeout so that pin/tftp's loop treats it as the wake-up it waits for.
var errClosing = &net.OpError{Op: "read", Net: "udp", Err: os.ErrDeadlineExceeded}

// ReadFrom hands pin/tftp the next request that deserves an answer.
func (g *guard) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if g.closing.Load() {
			return 0, nil, errClosing
		}
		n, oobn, _, from, err := g.conn.ReadMsgUDPAddrPort(g.buf[:], g.oob[:])
		if err != nil {
			if g.closing.Load() {
				return 0, nil, errClosing
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, nil, err // pin/tftp set a deadline: let it see it
			}
			g.s.c.errors.Add(1)
			if errors.Is(err, net.ErrClosed) {
				g.fail(err)
				return 0, nil, errClosing
			}
			continue
		}
		local := g.local.Addr()
		if g.pkt {
			if a, ok := parsePktinfo(g.oob[:oobn]); ok {
				local = a
			}
		}
		if tok, ok := g.admit(g.buf[:n], from, local, time.Since(g.start).Nanoseconds()); ok {
			k := stripRequest(b, g.buf[:n])
			return k, net.UDPAddrFromAddrPort(tokenAddr(tok)), nil
		}
	}
}

// admit decides what to do with one datagram: when it deserves a reply, it
// returns the token pin/tftp will know the request by. It records every
// well-formed request: at once when it gets no reply, else once the reply
// has gone (WriteTo), so the follow-up can still raise its proof. It never
// panics.
func (g *guard) admit(p []byte, from netip.AddrPort, local netip.Addr, now int64) (tok uint64, fwd bool) {
	c := &g.s.c
	c.received.Add(1)
	req, err := ParseRequest(p)
	if err != nil {
		if isTFTPReply(p) {
			c.stray.Add(1)
		} else {
			c.malformed.Add(1)
		}
		return 0, false
	}
	host := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	ev := g.classify(&req, host, netip.AddrPortFrom(local.Unmap(), g.local.Port()))

	if !g.perSrc.allow(g.sources.bucket(host.Addr()), now) {
		c.sourceLimited.Add(1)
		g.s.emit(ev)
		return 0, false
	}
	if !g.total.allow(&g.totTAT, now) {
		c.totalLimited.Add(1)
		g.s.emit(ev)
		return 0, false
	}
	tok, ok := g.expect(due{to: from, local: local, size: len(p), at: now, ev: ev})
	if !ok {
		c.busy.Add(1)
		g.s.emit(ev)
	}
	return tok, ok
}

// classify makes the request's evidence and counts it. A panic in the
// signature set is counted and the request still refused and recorded.
func (g *guard) classify(req *Request, host, srv netip.AddrPort) (ev evidence.Event) {
	defer g.s.recoverTo(nil)
	ev = evidence.Event{
		Time:     time.Now(),
		Kind:     evidence.TFTPRequest,
		Host:     host.Addr(),
		Port:     host.Port(),
		Evidence: signatures.Weak,
		File:     g.intern(req.File),
		Mode:     g.intern(req.Mode),
		Op:       req.OpName(),
		Srv:      srv,
	}
	if set := g.s.sigs.Current(); set != nil {
		ev.Serial = set.Serial()
		if m, ok := set.MatchFile(ev.File); ok {
			ev.Kind, ev.Sig, ev.Family, ev.Evidence = evidence.TFTPRefused, m.Signature.ID, m.Signature.Family, signatures.Strong
		}
	}
	c := &g.s.c
	switch {
	case req.Op == OpWRQ:
		c.writes.Add(1)
	case ev.Kind == evidence.TFTPRefused:
		c.refused.Add(1)
	default:
		c.unknown.Add(1)
	}
	return ev
}

// intern returns b as a string, reusing the string of an earlier request:
// worms ask for the same few names, so the evidence costs no allocation.
// The table is bounded; names past it are copied each time.
func (g *guard) intern(b []byte) string {
	if s, ok := g.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(g.names) < maxNames {
		g.names[s] = s
	}
	return s
}

// expect notes that pin/tftp may answer one request, and returns the
// token that stands for it. pin/tftp sees the token as the request's source
// address, so every request is a transfer of its own: in single-port mode
// pin/tftp would hand a second request from a peer it is still answering to
// that transfer's channel, racing the handler that closes it (a send on a
// closed channel, which crashes). And a reply can only answer the request
// whose token it carries, once.
func (g *guard) expect(d due) (uint64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) >= maxPending {
		// Replies that never came (none should) free their slots.
		for k, v := range g.pending {
			if d.at-v.at >= pendingTTL {
				delete(g.pending, k)
				g.s.emit(v.ev)
				g.release(v)
			}
		}
		if len(g.pending) >= maxPending {
			return 0, false
		}
	}
	g.next++
	var p *due
	if n := len(g.free); n > 0 {
		p, g.free = g.free[n-1], g.free[:n-1]
	} else {
		p = new(due)
	}
	*p = d
	g.pending[g.next] = p
	return g.next, true
}

// take removes and returns the reply due for token.
func (g *guard) take(tok uint64) (due, bool) {
	g.mu.Lock()
	p, ok := g.pending[tok]
	var d due
	if ok {
		d = *p
		delete(g.pending, tok)
		g.release(p)
	}
	g.mu.Unlock()
	return d, ok
}

// release puts a due back for reuse; the caller holds g.mu.
func (g *guard) release(p *due) {
	*p = due{}
	g.free = append(g.free, p)
}

// tokenPrefix marks the addresses that stand for tokens: a unique local
// IPv6 prefix, "worms" in ASCII, that no socket ever sees.
var tokenPrefix = [8]byte{0xfd, 'w', 'o', 'r', 'm', 's', 0, 0}

func tokenAddr(tok uint64) netip.AddrPort {
	var b [16]byte
	copy(b[:], tokenPrefix[:])
	binary.BigEndian.PutUint64(b[8:], tok)
	return netip.AddrPortFrom(netip.AddrFrom16(b), 69)
}

func addrToken(ap netip.AddrPort) (uint64, bool) {
	b := ap.Addr().As16()
	if !ap.Addr().Is6() || [8]byte(b[:8]) != tokenPrefix {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[8:]), true
}

// WriteTo sends pin/tftp's reply if it is the one ERROR due for the token addr, cut to
// the size of the request. Anything else is dropped, and reported as sent
// so that pin/tftp does not retry.
func (g *guard) WriteTo(b []byte, addr net.Addr) (int, error) {
	g.sending.RLock()
	defer g.sending.RUnlock()
	ua, ok := addr.(*net.UDPAddr)
	if !ok || g.stopped {
		g.s.c.suppressed.Add(1)
		return len(b), nil
	}
	tok, ok := addrToken(ua.AddrPort())
	var d due
	if ok {
		d, ok = g.take(tok)
	}
	out, fits := fitReply(b, d.size)
	if !ok || !fits {
		g.s.c.suppressed.Add(1)
		if ok {
			g.s.emit(d.ev)
		}
		return len(b), nil
	}
	if len(out) < len(b) {
		g.s.c.truncated.Add(1)
	}
	if g.ex.send(out, d.local, d.to, d.ev) {
		return len(b), nil
	}
	defer g.s.emit(d.ev)
	var oob []byte
	var space [64]byte
	if g.pkt {
		oob = appendPktinfo(space[:0], d.local, g.v6)
	}
	// Counted before it leaves, as in exchanges.send.
	g.s.c.replies.Add(1)
	if _, _, err := g.conn.WriteMsgUDPAddrPort(out, oob, d.to); err != nil {
		g.s.c.replies.Add(^uint64(0))
		g.s.c.errors.Add(1)
	}
	return len(b), nil
}

// quiesce waits for the replies on their way out and lets no more leave.
func (g *guard) quiesce() {
	g.sending.Lock()
	g.stopped = true
	g.sending.Unlock()
}

// fitReply checks that b is an ERROR and cuts its message so the packet is
// at most max bytes, NUL-terminated. b is pin/tftp's per-transfer buffer,
// used once, so it is cut in place.
func fitReply(b []byte, max int) ([]byte, bool) {
	if len(b) < 5 || b[0] != 0 || b[1] != OpError || max < 5 {
		return nil, false
	}
	if len(b) > max {
		b = b[:max]
		b[max-1] = 0
	}
	return b, true
}

// stripRequest copies the request in p to b without its options, so
// pin/tftp can never acknowledge one; a file name too long for b is cut
// (the evidence has the whole name already). p is a well-formed request.
func stripRequest(b, p []byte) int {
	req, _ := ParseRequest(p)
	if len(b) < 4+len(req.Mode)+1 {
		return 0
	}
	file := req.File
	if room := len(b) - 2 - 1 - len(req.Mode) - 1; len(file) > room {
		file = file[:room]
	}
	n := copy(b, p[:2])
	n += copy(b[n:], file)
	b[n] = 0
	n++
	n += copy(b[n:], req.Mode)
	b[n] = 0
	return n + 1
}

// isTFTPReply reports whether p looks like a TFTP packet other than a
// request (DATA, ACK, ERROR, OACK), such as the ACK tftp-hpa sends after
// an ERROR.
func isTFTPReply(p []byte) bool {
	return len(p) >= 4 && p[0] == 0 && p[1] >= OpData && p[1] <= OpOACK
}

// close makes every later read fail and unblocks writes, so pin/tftp's
// loop and handlers finish.
func (g *guard) close() {
	g.closing.Store(true)
	now := time.Now()
	_ = g.conn.SetReadDeadline(now)
	_ = g.conn.SetWriteDeadline(now)
}

// drain records the sightings still held, once pin/tftp has stopped: those
// waiting on a fresh port and those whose reply never went out.
func (g *guard) drain() {
	g.ex.close()
	g.mu.Lock()
	left := g.pending
	g.pending = make(map[uint64]*due)
	g.mu.Unlock()
	for _, d := range left {
		g.s.emit(d.ev)
	}
}

func (g *guard) fail(err error) {
	g.failOnce.Do(func() {
		g.failErr = err
		g.closing.Store(true)
		close(g.failed)
	})
}

func (g *guard) failure() error { return g.failErr }

// Close is pin/tftp's; the Server closes the socket itself, after
// pin/tftp has stopped.
func (g *guard) Close() error {
	g.closing.Store(true)
	return nil
}

func (g *guard) LocalAddr() net.Addr { return g.conn.LocalAddr() }

// SetReadDeadline is how pin/tftp wakes its read loop on Shutdown.
func (g *guard) SetReadDeadline(t time.Time) error {
	if g.closing.Load() {
		return nil
	}
	return g.conn.SetReadDeadline(t)
}

func (g *guard) SetWriteDeadline(t time.Time) error { return nil }

func (g *guard) SetDeadline(t time.Time) error { return g.SetReadDeadline(t) }
