package sinkhole

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"wormsink/evidence"
)

// Defaults for Config's exchange knobs.
const (
	DefaultExchanges    = 128
	DefaultExchangeWait = time.Second
)

// exchanges sends refusals from a fresh port and waits a moment for the
// client's follow-up there. RFC 1350 has every server reply come from a
// new port (the server's transfer identifier); a client that really sent
// the request learns that port from the refusal, and a BSD-lineage client
// (tftp-hpa) acknowledges the ERROR to it. A forger never sees the refusal,
// so a datagram from the requester's address and port to that port is
// proof the address is real: the sighting's proof becomes "exchange".
//
// Nothing is ever served: the refusal is the same ERROR, no larger than the
// request, and whatever arrives on the fresh port is only looked at (who
// sent it), never answered. The sockets are bounded (max at once, each
// open for wait at most); when they are all in use the refusal goes out
// from the main socket as before and the sighting stays a datagram.
type exchanges struct {
	max  int
	wait time.Duration
	s    *Server

	mu     sync.Mutex
	open   map[*net.UDPConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newExchanges(s *Server) *exchanges {
	return &exchanges{max: s.cfg.Exchanges, wait: s.cfg.ExchangeWait, s: s, open: make(map[*net.UDPConn]struct{})}
}

// send tries to send the refusal out from a fresh port bound to local and
// to hold the sighting ev until the follow-up or the deadline. It reports
// false when it could not (no socket to spare, the server stopping, a
// socket error): the caller then sends from the main socket and records ev
// as it is.
func (x *exchanges) send(out []byte, local netip.Addr, to netip.AddrPort, ev evidence.Event) bool {
	if x.max <= 0 {
		return false
	}
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	network := "udp4"
	if to.Addr().Is6() {
		network = "udp6"
	}
	laddr := &net.UDPAddr{}
	if l := local.Unmap(); l.IsValid() && !l.IsUnspecified() && l.Is4() == to.Addr().Is4() {
		laddr.IP = l.AsSlice()
		laddr.Zone = l.Zone()
	}
	x.mu.Lock()
	if x.closed || len(x.open) >= x.max {
		x.mu.Unlock()
		x.s.c.exchangeBusy.Add(1)
		return false
	}
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		x.mu.Unlock()
		x.s.c.errors.Add(1)
		return false
	}
	x.open[c] = struct{}{}
	x.wg.Add(1)
	x.mu.Unlock()

	deadline := time.Now().Add(x.wait)
	_ = c.SetReadDeadline(deadline)
	// Counted before it leaves: a client that has the reply must find it
	// counted.
	x.s.c.replies.Add(1)
	if _, err := c.WriteToUDPAddrPort(out, to); err != nil {
		x.s.c.replies.Add(^uint64(0))
		x.done(c)
		x.s.c.errors.Add(1)
		return false
	}
	go x.await(c, to, ev)
	return true
}

// await waits on c for a datagram from the requester's address and port,
// then records ev with the proof earned. Datagrams from anyone else are
// ignored (counted as stray): they prove nothing about the requester.
func (x *exchanges) await(c *net.UDPConn, from netip.AddrPort, ev evidence.Event) {
	defer x.done(c)
	var buf [600]byte
	for {
		_, a, err := c.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			break // the deadline, or Shutdown closed the socket
		}
		if netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) == from {
			x.s.c.exchanged.Add(1)
			ev.Proof = max(ev.Proof, evidence.ProofExchange)
			break
		}
		x.s.c.stray.Add(1)
	}
	x.s.emit(ev)
}

func (x *exchanges) done(c *net.UDPConn) {
	c.Close()
	x.mu.Lock()
	delete(x.open, c)
	x.mu.Unlock()
	x.wg.Done()
}

// close stops waiting: every open socket is closed, so the sightings held
// are recorded (as datagrams) before close returns.
func (x *exchanges) close() {
	x.mu.Lock()
	x.closed = true
	for c := range x.open {
		_ = c.SetReadDeadline(time.Now())
	}
	x.mu.Unlock()
	x.wg.Wait()
}
