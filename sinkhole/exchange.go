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

// Defaults for Config's exchange knobs: 64 requesters in their rounds at
// once (two fresh ports each at most) and 160 decoys keep the server under
// 300 file descriptors; 64 exchanges a second is more than tftp-hpa-using
// worms make. A blind guess is 160 times likelier to land on a decoy (and
// raise the alarm) than on the round's port, so four rounds cost a forger
// 161^4 alarms, about 2^29, and 2^37 datagrams, before any hold.
const (
	DefaultExchanges      = 64
	DefaultExchangeWait   = time.Second
	DefaultExchangeRounds = 4
	DefaultDecoys         = 160
	DefaultGuessHold      = time.Minute
	// maxGuessHold caps the doubling of the hold under a guessing attack
	// that keeps coming back.
	maxGuessHold = 24 * time.Hour
)

// probe is what a round sends: a DATA packet numbered 0, four bytes that
// carry nothing. No transfer has a block 0 (the data starts at block 1),
// so no client can take it for the file. A BSD-lineage client (tftp-hpa)
// takes it for the block before its first, moves to the port it came from
// as it does for every packet it receives, and sends its last packet (the
// request) again, there. Clients that keep to the first port they hear
// from (atftp, BusyBox) answer the first probe only.
var probe = [4]byte{0, tftp.OpData, 0, 0}

// exchanges runs the rounds that prove a requester holds its address.
// RFC 1350 has every server reply come from a new port (the server's
// transfer identifier), and a client that really sent the request learns
// that port from the reply. So a requester is sent a probe from a fresh
// port and given a wait to answer it, from the address and port of its
// request, to that fresh port; each answer earns the next probe from
// another fresh port; after the last round the refusal (the ERROR) goes
// out from the last port, and the sighting's proof is "exchange". A forger
// never sees our packets: for each round he must guess the port, about 15
// bits of the ephemeral range, and send to it before the round's wait ends,
// and he cannot tell a round he won from one he lost. A requester that
// stops answering is refused from the last port it answered (or the first,
// if it never did) when the round's wait ends, and stays a datagram.
//
// Decoys are kept open beside the rounds' ports: fresh ports of the same
// kind (the kernel's picks, on the listening address or every address) that
// nobody is ever told about. A real client only ever answers the port its
// probe came from; a datagram on a decoy, or on a round's port from an
// address other than that round's requester, is a guess. Any guess raises
// the alarm: every exchange whose rounds overlap the alarm's hold is
// withheld (recorded as a datagram and counted), whoever it was from, and
// an alarm raised again right after a hold ended doubles the hold (up to a
// day). A spray always hits decoys; a blind guesser reaches a decoy about
// Decoys times as often as the port he wants. The decision is taken when
// the last round's wait ends, never at the answer, so a spray that happens
// to hit the real port first is still caught by the decoys it hits later.
//
// Nothing is ever served: a probe is four bytes that carry no data, each
// sent only after the requester answered the one before (or for its
// request); the refusal is the same ERROR as from the main socket, cut so
// that the first probe and the refusal together are no larger than the
// request when nothing came back. Whatever arrives on the fresh ports is
// only looked at (who sent it), never answered but by the next probe. The
// sockets are bounded: the decoys, opened with the first request and kept,
// and Exchanges requesters at once, each holding at most two ports (the
// round's and the one it last answered), each round open for the wait at
// most; together no more than the file descriptor limit and the ephemeral
// port range allow (see budget). When they are all in use the refusal goes
// out from the main socket as before and the sighting stays a datagram.
type exchanges struct {
	max    int
	decoys int
	rounds int
	wait   time.Duration
	hold   time.Duration
	s      *Server
	start  time.Time
	// bind is the listening socket's own address when it has one: every
	// refusal leaves from it, so the decoys stand there too. Invalid for
	// a wildcard socket, whose refusals leave from the address each
	// request was sent to: then the decoys stand on every address.
	bind netip.Addr

	socks int // the rounds' ports that may be open at once (budget)

	mu     sync.Mutex
	open   map[*exchange]struct{}
	held   int // the rounds' ports open
	pool   []*net.UDPConn // the decoys, once opened
	pooled bool           // tried to open them
	closed bool
	wg     sync.WaitGroup

	alarmMu   sync.Mutex
	alarmAt   int64 // the last guess, nanoseconds since start; 0 none yet
	alarmHold int64 // the hold it started
}

