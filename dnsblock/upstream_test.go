package dnsblock

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wormsink/internal/evidencetest"

	"github.com/miekg/dns"
)

func TestMismatchedAnswerDropped(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		// First a forged answer: right ID, other question. Then the real one.
		bad := new(dns.Msg)
		bad.SetReply(r)
		bad.Question[0].Name = "evil.example."
		rr, _ := dns.NewRR("evil.example. 300 IN A 203.0.113.66")
		bad.Answer = []dns.RR{rr}
		w.WriteMsg(bad)
		answerA(w, r)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), &evidencetest.Recorder{})
	r := ask(t, "udp", s.UDPAddr(), "good.example", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("answer %v", r)
	}
	// The stray is counted by the reader, which may still be on it.
	for deadline := time.Now().Add(2 * time.Second); s.Stats().UpstreamStrays == 0; {
		if time.Now().After(deadline) {
			t.Fatal("forged answer not counted as stray")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestUpstreamPortsAndIDsRandom is defect 8: every forwarded query leaves
// from a port of its own (the old pool used 4 at a time), with a random ID
// and the question's letters in random case (0x20).
func TestUpstreamPortsAndIDsRandom(t *testing.T) {
	var mu sync.Mutex
	ports := map[string]int{}
	ids := map[uint16]bool{}
	spellings := map[string]bool{}
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		ports[w.RemoteAddr().String()]++
		ids[r.Id] = true
		spellings[r.Question[0].Name[:8]] = true
		mu.Unlock()
		answerA(w, r)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), &evidencetest.Recorder{})
	c := &dns.Client{Timeout: 3 * time.Second}
	const n = 60
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion("abcdefgh"+itoa(i)+".example.", dns.TypeA)
		m.Id = 4242 // the same client ID every time
		r, _, err := c.Exchange(m, s.UDPAddr().String())
		if err != nil || len(r.Answer) != 1 || r.Id != 4242 || r.Question[0].Name != m.Question[0].Name {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
		if !strings.EqualFold(r.Answer[0].Header().Name, m.Question[0].Name) {
			t.Fatalf("query %d: answer %v", i, r.Answer[0])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ports) < n-5 {
		t.Errorf("upstream saw %d source ports for %d queries: %v", len(ports), n, ports)
	}
	if len(ids) < n-2 || ids[4242] && len(ids) < n {
		t.Errorf("upstream saw %d distinct IDs for %d queries", len(ids), n)
	}
	if len(spellings) < n/2 {
		t.Errorf("upstream saw %d spellings of the same 8 letters in %d queries: no 0x20", len(spellings), n)
	}
}

// TestCaseNotKeptFallsBack: an upstream that answers in lower case
// whatever it was asked still gets its answers used, at first through a
// second try in the client's spelling, then without 0x20 at all.
func TestCaseNotKeptFallsBack(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		r.Question[0].Name = strings.ToLower(r.Question[0].Name)
		answerA(w, r)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), &evidencetest.Recorder{})
	for i := range 10 {
		r := ask(t, "udp", s.UDPAddr(), "Mixed"+itoa(i)+".Example", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Question[0].Name != "Mixed"+itoa(i)+".Example." {
			t.Fatalf("query %d: %v", i, r)
		}
	}
	if q := up.queries.Load(); q > 10+caseGiveUp {
		t.Errorf("upstream asked %d times for 10 names: the fallback does not stick", q)
	}
}

// TestQuestionTypeNotCaseFolded: an answer whose question type differs
// from the query's only in the 0x20 bit (TYPE65 for TYPE97) is not the
// answer to it.
func TestQuestionTypeNotCaseFolded(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Question[0].Qtype = 65
		rr, _ := dns.NewRR(r.Question[0].Name + " 300 IN TYPE65 \\# 2 0001")
		m.Answer = []dns.RR{rr}
		w.WriteMsg(m)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}, Timeout: 500 * time.Millisecond, AttemptTimeout: 500 * time.Millisecond}, newSource(t, testSigs), &evidencetest.Recorder{})
	r := ask(t, "udp", s.UDPAddr(), "t97.example", 97)
	if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Errorf("answer for TYPE65 taken for TYPE97: %v", r)
	}
	if s.Stats().UpstreamStrays == 0 {
		t.Error("no stray counted")
	}
}

func TestResolvConfUpstreams(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("# comment\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\n"), 0o644)
	got, err := ResolvConfUpstreams(p)
	if err != nil || len(got) != 2 || got[0] != "192.0.2.53:53" || got[1] != "[fe80::1]:53" {
		t.Errorf("got %v, %v", got, err)
	}
	os.WriteFile(p, []byte("search example\n"), 0o644)
	if _, err := ResolvConfUpstreams(p); err == nil {
		t.Error("no nameserver: no error")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	src := newSource(t, testSigs)
	ips := []netip.Addr{netip.MustParseAddr("192.0.2.66")}
	if _, err := New(Config{Listen: "127.0.0.1:0", SinkholeIPs: ips}, src, nil, zerologNop()); !errors.Is(err, ErrNoUpstream) {
		t.Errorf("no upstream: %v", err)
	}
	if _, err := New(Config{Listen: "127.0.0.1:0", Upstreams: []string{"127.0.0.1"}}, src, nil, zerologNop()); !errors.Is(err, ErrNoSinkholeIP) {
		t.Errorf("no sinkhole address: %v", err)
	}
	if _, err := New(Config{Listen: "127.0.0.1:0", Upstreams: []string{"name.example"}, SinkholeIPs: ips}, src, nil, zerologNop()); err == nil {
		t.Error("upstream by name accepted")
	}
	if _, err := New(Config{Listen: "256.0.0.1:0", Upstreams: []string{"127.0.0.1"}, SinkholeIPs: ips}, src, nil, zerologNop()); err == nil {
		t.Error("bad listen address accepted")
	}
	// Listening twice on one port fails in New, with the address in the
	// error.
	a := startShim(t, Config{Upstreams: []string{"127.0.0.1:9"}}, src, nil)
	if _, err := New(Config{Listen: a.UDPAddr().String(), Upstreams: []string{"127.0.0.1:9"}, SinkholeIPs: ips}, src, nil, zerologNop()); err == nil || !strings.Contains(err.Error(), a.UDPAddr().String()) {
		t.Errorf("second listener on the same port: %v", err)
	}
	// Shutdown before Serve gives the port back, and Serve then ends at once.
	b, err := New(Config{Listen: "127.0.0.1:0", Upstreams: []string{"127.0.0.1:9"}, SinkholeIPs: ips}, src, nil, zerologNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	c, err := New(Config{Listen: b.UDPAddr().String(), Upstreams: []string{"127.0.0.1:9"}, SinkholeIPs: ips}, src, nil, zerologNop())
	if err != nil {
		t.Fatalf("the port Shutdown released: %v", err)
	}
	c.Shutdown(context.Background())
}
