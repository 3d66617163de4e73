package dnsblock

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// tcpConn is one client TCP connection. Answers the shim makes itself are
// written at once; forwarded queries run concurrently, so a pipelining
// client (RFC 7766 §6.2.1.1) is not held up behind one slow upstream answer.
// Answers carry the query ID, so their order does not matter.
type tcpConn struct {
	c      net.Conn
	from   netip.AddrPort
	idle   time.Duration
	wmu    sync.Mutex
	out    []byte
	err    atomic.Bool
	busy   atomic.Int32 // forwarded queries in progress
	active atomic.Int64 // UnixNano of the connection's start or last answer
}

func (t *tcpConn) touch()                { t.active.Store(time.Now().UnixNano()) }
func (t *tcpConn) lastActive() time.Time { return time.Unix(0, t.active.Load()) }

func (t *tcpConn) write(resp []byte) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.c.SetWriteDeadline(time.Now().Add(t.idle))
	var err error
	if len(resp) <= 4096 {
		// One write of length and message, from a buffer kept per
		// connection: no allocation for the common answers.
		t.out = append(t.out[:0], 0, 0)
		binary.BigEndian.PutUint16(t.out, uint16(len(resp)))
		t.out = append(t.out, resp...)
		_, err = t.c.Write(t.out)
	} else {
		// A large answer is not copied: length and message in one writev.
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(resp)))
		bufs := net.Buffers{l[:], resp}
		_, err = bufs.WriteTo(t.c)
	}
	if err != nil {
		t.err.Store(true)
		t.c.SetReadDeadline(time.Now()) // stop the reader too
	}
}

// evict ends an idle connection to make room (RFC 7766 §6.2: a server
// short of connections closes the idle ones first). It is closed here, not
// by its reader, so its descriptor is free before the new one is served.
func (t *tcpConn) evict() {
	t.err.Store(true)
	t.c.Close()
}

// tcpConns is the registry of client TCP connections: at most max in all
// and per from one address. When full, the connection idle the longest
// (no query in progress, no answer for at least grace) makes room for the
// new one; with none idle the new one is closed. The grace keeps a flood of
// new connections from evicting each other before any is read.
type tcpConns struct {
	max, per int
	grace    time.Duration

	mu  sync.Mutex
	all map[*tcpConn]struct{}
	by  map[netip.Addr]int
}

// add registers t, naming an idle connection to evict for it; ok is false
// when there is no room.
func (r *tcpConns) add(t *tcpConn) (evict *tcpConn, ok bool) {
	a := t.from.Addr().Unmap()
	idleSince := time.Now().Add(-r.grace).UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	full := len(r.all) >= r.max
	mine := r.by[a] >= r.per
	if full || mine {
		// Evict within the client's own connections when it is the one
		// over its cap: one client cannot push out the others.
		var oldest *tcpConn
		for c := range r.all {
			if c.busy.Load() > 0 || c.err.Load() || c.active.Load() > idleSince || mine && c.from.Addr().Unmap() != a {
				continue
			}
			if oldest == nil || c.active.Load() < oldest.active.Load() {
				oldest = c
			}
		}
		if oldest == nil {
			return nil, false
		}
		r.drop(oldest)
		evict = oldest
	}
	r.all[t] = struct{}{}
	r.by[a]++
	return evict, true
}

// remove forgets t (its reader has ended); an evicted connection was
// forgotten already.
func (r *tcpConns) remove(t *tcpConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.all[t]; ok {
		r.drop(t)
	}
}

func (r *tcpConns) drop(t *tcpConn) {
	delete(r.all, t)
	a := t.from.Addr().Unmap()
	if r.by[a]--; r.by[a] <= 0 {
		delete(r.by, a)
	}
}

func (r *tcpConns) each(fn func(*tcpConn)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.all {
		fn(c)
	}
}

// len counts the registered connections.
func (r *tcpConns) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}
