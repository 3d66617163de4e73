package dnsblock

import (
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"wormsink/quarantine"
)

// setGarden is a Garden of fixed addresses and allowed suffixes, swapped
// whole as the quarantine engine's snapshot is.
type setGarden struct {
	q     atomic.Pointer[map[netip.Addr]bool]
	allow []string
}

func (g *setGarden) Quarantined(a netip.Addr) bool { return (*g.q.Load())[a] }
func (g *setGarden) Allowed(name string) bool {
	for _, a := range g.allow {
		if name == a || strings.HasSuffix(name, "."+a) {
			return true
		}
	}
	return false
}

func newSetGarden(addrs ...string) *setGarden {
	g := &setGarden{allow: []string{"windowsupdate.com", "support.isp.example", "apple.com"}}
	m := map[netip.Addr]bool{}
	for _, a := range addrs {
		m[netip.MustParseAddr(a)] = true
	}
	g.q.Store(&m)
	return g
}

var noticeIPs = []netip.Addr{netip.MustParseAddr("192.0.2.80"), netip.MustParseAddr("2001:db8::80")}

func TestWalledGarden(t *testing.T) {
	up := startUpstream(t, answerA)
	g := newSetGarden("127.0.0.1")
	s := startShim(t, Config{Upstreams: []string{up.addr}, Garden: g, NoticeIPs: noticeIPs}, newSource(t, testSigs), nil)
	addr := s.UDPAddr()

	// An ordinary name: the notice page, short TTL, the reason in the EDE.
	r := ask(t, "udp", addr, "www.example.org", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.80" || r.Answer[0].Header().Ttl != 30 {
		t.Fatalf("quarantined client, ordinary name: %v", r.Answer)
	}
	if !strings.Contains(r.String(), "quarantine") {
		t.Errorf("no EDE naming the quarantine: %s", r)
	}
	r = ask(t, "tcp", addr, "www.example.org", dns.TypeAAAA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::80" {
		t.Fatalf("AAAA: %v", r.Answer)
	}
	r = ask(t, "udp", addr, "www.example.org", dns.TypeMX)
	if len(r.Answer) != 0 || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("MX: NODATA expected, got %s", r)
	}
	// Allowed names are forwarded as usual.
	before := up.queries.Load()
	r = ask(t, "udp", addr, "download.windowsupdate.com", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() == "192.0.2.80" || up.queries.Load() != before+1 {
		t.Fatalf("allowed name not forwarded: %v", r.Answer)
	}
	// A captive-portal probe gets the notice page even under an allowed name.
	r = ask(t, "udp", addr, "captive.apple.com", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.80" {
		t.Fatalf("probe name: %v", r.Answer)
	}
	// The worm's own names are still sinkholed, not the notice page.
	r = ask(t, "udp", addr, "worm.example", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.66" {
		t.Fatalf("listed name: %v", r.Answer)
	}
	st := s.Stats()
	if st.Gardened != 4 || st.GardenPassed != 1 {
		t.Fatalf("gardened %d passed %d, want 4 and 1", st.Gardened, st.GardenPassed)
	}

	// Released: answers as usual again.
	empty := map[netip.Addr]bool{}
	g.q.Store(&empty)
	r = ask(t, "udp", addr, "www.example.org", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() == "192.0.2.80" {
		t.Fatalf("released client: %v", r.Answer)
	}
}

// The neighbour of a quarantined client is untouched.
func TestWalledGardenOtherClients(t *testing.T) {
	up := startUpstream(t, answerA)
	g := newSetGarden("127.0.0.2")
	s := startShim(t, Config{Upstreams: []string{up.addr}, Garden: g, NoticeIPs: noticeIPs}, newSource(t, testSigs), nil)
	r := ask(t, "udp", s.UDPAddr(), "www.example.org", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() == "192.0.2.80" {
		t.Fatalf("unquarantined client got the notice page: %v", r.Answer)
	}
	if s.Stats().Gardened != 0 {
		t.Fatal("counted")
	}
}

func TestWalledGardenNeedsNoticeIP(t *testing.T) {
	_, err := New(Config{Listen: "127.0.0.1:0", Upstreams: []string{"127.0.0.1:9"}, SinkholeIPs: noticeIPs, Garden: newSetGarden()}, newSource(t, testSigs), nil, zerologNop())
	if err != ErrNoNoticeIP {
		t.Fatalf("New without --notice-ip: %v", err)
	}
}

func TestWalledGardenAllocs(t *testing.T) {
	up := startUpstream(t, answerA)
	s := startShim(t, Config{Upstreams: []string{up.addr}, Garden: newSetGarden("127.0.0.1"), NoticeIPs: noticeIPs}, newSource(t, testSigs), nil)
	conn, err := net.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 512)
	q := packQuery(t, "www.example.org.", dns.TypeA, true)
	const n = 2000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(q); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := float64(after.Mallocs-before.Mallocs) / n; per > 0.1 {
		t.Errorf("%.3f allocations per walled-garden answer", per)
	}
	if s.Stats().Gardened < n {
		t.Fatalf("gardened %d", s.Stats().Gardened)
	}
}

// snapshotGarden is the quarantine engine's snapshot as a Garden.
type snapshotGarden struct{ s *quarantine.Snapshot }

func (g snapshotGarden) Quarantined(a netip.Addr) bool { _, ok := g.s.Lookup(a); return ok }
func (g snapshotGarden) Allowed(string) bool           { return false }

// The answer path with 10,000 clients in quarantine, against none: the
// quarantine costs the other clients' answers one map look-up.
func BenchmarkAnswerGarden(b *testing.B) {
	for _, tc := range []struct {
		name string
		n    int
	}{{"none", 0}, {"10k-quarantined", 10000}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := Config{Upstreams: []string{"127.0.0.1:9"}, SinkholeIPs: noticeIPs, CacheSize: 100}
			if tc.n > 0 {
				// The quarantine engine's own snapshot, as serve gives it.
				list := make([]quarantine.Entry, tc.n)
				for i := range list {
					list[i].Addresses = []netip.Addr{netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})}
				}
				cfg.Garden, cfg.NoticeIPs = snapshotGarden{quarantine.NewSnapshot(list)}, noticeIPs
			}
			cfg.setDefaults()
			srv, err := newServer(cfg, newSource(b, testSigs), nil, zerologNop())
			if err != nil {
				b.Fatal(err)
			}
			h := srv.h
			sc := newScratch()
			client := netip.MustParseAddrPort("10.200.0.1:5353")
			// An unlisted name: parse, policy, garden check, cache miss.
			q := packQuery(b, "www.example.org.", dns.TypeA, true)
			b.ReportAllocs()
			for b.Loop() {
				if _, fwd := h.answer(sc, q, client, false); !fwd {
					b.Fatal("not forwarded")
				}
			}
		})
	}
}
