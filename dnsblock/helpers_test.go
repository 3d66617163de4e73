package dnsblock

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/signatures"
)

const testSigs = `serial: 7
signatures:
  - id: testworm
    family: TestWorm
    domains:
      - worm.example
      - name: "*.wild.example"
      - name: nx.example
        action: nxdomain
        evidence: weak
      - name: nodata.example
        action: nodata
      - name: target.example
`

// source is a signatures.Source the tests swap by hand.
type source struct {
	p atomic.Pointer[signatures.Set]
}

func (s *source) Current() *signatures.Set { return s.p.Load() }

func newSource(t testing.TB, yaml string) *source {
	t.Helper()
	set, err := signatures.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s := &source{}
	s.p.Store(set)
	return s
}

// upstream is a miekg/dns server on 127.0.0.1 (UDP and TCP, same port)
// counting what it was asked.
type testUpstream struct {
	addr    string
	queries atomic.Int64
}

func startUpstream(t testing.TB, fn func(w dns.ResponseWriter, r *dns.Msg)) *testUpstream {
	t.Helper()
	u := &testUpstream{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		fn(w, r)
	})
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			if attempt < 10 {
				continue
			}
			t.Fatal(err)
		}
		u.addr = pc.LocalAddr().String()
		for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			go srv.ActivateAndServe()
			<-started
			t.Cleanup(func() { srv.Shutdown() })
		}
		return u
	}
}

// answerA answers every A query with 192.0.2.1, others with NODATA.
func answerA(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if r.Question[0].Qtype == dns.TypeA {
		rr, _ := dns.NewRR(r.Question[0].Name + " 300 IN A 192.0.2.1")
		m.Answer = append(m.Answer, rr)
	}
	w.WriteMsg(m)
}

// blackhole is a UDP socket that never answers: an upstream that is down
// without telling.
func blackhole(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func startShim(t testing.TB, cfg Config, src signatures.Source, rec evidence.Recorder) *Server {
	t.Helper()
	return startShimLog(t, cfg, src, rec, zerolog.Nop())
}

func startShimLog(t testing.TB, cfg Config, src signatures.Source, rec evidence.Recorder, log zerolog.Logger) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.SinkholeIPs == nil {
		cfg.SinkholeIPs = []netip.Addr{netip.MustParseAddr("192.0.2.66"), netip.MustParseAddr("2001:db8::66")}
	}
	s, err := New(cfg, src, rec, log)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	select {
	case <-s.Ready():
	case err := <-served:
		t.Fatalf("Serve: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v, want ErrServerClosed", err)
		}
	})
	return s
}

// ask sends one query and fails the test when no answer comes.
// clientWait is how long a test's client waits for an answer. It bounds a
// hang, not the shim: the shim answers every forwarded query by its own
// Config.Timeout (SERVFAIL at worst), so a client that gave up first would
// fail a test on a loaded machine for the shim's own deadline.
const clientWait = 20 * time.Second

func ask(t testing.TB, net_ string, addr netip.AddrPort, name string, qtype uint16, edit ...func(*dns.Msg)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	for _, e := range edit {
		e(m)
	}
	c := &dns.Client{Net: net_, Timeout: clientWait, UDPSize: 4096}
	r, _, err := c.Exchange(m, addr.String())
	if err != nil {
		t.Fatalf("%s %s %s: %v", net_, name, dns.TypeToString[qtype], err)
	}
	if r.Id != m.Id {
		t.Fatalf("answer id %d, query id %d", r.Id, m.Id)
	}
	return r
}

// askFrom sends over a UDP socket whose local port the caller learns.
func askFrom(t testing.TB, addr netip.AddrPort, name string, qtype uint16) (*dns.Msg, netip.AddrPort) {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: clientWait}
	conn, err := c.Dial(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := c.ExchangeWithConn(m, conn)
	if err != nil {
		t.Fatal(err)
	}
	return r, conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func zerologNop() zerolog.Logger { return zerolog.Nop() }
