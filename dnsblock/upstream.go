package dnsblock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	errTimeout  = errors.New("upstream timed out")
	errUpClosed = errors.New("upstream pool closed")
	// errRefused: ICMP port unreachable came back; the caller fails over at
	// once instead of waiting out the attempt.
	errRefused  = errors.New("upstream port unreachable")
	errConnLost = errors.New("upstream closed the TCP connection")
	errCanceled = errors.New("query dropped")
)

// caseGiveUp is how many answers in a row may come back with the 0x20
// case pattern lost before the upstream is asked in the client's own
// spelling: some resolvers and middleboxes do not keep the case.
const caseGiveUp = 4

// upstream is one recursive resolver. Every UDP query goes out on a socket
// of its own, connected to the upstream, so the kernel gives each a random
// port from the whole ephemeral range and an off-path forger has port, ID
// and the 0x20 letter case to guess; the connected socket also hears ICMP
// port unreachable. TCP queries share a small pool of pipelined
// connections.
type upstream struct {
	addr   string
	raddr  *net.UDPAddr
	strays *atomic.Uint64
	closed atomic.Bool

	caseMiss atomic.Int32 // answers in a row that lost the 0x20 case

	// Health memory: after a failure the upstream goes to the back of the
	// line until downUntil, so one dead resolver does not cost every query
	// a timeout.
	fails     atomic.Int32
	downUntil atomic.Int64 // UnixNano

	pool tcpPool
}

func newUpstream(addr string, tcpConns int, tcpIdle time.Duration, strays *atomic.Uint64) (*upstream, error) {
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", addr, err)
	}
	u := &upstream{addr: addr, raddr: ra, strays: strays}
	u.pool = tcpPool{addr: addr, max: max(1, tcpConns), idle: tcpIdle, strays: strays}
	return u, nil
}

func (u *upstream) close() {
	u.closed.Store(true)
	u.pool.close()
}

// mixCase flips the letters of a wire name to random case (DNS 0x20).
func mixCase(name []byte) {
	var bits uint64
	for i, c := range name {
		if i%64 == 0 {
			bits = rand.Uint64()
		}
		if c|0x20 >= 'a' && c|0x20 <= 'z' {
			if bits&1 != 0 {
				name[i] = c ^ 0x20
			}
		}
		bits >>= 1
	}
}

// exchangeUDP sends msg (whose question ends at qEnd) and waits for the
// answer until deadline or ctx ends. The answer is written over dst with
// the client's ID and question spelling restored. size is the largest
// answer the query lets the upstream send (its EDNS size, or 512): the
// buffer is no larger, so a forward holds what the limiter counted.
func (u *upstream) exchangeUDP(ctx context.Context, dst, msg []byte, qEnd int, deadline time.Time, size int) ([]byte, error) {
	if u.closed.Load() {
		return dst, errUpClosed
	}
	c, err := net.DialUDP("udp", nil, u.raddr)
	if err != nil {
		return dst, fmt.Errorf("upstream %s: %w", u.addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	size = min(max(size, minUDPSize), maxMessage)
	if cap(dst) < size {
		dst = make([]byte, size)
	}
	q := make([]byte, len(msg))
	mix := u.caseMiss.Load() < caseGiveUp
	for try := 0; try < 2; try++ {
		copy(q, msg)
		id := uint16(rand.Uint32())
		binary.BigEndian.PutUint16(q, id)
		if mix {
			mixCase(q[headerLen : qEnd-4])
		}
		if _, err := c.Write(q); err != nil {
			return dst, u.udpErr(err)
		}
		if err := c.SetReadDeadline(deadline); err != nil {
			return dst, err
		}
		for {
			n, err := c.Read(dst[:size])
			if err != nil {
				if ctx.Err() != nil {
					return dst, errCanceled
				}
				return dst, u.udpErr(err)
			}
			r := dst[:n]
			if n < qEnd || binary.BigEndian.Uint16(r) != id || binary.BigEndian.Uint16(r[4:]) != 1 ||
				!sameQuestion(r[headerLen:qEnd], q[headerLen:qEnd]) {
				u.strays.Add(1) // late, or forged
				continue
			}
			if mix && string(r[headerLen:qEnd-4]) != string(q[headerLen:qEnd-4]) {
				// The case pattern was lost: a forger who guessed port and
				// ID, or an upstream that does not keep case. Ask once more
				// in the client's spelling; after caseGiveUp such answers in
				// a row, stop mixing for this upstream.
				u.strays.Add(1)
				u.caseMiss.Add(1)
				mix = false
				break
			}
			if mix {
				u.caseMiss.Store(0)
			}
			copy(r, msg[:2])
			copy(r[headerLen:qEnd], msg[headerLen:qEnd])
			return r, nil
		}
	}
	return dst, fmt.Errorf("upstream %s: %w", u.addr, errTimeout)
}

func (u *upstream) udpErr(err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("upstream %s: %w", u.addr, errRefused)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("upstream %s: %w", u.addr, errTimeout)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("upstream %s: %w", u.addr, errTimeout)
	}
	return fmt.Errorf("upstream %s: %w", u.addr, err)
}

// exchangeTCP sends msg over a pooled connection. When that connection
// turns out to be gone (the resolver closed it while idle, or restarted)
// the query is sent once more on a freshly dialled one.
func (u *upstream) exchangeTCP(ctx context.Context, dst, msg []byte, qEnd int, deadline time.Time) ([]byte, error) {
	for attempt := 0; attempt < 2; attempt++ {
		uc, fresh, err := u.pool.get(deadline, attempt > 0)
		if err != nil {
			return dst, fmt.Errorf("upstream %s: %w", u.addr, err)
		}
		out, err := uc.roundTrip(ctx, dst, msg, qEnd, deadline)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, errConnLost) || fresh || time.Now().After(deadline) {
			return dst, fmt.Errorf("upstream %s: %w", u.addr, err)
		}
	}
	return dst, fmt.Errorf("upstream %s: %w", u.addr, errConnLost)
}

