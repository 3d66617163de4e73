package dnsblock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

var (
	errTimeout  = errors.New("upstream timed out")
	errUpClosed = errors.New("upstream pool closed")
)

// upstream is one recursive resolver. UDP queries share a few connected
// sockets (each bound to a random ephemeral port by the kernel) and are
// matched to answers by a random ID and the question; TCP connections are
// kept idle for reuse.
type upstream struct {
	addr   string
	udp    []atomic.Pointer[udpSock]
	next   atomic.Uint32
	idle   chan net.Conn
	strays *atomic.Uint64
	closed atomic.Bool

	// Health memory: after a failure the upstream goes to the back of the
	// line until downUntil, so one dead resolver does not cost every query
	// a timeout.
	fails     atomic.Int32
	downUntil atomic.Int64 // UnixNano

	dialer net.Dialer
}

type udpSock struct {
	c       *net.UDPConn
	mu      sync.Mutex
	pending map[uint16]*call
	closed  bool
	strays  *atomic.Uint64
	uses    atomic.Uint32
}

// rotateAfter is how many queries a UDP socket carries before a new one,
// on a new random port, takes its place: a long-lived port would leave
// only the 16-bit ID for an off-path forger to guess.
const rotateAfter = 2048

// call is one query waiting for its answer.
type call struct {
	q    []byte // the query as sent (our ID)
	qEnd int
	resp []byte
	done chan struct{}
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func newUpstream(addr string, socks int, strays *atomic.Uint64) (*upstream, error) {
	u := &upstream{addr: addr, idle: make(chan net.Conn, 16), udp: make([]atomic.Pointer[udpSock], socks), strays: strays}
	for i := range u.udp {
		s, err := u.dialUDP()
		if err != nil {
			u.close()
			return nil, err
		}
		u.udp[i].Store(s)
	}
	return u, nil
}

func (u *upstream) dialUDP() (*udpSock, error) {
	c, err := net.Dial("udp", u.addr)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.addr, err)
	}
	s := &udpSock{c: c.(*net.UDPConn), pending: make(map[uint16]*call), strays: u.strays}
	go s.read()
	return s, nil
}

// sock picks the next UDP socket, replacing it first when it has carried
// rotateAfter queries. The old one keeps reading until its last answers
// are due, then closes.
func (u *upstream) sock(grace time.Duration) *udpSock {
	slot := &u.udp[u.next.Add(1)%uint32(len(u.udp))]
	s := slot.Load()
	if s.uses.Add(1) != rotateAfter || u.closed.Load() {
		return s
	}
	ns, err := u.dialUDP()
	if err != nil {
		return s // keep the old port rather than fail the query
	}
	slot.Store(ns)
	time.AfterFunc(grace, s.close)
	if u.closed.Load() {
		ns.close() // close raced with the rotation
	}
	return ns
}

func (s *udpSock) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.c.Close()
}

func (u *upstream) close() {
	u.closed.Store(true)
	for i := range u.udp {
		if s := u.udp[i].Load(); s != nil {
			s.close()
		}
	}
	for {
		select {
		case c := <-u.idle:
			c.Close()
		default:
			return
		}
	}
}

// read hands answers to the calls waiting for them. An answer with an
// unknown ID or a question that differs from the query is dropped: it is
// late, or forged.
func (s *udpSock) read() {
	buf := make([]byte, 65535)
	for {
		n, err := s.c.Read(buf)
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP port unreachable and the like: the caller times out or fails over
		}
		if n < headerLen {
			s.strays.Add(1)
			continue
		}
		id := binary.BigEndian.Uint16(buf)
		s.mu.Lock()
		c := s.pending[id]
		if c == nil || n < c.qEnd || binary.BigEndian.Uint16(buf[4:]) != 1 || !equalFoldBytes(buf[headerLen:c.qEnd], c.q[headerLen:c.qEnd]) {
			s.mu.Unlock()
			s.strays.Add(1)
			continue
		}
		delete(s.pending, id)
		s.mu.Unlock()
		c.resp = append(c.resp[:0], buf[:n]...)
		c.done <- struct{}{}
	}
}

// exchangeUDP sends msg (whose question ends at qEnd) and waits for the
// answer until deadline. The answer is appended to dst with the ID as sent
// by the client restored.
func (u *upstream) exchangeUDP(dst, msg []byte, qEnd int, deadline time.Time) ([]byte, error) {
	s := u.sock(time.Until(deadline) + time.Second)
	c := callPool.Get().(*call)
	defer callPool.Put(c)
	c.q = append(c.q[:0], msg...)
	c.qEnd = qEnd
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return dst, errUpClosed
	}
	var id uint16
	for {
		id = uint16(rand.Uint32())
		if _, busy := s.pending[id]; !busy {
			break
		}
	}
	binary.BigEndian.PutUint16(c.q, id)
	s.pending[id] = c
	s.mu.Unlock()

	if _, err := s.c.Write(c.q); err != nil {
		if !s.cancel(id, c) {
			<-c.done
		}
		return dst, fmt.Errorf("upstream %s: %w", u.addr, err)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		if s.cancel(id, c) {
			return dst, errTimeout
		}
		<-c.done // the reader claimed it just now
	}
	dst = append(dst[:0], c.resp...)
	copy(dst, msg[:2])
	return dst, nil
}

// cancel withdraws a call; false means the reader already took it.
func (s *udpSock) cancel(id uint16, c *call) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[id] == c {
		delete(s.pending, id)
		return true
	}
	return false
}

// exchangeTCP sends msg over a reused or new TCP connection. A reused
// connection the resolver has closed in the meantime costs one retry.
func (u *upstream) exchangeTCP(dst, msg []byte, qEnd int, deadline time.Time) ([]byte, error) {
	for attempt := 0; attempt < 2; attempt++ {
		var conn net.Conn
		reused := false
		select {
		case conn = <-u.idle:
			reused = true
		default:
			d := u.dialer
			d.Deadline = deadline
			c, err := d.Dial("tcp", u.addr)
			if err != nil {
				return dst, fmt.Errorf("upstream %s: %w", u.addr, err)
			}
			conn = c
		}
		out, err := u.roundTripTCP(conn, dst, msg, qEnd, deadline)
		if err == nil {
			select {
			case u.idle <- conn:
			default:
				conn.Close()
			}
			return out, nil
		}
		conn.Close()
		if !reused || time.Now().After(deadline) {
			return dst, fmt.Errorf("upstream %s: %w", u.addr, err)
		}
	}
	return dst, fmt.Errorf("upstream %s: %w", u.addr, errTimeout)
}

func (u *upstream) roundTripTCP(conn net.Conn, dst, msg []byte, qEnd int, deadline time.Time) ([]byte, error) {
	if err := conn.SetDeadline(deadline); err != nil {
		return dst, err
	}
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(buf[2:], id)
	if _, err := conn.Write(buf); err != nil {
		return dst, err
	}
	for {
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return dst, err
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		if cap(dst) < n {
			dst = make([]byte, n)
		}
		dst = dst[:n]
		if _, err := io.ReadFull(conn, dst); err != nil {
			return dst, err
		}
		if n >= qEnd && binary.BigEndian.Uint16(dst) == id && binary.BigEndian.Uint16(dst[4:]) == 1 &&
			equalFoldBytes(dst[headerLen:qEnd], msg[headerLen:qEnd]) {
			copy(dst, msg[:2])
			return dst, nil
		}
		// Not ours (a late answer on a reused connection): keep reading.
	}
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
