package sinkhole

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"wormsink/evidence"
)

// Defaults for Config's exchange knobs. 24 exchanges of 8 sockets each
// keep the server under 256 file descriptors; a tftp-hpa client gets its
// proof within a second, so 24 a second is what can be proven at once, and
// the refusals beyond that leave from the listening port as datagrams.
const (
	DefaultExchanges    = 24
	DefaultExchangeWait = time.Second
	DefaultDecoys       = 7
	DefaultGuessHold    = time.Minute
	// maxGuessHold caps the doubling of the hold under a guessing attack
	// that keeps coming back.
	maxGuessHold = 24 * time.Hour
)

// exchanges sends refusals from a fresh port and waits a moment for the
// client's follow-up there. RFC 1350 has every server reply come from a
// new port (the server's transfer identifier); a client that really sent
// the request learns that port from the refusal, and a BSD-lineage client
// (tftp-hpa) acknowledges the ERROR to it. A forger never sees the
// refusal, so a datagram from the requester's address and port to that
// port shows the address is real: the sighting's proof becomes "exchange".
//
// TFTP carries no nonce: the fresh port is the only secret, about 15 bits
// of the ephemeral range, which a forger can spray in a fraction of a
// second or guess one port at a time. So each refusal's fresh port is
// opened among decoys: more fresh ports of the same kind, opened at the
// same moment, that nobody is ever told about. A real client only ever
// answers the port its refusal came from; a datagram on a decoy, or on a
// refusal's port from an address other than that refusal's requester, is
// a guess. Any guess raises the alarm: every exchange whose wait overlaps
// the alarm's hold is withheld (recorded as a datagram and counted),
// whoever it was from, and an alarm raised again while one is held
// doubles the hold (up to a day). A spray always hits decoys; a blind
// guesser who stops at the first hit wins at most once in Decoys+1 tries
// per hold, so the chances shrink as the holds grow. The decision is
// taken when the wait ends, never at the follow-up, so a spray that
// happens to hit the real port first is still caught by the decoys it hits
// later.
//
// Nothing is ever served: the refusal is the same ERROR, no larger than the
// request, and whatever arrives on the fresh ports is only looked at (who
// sent it), never answered. The sockets are bounded: max exchanges at
// once, each with Decoys+1 sockets open for wait at most, and no more
// than the file descriptor limit and the ephemeral port range allow (see
// budget); when they are all in use the refusal goes out from the main
// socket as before and the sighting stays a datagram.
type exchanges struct {
	max    int
	decoys int
	wait   time.Duration
	hold   time.Duration
	s      *Server
	start  time.Time

	mu     sync.Mutex
	open   map[*exchange]struct{}
	closed bool
	wg     sync.WaitGroup

	alarmMu   sync.Mutex
	alarmAt   int64 // the last guess, nanoseconds since start; 0 none yet
	alarmHold int64 // the hold it started
}

// exchange is one refusal waiting for its follow-up.
type exchange struct {
	x      *exchanges
	conns  []*net.UDPConn // conns[real] is the refusal's, the others decoys
	real   int
	to     netip.AddrPort // the requester, unmapped
	ev     evidence.Event
	sentAt int64 // nanoseconds since start
	follow atomic.Bool
	left   atomic.Int32 // readers still running
}

func newExchanges(s *Server) *exchanges {
	x := &exchanges{
		max: s.cfg.Exchanges, decoys: s.cfg.Decoys, wait: s.cfg.ExchangeWait, hold: s.cfg.GuessHold,
		s: s, start: time.Now(), open: make(map[*exchange]struct{}),
	}
	x.max = budget(x.max, x.decoys)
	return x
}

// budget caps the exchanges so that their sockets (decoys+1 each) take at
// most a quarter of the file descriptor limit and an eighth of the
// ephemeral port range: the rest of the process, and every other program
// on the host, keep theirs.
func budget(max, decoys int) int {
	if max <= 0 {
		return max
	}
	per := decoys + 1
	if fds, ok := fdLimit(); ok {
		max = min(max, fds/4/per)
	}
	if lo, hi, ok := ephemeralRange(); ok {
		max = min(max, (hi-lo+1)/8/per)
	}
	return max
}