// tcpPool holds at most max pipelined connections to one upstream. A
// connection idle for longer than idle is closed before it is reused:
// resolvers close idle TCP connections themselves (unbound and BIND after
// 30 s by default, unbound sooner when busy), and a query written into a
// connection the resolver is closing is lost.
type tcpPool struct {
	addr   string
	max    int
	idle   time.Duration
	strays *atomic.Uint64

	mu     sync.Mutex
	conns  []*upConn
	closed bool
	dials  atomic.Uint64
}

// pipelineDepth is how many queries one upstream connection carries at a
// time before the pool prefers opening another.
const pipelineDepth = 64

// get returns the least busy live connection, dialling one when all are
// busy and the pool has room, or when fresh is asked for.
func (p *tcpPool) get(deadline time.Time, fresh bool) (*upConn, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false, errUpClosed
	}
	now := time.Now()
	var best *upConn
	bestLoad := 0
	live := p.conns[:0]
	for _, c := range p.conns {
		load, ok := c.usable(now, p.idle)
		if !ok {
			c.shut()
			continue
		}
		live = append(live, c)
		if best == nil || load < bestLoad {
			best, bestLoad = c, load
		}
	}
	clear(p.conns[len(live):])
	p.conns = live
	if !fresh && best != nil && (bestLoad < pipelineDepth || len(p.conns) >= p.max) {
		return best, false, nil
	}
	if len(p.conns) >= p.max && best != nil {
		// Make room for the new one: the least busy leaves the pool and
		// closes once its last answer is in.
		p.remove(best)
		best.retire()
	}
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	p.dials.Add(1)
	c := &upConn{c: nc, pending: make(map[uint16]*tcpCall), last: now, strays: p.strays}
	go c.read()
	p.conns = append(p.conns, c)
	return c, true, nil
}

func (p *tcpPool) remove(c *upConn) {
	for i, x := range p.conns {
		if x == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			return
		}
	}
}

func (p *tcpPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.conns {
		c.shut()
	}
	p.conns = nil
}

// live counts the pooled connections (tests).
func (p *tcpPool) live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.conns {
		if _, ok := c.usable(time.Now(), p.idle); ok {
			n++
		}
	}
	return n
}

// upConn is one pipelined TCP connection to an upstream: queries are
// written as they come and answers matched by ID as they arrive, in any
// order (RFC 7766 §6.2.1.1).
type upConn struct {
	c      net.Conn
	wmu    sync.Mutex
	strays *atomic.Uint64

	mu       sync.Mutex
	pending  map[uint16]*tcpCall
	dead     bool
	retiring bool      // out of the pool: close when nothing is pending
	last     time.Time // when the last query finished
}