// exchange is one requester in its rounds.
type exchange struct {
	x       *exchanges
	network string
	laddr   *net.UDPAddr
	to      netip.AddrPort // the requester, unmapped
	ev      evidence.Event
	refusal []byte // the ERROR, cut to the request's size
	reqLen  int
	sentAt  int64 // the first probe, nanoseconds since start

	// conn is the current round's port: x.mu guards the field, since
	// close sets its deadline. last is the round's before it, kept open
	// so that a client that stayed there can be refused from there.
	conn, last *net.UDPConn
	answeredOn *net.UDPConn // the port the requester last answered on
	answered   int          // rounds answered
	refused    bool         // the refusal has left
}

func newExchanges(s *Server) *exchanges {
	x := &exchanges{
		max: s.cfg.Exchanges, decoys: s.cfg.Decoys, rounds: s.cfg.ExchangeRounds, wait: s.cfg.ExchangeWait, hold: s.cfg.GuessHold,
		s: s, start: time.Now(), open: make(map[*exchange]struct{}),
	}
	x.socks = budget(2*x.max, x.decoys)
	x.max = min(x.max, x.socks)
	return x
}

// budget is how many rounds' ports may be open at once, so that they and
// the decoys take at most a quarter of the file descriptor limit and an
// eighth of the ephemeral port range: the rest of the process, and every
// other program on the host, keep theirs. A requester holds one port, two
// while it moves from a round to the next; past the budget the move is
// not made (the requester is refused where it is, and stays a datagram).
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

// send tries to start the rounds for a request of reqLen bytes from to,
// sent to local, holding the sighting ev until they end; refusal is the
// ERROR the request gets at their end (the caller's buffer: it is copied).
// It reports false when it could not (no socket to spare, the server
// stopping, a socket error): the caller then sends the refusal from the
// main socket and records ev as it is.
func (x *exchanges) send(refusal []byte, reqLen int, local netip.Addr, to netip.AddrPort, ev evidence.Event) bool {
	if x.max <= 0 {
		return false
	}
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	e := &exchange{x: x, network: "udp4", laddr: &net.UDPAddr{}, to: to, ev: ev, reqLen: reqLen}
	if to.Addr().Is6() {
		e.network = "udp6"
	}
	if l := local.Unmap(); l.IsValid() && !l.IsUnspecified() && l.Is4() == to.Addr().Is4() {
		e.laddr.IP = l.AsSlice()
		e.laddr.Zone = l.Zone()
	}
	x.mu.Lock()
	if x.closed || len(x.open) >= x.max || x.held >= x.socks {
		x.mu.Unlock()
		x.s.c.exchangeBusy.Add(1)
		return false
	}
	if !x.pooled {
		x.openDecoys()
	}
	c, err := net.ListenUDP(e.network, e.laddr)
	if err != nil {
		x.mu.Unlock()
		x.s.c.errors.Add(1)
		return false
	}
	// The deadline is set under the lock, so that close's cannot be
	// overwritten by it.
	_ = c.SetReadDeadline(time.Now().Add(x.wait))
	e.conn = c
	x.held++
	x.open[e] = struct{}{}
	x.wg.Add(1)
	x.mu.Unlock()

	e.refusal = append([]byte(nil), refusal...)
	e.sentAt = x.now()
	if !e.probe(c) {
		e.closePorts()
		x.done(e)
		return false
	}
	go e.await()
	return true
}

// probe sends the round's probe from c.
func (e *exchange) probe(c *net.UDPConn) bool {
	x := e.x
	// Counted before it leaves: a client that has it must find it counted.
	x.s.c.probes.Add(1)
	if _, err := c.WriteToUDPAddrPort(probe[:], e.to); err != nil {
		x.s.c.probes.Add(^uint64(0))
		x.s.c.errors.Add(1)
		return false
	}
	return true
}

// next opens the next round's port and sends its probe. It reports false
// when it could not (the server stopping, a socket error): the requester
// is then refused from the port it answered.
func (e *exchange) next() bool {
	x := e.x
	x.mu.Lock()
	if e.last != nil {
		e.last.Close()
		e.last = nil
		x.held--
	}
	if x.closed {
		x.mu.Unlock()
		return false
	}
	if x.held >= x.socks {
		x.mu.Unlock()
		x.s.c.exchangeBusy.Add(1)
		return false
	}
	c, err := net.ListenUDP(e.network, e.laddr)
	if err != nil {
		x.mu.Unlock()
		x.s.c.errors.Add(1)
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(x.wait))
	x.held++
	e.last, e.conn = e.conn, c
	x.mu.Unlock()
	return e.probe(c)
}

