package dnsblock

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// limiter is the one bound on forwarded queries in progress, UDP and TCP
// alike, with a cap on each client's share. It counts them, and the bytes
// they hold (the query, its copy for the upstream, room for the answer, the
// goroutine), each against a total and a per-client cap: a few large
// queries, or answers a client does not read, cannot hold more memory than
// the byte budget however few they are. When the count is full, a new
// query may take the place of the oldest one that has waited longer than
// jostle (unbound's jostle-timeout does the same): slow names, which an
// attacker can ask for at will, cannot hold every slot while quick ones
// wait. A query over the byte budget is refused; the oldest past jostle is
// cancelled, so its bytes come back soon.
type limiter struct {
	max, per           int
	maxBytes, perBytes int
	jostle             time.Duration

	mu         sync.Mutex
	n, bytes   int
	by         map[netip.Addr]int
	byBytes    map[netip.Addr]int
	head, tail *ticket // in progress, oldest first
}

// ticket is one forward in progress; ctx ends when it is jostled out.
type ticket struct {
	client     netip.Addr
	start      time.Time
	bytes      int
	ctx        context.Context
	cancel     context.CancelFunc
	prev, next *ticket
	gone       bool // jostled: already off the list and the counts (not the bytes)
}

// refusal says why acquire gave no ticket.
type refusal uint8

const (
	admitted    refusal = iota
	full                // every slot taken, none old enough to jostle
	clientShare         // the client has its share of slots or bytes in progress
	overBudget          // the bytes in progress would pass the budget
)

func newLimiter(max, per, maxBytes, perBytes int, jostle time.Duration) *limiter {
	return &limiter{max: max, per: per, maxBytes: maxBytes, perBytes: perBytes, jostle: jostle,
		by: make(map[netip.Addr]int), byBytes: make(map[netip.Addr]int)}
}

// acquire admits a forward for client that will hold size bytes, or says
// why not.
func (l *limiter) acquire(client netip.Addr, now time.Time, size int) (*ticket, refusal) {
	client = client.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by[client] >= l.per || l.byBytes[client]+size > l.perBytes {
		return nil, clientShare
	}
	if l.bytes+size > l.maxBytes {
		if o := l.head; o != nil && now.Sub(o.start) >= l.jostle {
			l.unlink(o)
			o.gone = true
			o.cancel()
		}
		return nil, overBudget
	}
	if l.n >= l.max {
		o := l.head
		if o == nil || now.Sub(o.start) < l.jostle {
			return nil, full
		}
		l.unlink(o)
		o.gone = true
		o.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &ticket{client: client, start: now, bytes: size, ctx: ctx, cancel: cancel}
	l.n++
	l.by[client]++
	l.bytes += size
	l.byBytes[client] += size
	if l.tail == nil {
		l.head, l.tail = t, t
	} else {
		t.prev, l.tail.next, l.tail = l.tail, t, t
	}
	return t, admitted
}

// release ends a forward: its slot (unless jostled) and its bytes, which
// it held until now even when jostled.
func (l *limiter) release(t *ticket) {
	l.mu.Lock()
	if !t.gone {
		l.unlink(t)
	}
	l.bytes -= t.bytes
	if l.byBytes[t.client] -= t.bytes; l.byBytes[t.client] <= 0 {
		delete(l.byBytes, t.client)
	}
	l.mu.Unlock()
	t.cancel()
}

// unlink takes t off the list and the counts (l.mu held).
func (l *limiter) unlink(t *ticket) {
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		l.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		l.tail = t.prev
	}
	t.prev, t.next = nil, nil
	l.n--
	if l.by[t.client]--; l.by[t.client] <= 0 {
		delete(l.by, t.client)
	}
}

// inFlightBytes is what the forwards in progress hold.
func (l *limiter) inFlightBytes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}

// inProgress counts the forwards in progress (tests, stats).
func (l *limiter) inProgress() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// flights merges identical queries in progress into one upstream query:
// a burst of the same uncached name costs the upstream one question.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done      chan struct{}
	resp      []byte // the upstream's answer; nil when none came
	followers int    // under flights.mu
}

// join returns the flight for key and whether the caller leads it (asks
// the upstream and must call land).
func (f *flights) join(key []byte) (*flight, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.m[bstr(key)]; fl != nil {
		fl.followers++
		return fl, false
	}
	if f.m == nil {
		f.m = make(map[string]*flight)
	}
	fl := &flight{done: make(chan struct{})}
	f.m[string(key)] = fl
	return fl, true
}

// land publishes the leader's answer (copied, when anyone waits for it) to
// the followers.
func (f *flights) land(key []byte, fl *flight, resp []byte) {
	f.mu.Lock()
	delete(f.m, bstr(key))
	waiting := fl.followers > 0
	f.mu.Unlock()
	if resp != nil && waiting {
		fl.resp = append([]byte(nil), resp...)
	}
	close(fl.done)
}
