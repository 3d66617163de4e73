package dnsblock

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"wormsink/internal/evidencetest"
)

// The byte budget: bytes are taken and given back per client and in
// total, a client past its share or a query past the total is refused
// with the reason, and a jostled forward frees its slot at once but its
// bytes only when it ends (until then they are still held).
func TestLimiterByteBudget(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	now := time.Now()
	l := newLimiter(100, 100, 1000, 600, time.Second)
	t1, why := l.acquire(a, now, 500)
	if t1 == nil || why != admitted {
		t.Fatalf("first: %v", why)
	}
	if _, why := l.acquire(a, now, 200); why != clientShare {
		t.Fatalf("past the client's share: %v, want clientShare", why)
	}
	t2, why := l.acquire(b, now, 400)
	if t2 == nil {
		t.Fatalf("second client: %v", why)
	}
	if _, why := l.acquire(b, now, 200); why != overBudget {
		t.Fatalf("past the total: %v, want overBudget", why)
	}
	// Past the total with the oldest older than the jostle time: it is
	// cancelled, but its bytes stay counted until it ends.
	if _, why := l.acquire(b, now.Add(2*time.Second), 200); why != overBudget || t1.ctx.Err() == nil {
		t.Fatalf("%v, oldest cancelled %v", why, t1.ctx.Err())
	}
	if l.inFlightBytes() != 900 || l.inProgress() != 1 {
		t.Fatalf("bytes %d, slots %d after the jostle; want 900 and 1", l.inFlightBytes(), l.inProgress())
	}
	l.release(t1)
	l.release(t2)
	if l.inFlightBytes() != 0 || l.inProgress() != 0 || len(l.byBytes) != 0 || len(l.by) != 0 {
		t.Fatalf("after release: bytes %d, slots %d, %v %v", l.inFlightBytes(), l.inProgress(), l.byBytes, l.by)
	}
}

// quietUpstream is a TCP upstream that answers every query at once except
// those for names starting "slow", which it reads and never answers.
func quietUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				var l [2]byte
				for {
					if _, err := io.ReadFull(c, l[:]); err != nil {
						return
					}
					b := make([]byte, binary.BigEndian.Uint16(l[:]))
					if _, err := io.ReadFull(c, b); err != nil {
						return
					}
					m := new(dns.Msg)
					if m.Unpack(b) != nil || len(m.Question) != 1 || strings.HasPrefix(strings.ToLower(m.Question[0].Name), "slow") {
						continue
					}
					r := new(dns.Msg)
					r.SetReply(m)
					rr, _ := dns.NewRR(m.Question[0].Name + " 60 IN A 198.51.100.1")
					r.Answer = []dns.RR{rr}
					out, _ := r.Pack()
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// Pipelined 60 KB queries over TCP to an upstream that never answers them
// hold no more than the byte budget (the ones past it get SERVFAIL at
// once, nothing of them kept), and another client still gets its answers.
func TestLargeQueriesHeldToByteBudget(t *testing.T) {
	const budget = 2 << 20
	s := startShim(t, Config{Upstreams: []string{quietUpstream(t)}, MaxInflightBytes: budget, MaxInflightBytesPerClient: budget / 4, Timeout: 3 * time.Second, AttemptTimeout: 3 * time.Second},
		newSource(t, testSigs), &evidencetest.Recorder{})
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			peak.Store(max(peak.Load(), int64(s.InflightBytes())))
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	// Eight clients, each two connections of 16 pipelined 60 KB queries.
	var conns []net.Conn
	for i := range 16 {
		c, err := dialFrom(fmt.Sprintf("127.0.0.%d", 2+i/2), s.TCPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		var batch []byte
		for j := range 16 {
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("slow%d-%d.example.", i, j), dns.TypeTXT)
			m.SetEdns0(4096, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, 60<<10)})
			b, _ := m.Pack()
			batch = append(batch, binary.BigEndian.AppendUint16(nil, uint16(len(b)))...)
			batch = append(batch, b...)
		}
		go c.Write(batch)
	}
	// The queries past the budget are answered SERVFAIL at once.
	var servfails atomic.Int64
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			dc := &dns.Conn{Conn: c}
			c.SetReadDeadline(time.Now().Add(2 * time.Second)) // before the upstream timeout: only the refused ones
			for {
				r, err := dc.ReadMsg()
				if err != nil {
					return
				}
				if r.Rcode == dns.RcodeServerFailure {
					servfails.Add(1)
				}
			}
		}()
	}
	readers.Wait()
	st := s.Stats()
	if st.BudgetLimited == 0 || st.ClientLimited == 0 || servfails.Load() == 0 {
		t.Fatalf("no query refused for the budget: %+v, %d SERVFAIL", st, servfails.Load())
	}
	// Another client is answered meanwhile: like any stub it asks again
	// after a SERVFAIL, and by then the oldest forwards, cancelled for it
	// (they are past the jostle time), have given their bytes back.
	c, err := dialFrom("127.0.0.100", s.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	answered := false
	for try := 0; try < 20 && !answered; try++ {
		if try > 0 {
			time.Sleep(100 * time.Millisecond) // a stub's retry interval
		}
		r, err := tcpQuery(c, "fast.example", dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		answered = len(r.Answer) == 1
	}
	if !answered {
		t.Fatal("another client is not answered during the load")
	}
	close(stop)
	wg.Wait()
	if p := peak.Load(); p > budget || p == 0 {
		t.Fatalf("forwards held %d bytes at most, budget %d", p, budget)
	}
	// Everything is given back once the upstream's time is up.
	for deadline := time.Now().Add(20 * time.Second); s.InflightBytes() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still held after the load", s.InflightBytes())
		}
	}
	t.Logf("%d SERVFAIL at once, %d refused for the budget, %d for the client's share, peak %d bytes", servfails.Load(), st.BudgetLimited, st.ClientLimited, peak.Load())
}

// A UDP forward reads its answer into a buffer of the client's EDNS size,
// not 64 KB: what the limiter counts is what it holds.
func TestUDPAnswerBufferSizedByEDNS(t *testing.T) {
	up := startUpstream(t, answerA)
	var strays atomic.Uint64
	u, err := newUpstream(up.addr, 1, time.Second, &strays)
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeA)
	m.SetEdns0(1232, false)
	msg, _ := m.Pack()
	var q query
	var name [256]byte
	if err := parseQuery(msg, &q, name[:]); err != nil {
		t.Fatal(err)
	}
	resp, err := u.exchangeUDP(context.Background(), nil, msg, q.qEnd, time.Now().Add(2*time.Second), q.udpLimit())
	if err != nil {
		t.Fatal(err)
	}
	if cap(resp) != 1232 {
		t.Fatalf("answer buffer of %d bytes, want the client's 1232", cap(resp))
	}
}