// closePorts closes the requester's ports.
func (e *exchange) closePorts() {
	x := e.x
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, c := range []*net.UDPConn{e.conn, e.last} {
		if c != nil {
			c.Close()
			x.held--
		}
	}
	e.conn, e.last = nil, nil
}

// refuse sends the refusal from c. When nothing came back for the first
// probe, the refusal is cut so that the two are no larger than the
// request; the rounds a requester answered each paid for their probe.
func (e *exchange) refuse(c *net.UDPConn) {
	x := e.x
	e.refused = true
	out := e.refusal
	if e.answered == 0 {
		var ok bool
		if out, ok = tftp.FitError(out, e.reqLen-len(probe)); !ok {
			return // the probe was all the request's size allowed
		}
		if len(out) < len(e.refusal) {
			x.s.c.truncated.Add(1)
		}
	}
	x.s.c.replies.Add(1)
	if _, err := c.WriteToUDPAddrPort(out, e.to); err != nil {
		x.s.c.replies.Add(^uint64(0))
		x.s.c.errors.Add(1)
	}
}

func (x *exchanges) now() int64 { return time.Since(x.start).Nanoseconds() }

// guessLike reports whether p could be an answer to a probe: a TFTP
// packet (the request again from tftp-hpa and BusyBox, an ACK from atftp,
// or any other opcode a forger may try). Only such a datagram counts on a
// round's port, so only such a datagram elsewhere is a try at one; anything else (a late DNS answer to the
// program that held the port before) is ignored, not taken for a guess.
func guessLike(p []byte) bool {
	return len(p) >= 4 && p[0] == 0 && p[1] >= tftp.OpRRQ && p[1] <= tftp.OpOACK
}

// await runs the rounds: it reads the current round's port until its wait
// ends, sends the next probe on each answer and the refusal after the last
// (or when the requester stops answering), then decides the sighting's
// proof and records it: exchange when every round was answered and no
// guess was seen anywhere from the hold before the first probe to now.
func (e *exchange) await() {
	x := e.x
	defer x.done(e)
	var buf [600]byte
	for {
		n, a, err := e.conn.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			break // the round's wait ended, or Shutdown ended it
		}
		from := netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		switch {
		case !guessLike(buf[:n]):
			// Not TFTP: it cannot be an answer, so it is no try at one
			// either (a late answer to whoever held the port before).
			x.s.c.stray.Add(1)
		case from == e.to:
			if e.refused {
				continue // its answer to the refusal (tftp-hpa ACKs it)
			}
			e.answered++
			e.answeredOn = e.conn
			if e.answered < x.rounds {
				if !e.next() {
					e.refuse(e.answeredOn)
				}
				continue
			}
			x.s.c.exchanged.Add(1)
			// The refusal goes now; the port stays open until the wait
			// ends, so that a spray is still seen on it.
			e.refuse(e.conn)
		case from.Addr() == e.to.Addr():
			// The requester's address from another port: not an answer
			// (it must come from the port the request did), but no guess
			// either: it knew the port.
			x.s.c.stray.Add(1)
		default:
			// Another address on the round's port: nobody else was told
			// it, so whoever sent this guessed.
			x.s.c.guesses.Add(1)
			x.guessed()
		}
	}
	if !e.refused {
		c := e.conn // the first round's, when nothing was answered
		if e.answeredOn != nil {
			c = e.answeredOn
		}
		e.refuse(c)
	}
	e.closePorts()
	switch {
	case e.answered >= x.rounds:
		if x.alarmed(e.sentAt) {
			x.s.c.withheld.Add(1)
		} else {
			e.ev.Proof = max(e.ev.Proof, evidence.ProofExchange)
		}
	case e.answered > 0:
		x.s.c.partial.Add(1)
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
		if e.conn != nil {
			_ = e.conn.SetReadDeadline(now)
		}
	}
	for _, c := range x.pool {
		c.Close()
	}
	x.mu.Unlock()
	x.wg.Wait()
}
