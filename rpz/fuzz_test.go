package rpz

import (
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/signatures"
)

// recorder is the ResponseWriter side of one request, as a DNS server
// would hand it to the handler (CoreDNS tests the same way).
type recorder struct {
	remote net.Addr
	msgs   []*dns.Msg
}

func (r *recorder) LocalAddr() net.Addr       { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr      { return r.remote }
func (r *recorder) WriteMsg(m *dns.Msg) error { r.msgs = append(r.msgs, m); return nil }
func (r *recorder) Write([]byte) (int, error) { return 0, nil }
func (r *recorder) Close() error              { return nil }
func (r *recorder) TsigStatus() error         { return nil }
func (r *recorder) TsigTimersOnly(bool)       {}
func (r *recorder) Hijack()                   {}

type fixedSource struct{ set *signatures.Set }

func (f fixedSource) Current() *signatures.Set             { return f.set }
func (f fixedSource) Subscribe() (<-chan struct{}, func()) { return nil, func() {} }

// FuzzRequest feeds arbitrary requests (as they unpack off the wire) to the
// handler, over UDP and TCP, from an allowed address: no panic, at most one
// answer over UDP, and every answer to a request that is not a transfer is
// one message.
func FuzzRequest(f *testing.F) {
	for _, m := range []*dns.Msg{axfrMsg("rpz.wormsink."), ixfrMsg("rpz.wormsink.", 1), ixfrMsg("rpz.wormsink.", 2)} {
		b, _ := m.Pack()
		f.Add(b, false)
		f.Add(b, true)
	}
	soa := new(dns.Msg)
	soa.SetQuestion("rpz.wormsink.", dns.TypeSOA)
	b, _ := soa.Pack()
	f.Add(b, false)
	set, err := signatures.Parse("f", []byte(sigYAML(2, "a.example", "*.w.example", "nx:n.example")))
	if err != nil {
		f.Fatal(err)
	}
	old, _ := signatures.Parse("f", []byte(sigYAML(1, "a.example", "b.example")))
	s, err := newServer(Config{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Sinkhole: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}, fixedSource{old}, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	s.zone.Store(s.zone.Load().successor(set, 4))
	f.Fuzz(func(t *testing.T, b []byte, tcp bool) {
		req := new(dns.Msg)
		if req.Unpack(b) != nil {
			return
		}
		w := &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}}
		if tcp {
			w.remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
		}
		s.serveDNS(w, req)
		if s.Stats().Panics != 0 {
			t.Fatal("handler panicked")
		}
		if !tcp && len(w.msgs) > 1 {
			t.Fatalf("%d UDP answers", len(w.msgs))
		}
		for _, m := range w.msgs {
			if _, err := m.Pack(); err != nil {
				t.Fatalf("answer does not pack: %v", err)
			}
		}
	})
}