// retire takes the connection out of service once its pending answers are in.
func (c *upConn) retire() {
	c.mu.Lock()
	c.retiring = true
	c.mu.Unlock()
	c.settled()
}

// settled closes a retiring connection with nothing pending.
func (c *upConn) settled() {
	c.mu.Lock()
	shut := c.retiring && len(c.pending) == 0 && !c.dead
	if shut {
		c.dead = true
	}
	c.mu.Unlock()
	if shut {
		c.c.Close()
	}
}

type tcpCall struct {
	q    []byte // the question section as sent
	resp []byte
	err  error
	done chan struct{}
}

func (c *upConn) usable(now time.Time, idle time.Duration) (load int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead || len(c.pending) == 0 && now.Sub(c.last) > idle {
		return 0, false
	}
	return len(c.pending), true
}

// shut closes the connection; its reader fails what is pending.
func (c *upConn) shut() {
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
	c.c.Close()
}

// read hands answers to the queries waiting for them until the connection
// ends, then fails the rest with errConnLost.
func (c *upConn) read() {
	var l [2]byte
	for {
		if _, err := io.ReadFull(c.c, l[:]); err != nil {
			break
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.c, buf); err != nil {
			break
		}
		if n < headerLen {
			c.strays.Add(1)
			continue
		}
		id := binary.BigEndian.Uint16(buf)
		c.mu.Lock()
		call := c.pending[id]
		qEnd := 0
		if call != nil {
			qEnd = headerLen + len(call.q)
		}
		if call == nil || n < qEnd || binary.BigEndian.Uint16(buf[4:]) != 1 || !sameQuestion(buf[headerLen:qEnd], call.q) {
			c.mu.Unlock()
			c.strays.Add(1)
			continue
		}
		delete(c.pending, id)
		if len(c.pending) == 0 {
			c.last = time.Now()
		}
		c.mu.Unlock()
		call.resp = buf
		close(call.done)
		c.settled()
	}
	c.mu.Lock()
	c.dead = true
	for id, call := range c.pending {
		delete(c.pending, id)
		call.err = errConnLost
		close(call.done)
	}
	c.mu.Unlock()
	c.c.Close()
}

func (c *upConn) roundTrip(ctx context.Context, dst, msg []byte, qEnd int, deadline time.Time) ([]byte, error) {
	call := &tcpCall{q: msg[headerLen:qEnd], done: make(chan struct{})}
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return dst, errConnLost
	}
	var id uint16
	for {
		id = uint16(rand.Uint32())
		if _, busy := c.pending[id]; !busy {
			break
		}
	}
	c.pending[id] = call
	c.mu.Unlock()

	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	binary.BigEndian.PutUint16(buf[2:], id)
	c.wmu.Lock()
	c.c.SetWriteDeadline(deadline)
	_, err := c.c.Write(buf)
	c.wmu.Unlock()
	if err != nil {
		c.shut() // a half-written query leaves the stream unusable
		<-call.done
		return dst, errConnLost
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-call.done:
	case <-t.C:
		if c.cancel(id, call) {
			return dst, errTimeout
		}
		<-call.done
	case <-ctx.Done():
		if c.cancel(id, call) {
			return dst, errCanceled
		}
		<-call.done
	}
	if call.err != nil {
		return dst, call.err
	}
	copy(call.resp, msg[:2])
	return call.resp, nil // the reader's buffer is ours now
}

// cancel withdraws a call; false means the reader already took it.
func (c *upConn) cancel(id uint16, call *tcpCall) bool {
	c.mu.Lock()
	if c.pending[id] != call {
		c.mu.Unlock()
		return false
	}
	delete(c.pending, id)
	if len(c.pending) == 0 {
		c.last = time.Now()
	}
	c.mu.Unlock()
	c.settled()
	return true
}

// healthy reports whether the upstream is not in its penalty time.
func (u *upstream) healthy(now int64) bool { return u.downUntil.Load() <= now }

// failed records a failure; first is true when the upstream was healthy
// until now, so the caller logs the change once, not per query.
func (u *upstream) failed(now int64, memory time.Duration) (first bool) {
	u.downUntil.Store(now + int64(memory))
	return u.fails.Add(1) == 1
}

// succeeded records an answer; back is true when the upstream had failed.
func (u *upstream) succeeded() (back bool) {
	if u.fails.Load() == 0 {
		return false
	}
	u.downUntil.Store(0)
	return u.fails.Swap(0) != 0
}