// send tries to send the refusal out from a fresh port bound to local, with
// its decoys, and to hold the sighting ev until the wait ends. It reports
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
	e := &exchange{x: x, to: to, ev: ev, conns: make([]*net.UDPConn, 0, x.decoys+1)}
	// All the ports are the kernel's picks, opened together: the real one
	// is told apart from its decoys only by the refusal it sends.
	for range x.decoys + 1 {
		c, err := net.ListenUDP(network, laddr)
		if err != nil {
			break
		}
		e.conns = append(e.conns, c)
	}
	if len(e.conns) < x.decoys+1 {
		x.mu.Unlock()
		for _, c := range e.conns {
			c.Close()
		}
		x.s.c.errors.Add(1)
		return false
	}
	e.real = rand.IntN(len(e.conns))
	x.open[e] = struct{}{}
	x.wg.Add(1)
	x.mu.Unlock()

	deadline := time.Now().Add(x.wait)
	e.sentAt = x.now()
	for _, c := range e.conns {
		_ = c.SetReadDeadline(deadline)
	}
	// Counted before it leaves: a client that has the reply must find it
	// counted.
	x.s.c.replies.Add(1)
	if _, err := e.conns[e.real].WriteToUDPAddrPort(out, to); err != nil {
		x.s.c.replies.Add(^uint64(0))
		x.s.c.errors.Add(1)
		e.closeAll()
		x.done(e)
		return false
	}
	e.left.Store(int32(len(e.conns)))
	for i := range e.conns {
		go e.read(i)
	}
	return true
}

func (x *exchanges) now() int64 { return time.Since(x.start).Nanoseconds() }

// read watches one of the exchange's ports until the wait ends. The last
// reader to stop decides the sighting's proof and records it.
func (e *exchange) read(i int) {
	x := e.x
	c := e.conns[i]
	var buf [600]byte
	for {
		_, a, err := c.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			break // the deadline, or Shutdown ended the wait
		}
		from := netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		switch {
		case i == e.real && from == e.to:
			if !e.follow.Swap(true) {
				x.s.c.exchanged.Add(1)
			}
		case i == e.real && from.Addr() == e.to.Addr():
			// The requester's address from another port: not the
			// follow-up (it must come from the port the request did), but
			// no guess either: it knew the port.
			x.s.c.stray.Add(1)
		default:
			// A decoy, or another address on the refusal's port: nobody
			// was told these ports, so whoever sent it guessed.
			x.s.c.guesses.Add(1)
			x.guessed()
		}
	}
	c.Close()
	if e.left.Add(-1) == 0 {
		e.decide()
	}
}

// decide records the sighting once every port is closed: proof exchange
// when the requester followed up and no guess was seen anywhere from the
// hold before the refusal to now.
func (e *exchange) decide() {
	x := e.x
	defer x.done(e)
	if e.follow.Load() {
		if x.alarmed(e.sentAt) {
			x.s.c.withheld.Add(1)
		} else {
			e.ev.Proof = max(e.ev.Proof, evidence.ProofExchange)
		}
	}
	x.s.emit(e.ev)
}

// guessed raises the alarm: a guess was seen now. Guesses during a hold
// extend it; a guess soon after a hold ended (within another hold) means
// the guesser waited it out, and doubles it; after a quiet while the hold
// starts small again.
func (x *exchanges) guessed() {
	now := x.now()
	x.alarmMu.Lock()
	defer x.alarmMu.Unlock()
	since := now - x.alarmAt
	switch {
	case x.alarmAt != 0 && since < x.alarmHold:
	case x.alarmAt != 0 && since < 2*x.alarmHold:
		x.alarmHold = min(2*x.alarmHold, int64(maxGuessHold))
	default:
		x.alarmHold = int64(x.hold)
	}
	x.alarmAt = now
}

// alarmed reports whether a guess was seen from the hold before sentAt
// until now: a guess that early could have been the forger's first try at
// this refusal's port.
func (x *exchanges) alarmed(sentAt int64) bool {
	x.alarmMu.Lock()
	defer x.alarmMu.Unlock()
	return x.alarmAt != 0 && x.alarmAt >= sentAt-x.alarmHold
}

func (e *exchange) closeAll() {
	for _, c := range e.conns {
		c.Close()
	}
}

func (x *exchanges) done(e *exchange) {
	x.mu.Lock()
	delete(x.open, e)
	x.mu.Unlock()
	x.wg.Done()
}

// close stops waiting: every open socket's wait ends now, so the
// sightings held are decided and recorded before close returns.
func (x *exchanges) close() {
	x.mu.Lock()
	x.closed = true
	now := time.Now()
	for e := range x.open {
		for _, c := range e.conns {
			_ = c.SetReadDeadline(now)
		}
	}
	x.mu.Unlock()
	x.wg.Wait()
}
