package rpz

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the bounds on what clients of the primary can make it hold.
// A transfer holds a few envelopes of records (about 100 KB each) while it
// waits for its reader, so DefaultMaxTransfers bounds that memory to a few
// MB; a resolver fleet takes one transfer per secondary at a time.
const (
	DefaultMaxTransfers          = 32
	DefaultMaxTransfersPerClient = 2
	DefaultMaxConns              = 256
	DefaultMaxConnsPerClient     = 16
	DefaultWriteTimeout          = 10 * time.Second
)

// slots counts things in use, in all and per client address, against a cap
// on each.
type slots struct {
	max, per int

	mu sync.Mutex
	n  int
	by map[netip.Addr]int
}

func newSlots(max, per int) *slots {
	return &slots{max: max, per: per, by: make(map[netip.Addr]int)}
}

func (s *slots) take(a netip.Addr) bool {
	a = a.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= s.max || s.by[a] >= s.per {
		return false
	}
	s.n++
	s.by[a]++
	return true
}

func (s *slots) give(a netip.Addr) {
	a = a.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	if s.by[a]--; s.by[a] <= 0 {
		delete(s.by, a)
	}
}

func (s *slots) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// listener is the primary's TCP listener: a connection from outside
// --rpz-allow is reset at once, one past the caps closed at once, so
// neither holds a descriptor waiting for a query; every accepted one gets
// a write deadline on each write, so a reader that stops reading is let go.
type listener struct {
	net.Listener
	allowed  func(netip.Addr) bool
	conns    *slots
	timeout  time.Duration
	refused  *atomic.Uint64 // outside allow
	rejected *atomic.Uint64 // over a cap
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		a := ap.Addr().Unmap()
		if !l.allowed(a) {
			l.refused.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			continue
		}
		if !l.conns.take(a) {
			l.rejected.Add(1)
			c.Close()
			continue
		}
		return &deadlineConn{Conn: c, timeout: l.timeout, release: func() { l.conns.give(a) }}, nil
	}
}

// deadlineConn ends a write that makes no progress for timeout: a transfer
// to a reader that stopped reading fails instead of holding its records
// (and the zone version it streams) until the reader goes away.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	once    sync.Once
	release func()
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(b)
}

func (c *deadlineConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
