package sinkhole

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"wormsink/evidence"
	"wormsink/internal/pktinfo"
	"wormsink/internal/tftp"
)

// guard is the fake server's read loop on its socket: each datagram is
// parsed, recorded and refused (or not, over the limits) right there, with
// the request path the interceptor shares (refuse.go). Nothing else ever
// leaves the socket: one ERROR per request at most, no larger than it.
//
// One goroutine reads, so the limits and the intern table need no lock.
type guard struct {
	s     *Server
	conn  *net.UDPConn
	local netip.AddrPort // the socket's address
	pkt   bool           // per-packet local addresses (IP_PKTINFO) are on
	v6    bool           // the socket is AF_INET6 (dual-stack when wildcard)

	start  time.Time
	limits limits
	names  *interner
	ex     *exchanges

	buf [tftp.MaxRequest + 1]byte // one more than a request may be, to see oversize datagrams
	oob [128]byte
	out [tftp.MaxRequest]byte

	closing  atomic.Bool
	done     chan struct{} // closed when run returns
	failed   chan struct{} // closed when the socket failed
	failErr  error
	failOnce sync.Once
}

func newGuard(s *Server, conn *net.UDPConn) *guard {
	g := &guard{
		s:      s,
		conn:   conn,
		start:  time.Now(),
		limits: newLimits(s.cfg),
		names:  newInterner(),
		done:   make(chan struct{}),
		failed: make(chan struct{}),
		ex:     newExchanges(s),
	}
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		g.local = ua.AddrPort()
		g.local = netip.AddrPortFrom(g.local.Addr().Unmap(), g.local.Port())
	}
	if a := g.local.Addr(); a.IsValid() && !a.IsUnspecified() {
		g.ex.bind = a
	}
	if g.local.Addr().IsUnspecified() {
		// A wildcard socket: learn which address each request was sent to,
		// for the evidence and as the source of the reply.
		g.pkt, g.v6 = pktinfo.Enable(conn)
	}
	return g
}

// run reads and answers until close or a socket failure.
func (g *guard) run() {
	defer close(g.done)
	c := &g.s.c
	for !g.closing.Load() {
		n, oobn, _, from, err := g.conn.ReadMsgUDPAddrPort(g.buf[:], g.oob[:])
		if err != nil {
			if g.closing.Load() {
				return
			}
			c.errors.Add(1)
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				g.fail(err)
				return
			}
			continue
		}
		local := g.local.Addr()
		if g.pkt {
			if a, ok := pktinfo.Dst(g.oob[:oobn]); ok {
				local = a
			}
		}
		g.handle(g.buf[:n], from, local, time.Since(g.start).Nanoseconds())
	}
}

// handle decides one datagram from from, sent to local: it records every
// well-formed request and refuses those within the limits. A request
// refused from a fresh port is recorded when its wait ends (exchanges), so
// the follow-up can still raise its proof. It never panics.
func (g *guard) handle(p []byte, from netip.AddrPort, local netip.Addr, now int64) {
	c := &g.s.c
	req, ok := c.parse(p)
	if !ok {
		return
	}
	host := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	ev := requestEvent(&req, host, netip.AddrPortFrom(local.Unmap(), g.local.Port()), g.names)
	g.classify(&req, &ev)
	if !g.limits.allow(host.Addr(), now, &c.tally) {
		g.s.emit(ev)
		return
	}
	out, cut := appendRefusal(g.out[:0], len(p))
	if cut {
		c.truncated.Add(1)
	}
	// Rounds only for a read request without options: a probe is a DATA
	// packet, which a client that asked for options (curl, BusyBox) did
	// not expect before their acknowledgement, and curl takes an empty
	// DATA block 0 for the end of an empty file. What no round can prove
	// stays a datagram, so a forger gains nothing by adding options.
	if req.Op == tftp.OpRRQ && !req.HasOptions() && g.ex.send(out, len(p), local, from, ev) {
		return
	}
	defer g.s.emit(ev)
	var oob []byte
	var space [64]byte
	if g.pkt {
		oob = pktinfo.Append(space[:0], local, g.v6)
	}
	// Counted before it leaves, as in exchanges.send.
	c.replies.Add(1)
	if _, _, err := g.conn.WriteMsgUDPAddrPort(out, oob, from); err != nil {
		c.replies.Add(^uint64(0))
		c.errors.Add(1)
	}
}

// classify matches the request against the signatures and counts it. A
// panic in the signature set is counted and the request still refused and
// recorded, as a request for an unknown file.
func (g *guard) classify(req *tftp.Request, ev *evidence.Event) {
	defer g.s.recoverPanic()
	match(g.s.sigs.Current(), ev, req.File)
	c := &g.s.c
	switch {
	case req.Op == tftp.OpWRQ:
		c.writes.Add(1)
	case ev.Kind == evidence.TFTPRefused:
		c.refused.Add(1)
	default:
		c.unknown.Add(1)
	}
}

// close makes the loop stop: the read it is blocked in fails at once.
func (g *guard) close() {
	g.closing.Store(true)
	_ = g.conn.SetReadDeadline(time.Now())
}

// drain records the sightings still waiting on a fresh port, once the
// loop has stopped.
func (g *guard) drain() { g.ex.close() }

func (g *guard) fail(err error) {
	g.failOnce.Do(func() {
		g.failErr = err
		g.closing.Store(true)
		close(g.failed)
	})
}

func (g *guard) failure() error { return g.failErr }
