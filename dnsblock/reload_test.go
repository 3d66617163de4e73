package dnsblock

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// TestReloadUnderLoad swaps the signature set while clients query: every
// query is answered, and each answer and its evidence come from one set.
func TestReloadUnderLoad(t *testing.T) {
	setA := newSource(t, "serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains: [swap.example]\n").Current()
	setB := newSource(t, "serial: 2\nsignatures:\n  - id: b\n    family: B\n    domains:\n      - name: swap.example\n        action: nxdomain\n        evidence: weak\n").Current()
	src := &source{}
	src.p.Store(setA)
	up := startUpstream(t, answerA)
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 1000}, src, rec)

	stop := make(chan struct{})
	var swaps atomic.Int64
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				src.p.Store(setB)
			} else {
				src.p.Store(setA)
			}
			swaps.Add(1)
			time.Sleep(200 * time.Microsecond)
		}
	}()

	const clients, rounds = 8, 200
	var wg sync.WaitGroup
	var sink, nx, fwd atomic.Int64
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &dns.Client{Timeout: clientWait}
			conn, err := cl.Dial(s.UDPAddr().String())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			for i := range rounds {
				name := "swap.example."
				if i%2 == 1 {
					name = fmt.Sprintf("fwd%d-%d.example.", c, i%20)
				}
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeA)
				r, _, err := cl.ExchangeWithConn(m, conn)
				if err != nil {
					errs <- fmt.Errorf("client %d query %d %s: %w", c, i, name, err)
					return
				}
				switch {
				case name != "swap.example.":
					if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
						errs <- fmt.Errorf("forwarded %s: %v", name, r)
						return
					}
					fwd.Add(1)
				case r.Rcode == dns.RcodeNameError && len(r.Answer) == 0:
					nx.Add(1)
				case r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "192.0.2.66":
					sink.Add(1)
				default:
					errs <- fmt.Errorf("swap.example: answer from neither set: %v", r)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := sink.Load() + nx.Load() + fwd.Load(); got != clients*rounds {
		t.Fatalf("answers %d, want %d", got, clients*rounds)
	}
	t.Logf("swaps %d, sinkhole answers %d, nxdomain answers %d, forwarded %d", swaps.Load(), sink.Load(), nx.Load(), fwd.Load())
	if swaps.Load() < 10 {
		t.Errorf("only %d swaps during the load", swaps.Load())
	}
	// Evidence and answer come from the same set: set A's line is strong, B's weak.
	var a, b int64
	for _, e := range rec.Events() {
		switch {
		case e.Serial == 1 && e.Sig == "a" && e.Evidence == signatures.Strong:
			a++
		case e.Serial == 2 && e.Sig == "b" && e.Evidence == signatures.Weak:
			b++
		default:
			t.Errorf("mixed event %+v", e)
		}
	}
	if a != sink.Load() || b != nx.Load() {
		t.Errorf("events a=%d b=%d, answers sinkhole=%d nxdomain=%d", a, b, sink.Load(), nx.Load())
	}
}

// TestReloadListsCachedName: a name in the cache, found unlisted by the set
// in service, is sinkholed as soon as a new set lists it, spelled in any
// case, and served from the cache again when the set that did not list it
// comes back.
func TestReloadListsCachedName(t *testing.T) {
	without := newSource(t, "serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains: [other.example]\n").Current()
	with := newSource(t, "serial: 2\nsignatures:\n  - id: b\n    family: B\n    domains: [late.example]\n").Current()
	src := &source{}
	src.p.Store(without)
	up := startUpstream(t, answerA)
	s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 100}, src, nil)
	answer := func(name string) string {
		t.Helper()
		r := ask(t, "udp", s.UDPAddr(), name, dns.TypeA)
		if len(r.Answer) != 1 {
			t.Fatalf("%s: %v", name, r)
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	for range 3 { // forwarded, then cache hits checked against the set
		if got := answer("late.example."); got != "192.0.2.1" {
			t.Fatalf("unlisted: %s", got)
		}
	}
	if st := s.Stats(); st.CacheHits != 2 || st.Forwarded != 1 {
		t.Fatalf("before the reload: %+v", st)
	}
	src.p.Store(with)
	for _, name := range []string{"late.example.", "LATE.Example."} {
		if got := answer(name); got != "192.0.2.66" {
			t.Fatalf("%s listed after the reload: %s", name, got)
		}
	}
	src.p.Store(without)
	if got := answer("late.example."); got != "192.0.2.1" {
		t.Fatalf("unlisted again: %s", got)
	}
	if st := s.Stats(); st.Sinkholed != 2 || st.CacheHits != 3 || st.Forwarded != 1 {
		t.Errorf("after: %+v", st)
	}
}
