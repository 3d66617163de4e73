package dnsblock

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// limiter is the one bound on forwarded queries in progress, UDP and TCP
// alike, with a cap on each client's share. When it is full, a new query
// may take the place of the oldest one that has waited longer than jostle
// (unbound's jostle-timeout does the same): slow names, which an attacker
// can ask for at will, cannot hold every slot while quick ones wait.
type limiter struct {
	max, per int
	jostle   time.Duration

	mu         sync.Mutex
	n          int
	by         map[netip.Addr]int
	head, tail *ticket // in progress, oldest first
}

// ticket is one forward in progress; ctx ends when it is jostled out.
type ticket struct {
	client     netip.Addr
	start      time.Time
	ctx        context.Context
	cancel     context.CancelFunc
	prev, next *ticket
	gone       bool // jostled: already off the list and the counts
}

func newLimiter(max, per int, jostle time.Duration) *limiter {
	return &limiter{max: max, per: per, jostle: jostle, by: make(map[netip.Addr]int)}
}

// acquire admits a forward for client, or says why not: over is true when
// the client already has its share in progress.
func (l *limiter) acquire(client netip.Addr, now time.Time) (t *ticket, over bool) {
	client = client.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by[client] >= l.per {
		return nil, true
	}
	if l.n >= l.max {
		o := l.head
		if o == nil || now.Sub(o.start) < l.jostle {
			return nil, false
		}
		l.unlink(o)
		o.gone = true
		o.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	t = &ticket{client: client, start: now, ctx: ctx, cancel: cancel}
	l.n++
	l.by[client]++
	if l.tail == nil {
		l.head, l.tail = t, t
	} else {
		t.prev, l.tail.next, l.tail = l.tail, t, t
	}
	return t, false
}

// release ends a forward.
func (l *limiter) release(t *ticket) {
	l.mu.Lock()
	if !t.gone {
		l.unlink(t)
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
