package dnsblock

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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

func TestUpstreamSocketsReusedIDsRandom(t *testing.T) {
	var mu sync.Mutex
	ports := map[string]int{}
	ids := map[uint16]bool{}
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		ports[w.RemoteAddr().String()]++
		ids[r.Id] = true
		mu.Unlock()
		answerA(w, r)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}, UpstreamSockets: 3}, newSource(t, testSigs), &evidencetest.Recorder{})
	c := &dns.Client{Timeout: 3 * time.Second}
	const n = 60
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion("n"+itoa(i)+".example.", dns.TypeA)
		m.Id = 4242 // the same client ID every time
		r, _, err := c.Exchange(m, s.UDPAddr().String())
		if err != nil || len(r.Answer) != 1 || r.Id != 4242 {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ports) != 3 {
		t.Errorf("upstream saw %d source ports for %d queries, want the 3 pooled sockets: %v", len(ports), n, ports)
	}
	if len(ids) < n-2 || ids[4242] && len(ids) < n {
		t.Errorf("upstream saw %d distinct IDs for %d queries", len(ids), n)
	}
}

func TestUpstreamSocketRotation(t *testing.T) {
	up := startUpstream(t, answerA)
	var strays atomic.Uint64
	u, err := newUpstream(up.addr, 1, &strays)
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	q := packQuery(t, "rot.example.", dns.TypeA, false)
	var qq query
	parseQuery(q, &qq, make([]byte, 256))
	first := u.udp[0].Load().c.LocalAddr().String()
	var buf []byte
	for i := 0; i < rotateAfter+1; i++ {
		buf, err = u.exchangeUDP(buf, q, qq.qEnd, time.Now().Add(2*time.Second))
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	if now := u.udp[0].Load().c.LocalAddr().String(); now == first {
		t.Errorf("socket not rotated after %d queries: still %s", rotateAfter+1, now)
	}
}

func TestParseUpstreamAndAllow(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1": "192.0.2.1:53", "192.0.2.1:5353": "192.0.2.1:5353", "2001:db8::1": "[2001:db8::1]:53",
		"[2001:db8::1]:54": "[2001:db8::1]:54", " 10.0.0.1 ": "10.0.0.1:53",
	} {
		if got, err := ParseUpstream(in); err != nil || got != want {
			t.Errorf("ParseUpstream(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "resolver.example", "1.2.3.4:0", "1.2.3.4:x"} {
		if _, err := ParseUpstream(bad); err == nil {
			t.Errorf("ParseUpstream(%q): no error", bad)
		}
	}
	got, err := ParseAllow([]string{"10.1.2.3/8", "192.0.2.7", "2001:db8::/32"})
	if err != nil || len(got) != 3 || got[0] != netip.MustParsePrefix("10.0.0.0/8") || got[1] != netip.MustParsePrefix("192.0.2.7/32") {
		t.Errorf("ParseAllow: %v %v", got, err)
	}
	if _, err := ParseAllow([]string{"10.0.0.0/33"}); err == nil {
		t.Error("ParseAllow accepted /33")
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
	s, err := New(Config{Listen: "256.0.0.1:0", Upstreams: []string{"127.0.0.1"}, SinkholeIPs: ips}, src, nil, zerologNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("bad listen address accepted")
	}
	// Listening twice on one port fails with the address in the error.
	a := startShim(t, Config{Upstreams: []string{"127.0.0.1:9"}}, src, nil)
	b, err := New(Config{Listen: a.UDPAddr().String(), Upstreams: []string{"127.0.0.1:9"}, SinkholeIPs: ips}, src, nil, zerologNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err == nil {
		t.Error("second listener on the same port started")
	}
}
