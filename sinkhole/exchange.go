package sinkhole

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"wormsink/evidence"
	"wormsink/internal/tftp"
)

// Defaults for Config's exchange knobs: 64 refusals waiting at once and
// 160 decoys keep the server under 256 file descriptors. A blind guesser's
// chance per alarm is one in decoys+1, so the decoys get most of them; 64
// follow-ups a second is more than tftp-hpa-using worms make.
const (
	DefaultExchanges    = 64
	DefaultExchangeWait = time.Second
	DefaultDecoys       = 160
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
// second or guess one port at a time. So decoys are kept open beside the
// refusals' ports: fresh ports of the same kind (the kernel's picks, on
// every address of the host) that nobody is ever told about. A real client
// only ever answers the port its refusal came from; a datagram on a decoy,
// or on a refusal's port from an address other than that refusal's
// requester, is a guess. Any guess raises the alarm: every exchange whose
// wait overlaps the alarm's hold is withheld (recorded as a datagram and
// counted), whoever it was from, and an alarm raised again right after a
// hold ended doubles the hold (up to a day). A spray always hits decoys; a
// blind guesser reaches a decoy about Decoys times as often as the port
// he wants, and each time costs him a hold. The decision is taken when
// the wait ends, never at the follow-up, so a spray that happens to hit
// the real port first is still caught by the decoys it hits later.
//
// Nothing is ever served: the refusal is the same ERROR, no larger than the
// request, and whatever arrives on the fresh ports is only looked at (who
// sent it), never answered. The sockets are bounded: the decoys, opened
// with the first refusal and kept, and max exchanges at once, each open
// for wait at most; together no more than the file descriptor limit and
// the ephemeral port range allow (see budget). When they are all in use
// the refusal goes out from the main socket as before and the sighting
// stays a datagram.
type exchanges struct {
	max    int
	decoys int
	wait   time.Duration
	hold   time.Duration
	s      *Server
	start  time.Time
	// bind is the listening socket's own address when it has one: every
	// refusal leaves from it, so the decoys stand there too. Invalid for
	// a wildcard socket, whose refusals leave from the address each
	// request was sent to: then the decoys stand on every address.
	bind netip.Addr

	mu     sync.Mutex
	open   map[*exchange]struct{}
	pool   []*net.UDPConn // the decoys, once opened
	pooled bool           // tried to open them
	closed bool
	wg     sync.WaitGroup

	alarmMu   sync.Mutex
	alarmAt   int64 // the last guess, nanoseconds since start; 0 none yet
	alarmHold int64 // the hold it started
}

// exchange is one refusal waiting for its follow-up.
type exchange struct {
	x      *exchanges
	conn   *net.UDPConn
	to     netip.AddrPort // the requester, unmapped
	ev     evidence.Event
	sentAt int64 // nanoseconds since start
	follow bool
}

func newExchanges(s *Server) *exchanges {
	x := &exchanges{
		max: s.cfg.Exchanges, decoys: s.cfg.Decoys, wait: s.cfg.ExchangeWait, hold: s.cfg.GuessHold,
		s: s, start: time.Now(), open: make(map[*exchange]struct{}),
	}
	x.max = budget(x.max, x.decoys)
	return x
}

// budget caps the exchanges so that they and the decoys take at most a
// quarter of the file descriptor limit and an eighth of the ephemeral port
// range: the rest of the process, and every other program on the host,
// keep theirs.
func budget(max, decoys int) int {
	if max <= 0 {
		return max
	}
	if fds, ok := fdLimit(); ok {
		max = min(max, fds/4-decoys)
	}
	if lo, hi, ok := ephemeralRange(); ok {
		max = min(max, (hi-lo+1)/8-decoys)
	}
	return max
}

// openDecoys opens the decoys where a refusal may leave from: the
// listening socket's address, or every address (the wildcard). A decoy on
// the wildcard beside a server bound to one address would also catch what
// this host's other programs are sent (our own refusals to a requester on
// this host among them) and take it for guesses. The caller holds x.mu.
// Without decoys (a socket error) refusals still go out, and only
// datagrams from other addresses on a refusal's port count as guesses.
func (x *exchanges) openDecoys() {
	x.pooled = true
	laddr := &net.UDPAddr{}
	if x.bind.IsValid() {
		laddr.IP, laddr.Zone = x.bind.AsSlice(), x.bind.Zone()
	}
	for range x.decoys {
		c, err := net.ListenUDP("udp", laddr)
		if err != nil {
			x.s.c.errors.Add(1)
			break
		}
		x.pool = append(x.pool, c)
		x.wg.Add(1)
		go x.watch(c)
	}
}

// watch reads a decoy until close: everything on it is a guess.
func (x *exchanges) watch(c *net.UDPConn) {
	defer x.wg.Done()
	var buf [64]byte
	for {
		n, _, err := c.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !guessLike(buf[:n]) {
			x.s.c.stray.Add(1)
			continue
		}
		x.s.c.guesses.Add(1)
		x.guessed()
	}
}

// decoyPorts lists the decoys' addresses.
func (x *exchanges) decoyPorts() []netip.AddrPort {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []netip.AddrPort
	for _, c := range x.pool {
		out = append(out, c.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	return out
}

// send tries to send the refusal out from a fresh port bound to local and
// to hold the sighting ev until the wait ends. It reports false when it
// could not (no socket to spare, the server stopping, a socket error): the
// caller then sends from the main socket and records ev as it is.
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
	if !x.pooled {
		x.openDecoys()
	}
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		x.mu.Unlock()
		x.s.c.errors.Add(1)
		return false
	}
	e := &exchange{x: x, conn: c, to: to, ev: ev}
	x.open[e] = struct{}{}
	x.wg.Add(1)
	x.mu.Unlock()

	_ = c.SetReadDeadline(time.Now().Add(x.wait))
	e.sentAt = x.now()
	// Counted before it leaves: a client that has the reply must find it
	// counted.
	x.s.c.replies.Add(1)
	if _, err := c.WriteToUDPAddrPort(out, to); err != nil {
		x.s.c.replies.Add(^uint64(0))
		x.s.c.errors.Add(1)
		c.Close()
		x.done(e)
		return false
	}
	go e.await()
	return true
}

func (x *exchanges) now() int64 { return time.Since(x.start).Nanoseconds() }

// guessLike reports whether p could be a follow-up: a TFTP packet (the
// ACK tftp-hpa sends, or any other opcode a forger may try). Only such a
// datagram earns exchange on a refusal's port, so only such a datagram
// elsewhere is a try at one; anything else (a late DNS answer to the
// program that held the port before) is ignored, not taken for a guess.
func guessLike(p []byte) bool {
	return len(p) >= 4 && p[0] == 0 && p[1] >= tftp.OpRRQ && p[1] <= tftp.OpOACK
}

// await watches the refusal's port until the wait ends, then decides the
// sighting's proof and records it: exchange when the requester followed
// up and no guess was seen anywhere from the hold before the refusal to
// now.
func (e *exchange) await() {
	x := e.x
	defer x.done(e)
	var buf [600]byte
	for {
		n, a, err := e.conn.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			break // the deadline, or Shutdown ended the wait
		}
		from := netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		switch {
		case !guessLike(buf[:n]):
			// Not TFTP: it cannot be the follow-up, so it is no try at
			// one either (a late answer to whoever held the port before).
			x.s.c.stray.Add(1)
		case from == e.to:
			if !e.follow {
				e.follow = true
				x.s.c.exchanged.Add(1)
			}
		case from.Addr() == e.to.Addr():
			// The requester's address from another port: not the
			// follow-up (it must come from the port the request did), but
			// no guess either: it knew the port.
			x.s.c.stray.Add(1)
		default:
			// Another address on the refusal's port: nobody else was told
			// it, so whoever sent this guessed.
			x.s.c.guesses.Add(1)
			x.guessed()
		}
	}
	e.conn.Close()
	if e.follow {
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

func (x *exchanges) done(e *exchange) {
	x.mu.Lock()
	delete(x.open, e)
	x.mu.Unlock()
	x.wg.Done()
}

// close stops waiting: every refusal's wait ends now, so the sightings
// held are decided and recorded, and the decoys are closed, before close
// returns.
func (x *exchanges) close() {
	x.mu.Lock()
	x.closed = true
	now := time.Now()
	for e := range x.open {
		_ = e.conn.SetReadDeadline(now)
	}
	for _, c := range x.pool {
		c.Close()
	}
	x.mu.Unlock()
	x.wg.Wait()
}
