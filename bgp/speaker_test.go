package bgp

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wormsink/internal/testutil"
)

func startSpeaker(t *testing.T, r *testutil.Router) *Speaker {
	s, err := New(Config{ASN: 65000, RouterID: netip.MustParseAddr("10.201.0.1"),
		Neighbors:   []Neighbor{{Addr: r.Addr, ASN: r.ASN}},
		Communities: []uint32{0xFFFF029A, 64512<<16 | 99},
		NextHops:    []netip.Addr{r.Local, r.Local6},
		Log:         zerolog.Nop(), ConnectRetry: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.WaitFor(t, 60*time.Second, "the BGP session", func() bool { return s.Stats().PeersUp == 1 })
	return s
}

func TestAnnounceToBIRD(t *testing.T) {
	r := testutil.StartBIRD(t, "wsbird", 65000)
	s := startSpeaker(t, r)
	s.Sync([]netip.Addr{netip.MustParseAddr("100.64.9.9"), netip.MustParseAddr("2001:db8:9::9")})
	d := r.WaitRoutes(t, false, "100.64.9.9/32", "2001:db8:9::9/128")
	t.Logf("announced to BIRD in %v", d)
	if out := r.Show(); !strings.Contains(out, "(65535,666)") || !strings.Contains(out, "(64512,99)") {
		t.Fatalf("communities missing at BIRD:\n%s", out)
	}
	if d > 2*time.Second {
		t.Errorf("announcement took %v (goal 2 s)", d)
	}
	s.Sync([]netip.Addr{netip.MustParseAddr("2001:db8:9::9")})
	d = r.WaitRoutes(t, true, "100.64.9.9/32")
	t.Logf("withdrawn at BIRD in %v", d)
	if !strings.Contains(r.Show(), "2001:db8:9::9/128") {
		t.Fatal("the /128 went with the /32")
	}
}

func TestAnnounceToFRR(t *testing.T) {
	r := testutil.StartFRR(t, "wsfrr", 65000, "100.64.8.8/32")
	s := startSpeaker(t, r)
	s.Sync([]netip.Addr{netip.MustParseAddr("100.64.8.8"), netip.MustParseAddr("2001:db8:8::8")})
	d := r.WaitRoutes(t, false, "100.64.8.8/32", "2001:db8:8::8/128")
	t.Logf("announced to FRR in %v", d)
	// FRR names 65535:666 "blackhole".
	if out := r.Show(); !strings.Contains(out, "blackhole") || !strings.Contains(out, "64512:99") {
		t.Fatalf("communities missing at FRR:\n%s", out)
	}
	s.Sync(nil)
	r.WaitRoutes(t, true, "100.64.8.8/32", "2001:db8:8::8/128")
	if st := s.Stats(); st.Announced != 0 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]Neighbor{
		"192.0.2.1@65001":         {Addr: netip.MustParseAddr("192.0.2.1"), ASN: 65001},
		"2001:db8::1@4200000000":  {Addr: netip.MustParseAddr("2001:db8::1"), ASN: 4200000000},
		"192.0.2.1:1179@1.10":     {Addr: netip.MustParseAddr("192.0.2.1"), ASN: 65546, Port: 1179},
		"[2001:db8::1]:179@64512": {Addr: netip.MustParseAddr("2001:db8::1"), ASN: 64512, Port: 179},
	} {
		got, err := ParseNeighbor(in)
		if err != nil || got != want {
			t.Errorf("ParseNeighbor(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"192.0.2.1", "192.0.2.1@0", "192.0.2.1@23456", "x@65000", "192.0.2.1@4294967296", "192.0.2.1:0@65000"} {
		if _, err := ParseNeighbor(bad); err == nil {
			t.Errorf("ParseNeighbor(%q) accepted", bad)
		}
	}
	for in, want := range map[string]uint32{"65535:666": 0xFFFF029A, "blackhole": 0xFFFF029A, "NO-EXPORT": 0xFFFFFF01, "0:1": 1} {
		if got, err := ParseCommunity(in); err != nil || got != want {
			t.Errorf("ParseCommunity(%q) = %x, %v", in, got, err)
		}
	}
	for _, bad := range []string{"65536:1", "1:65536", "666", "a:b", ""} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", bad)
		}
	}
	if FormatCommunity(0xFFFF029A) != "65535:666" {
		t.Error("FormatCommunity")
	}
}

func FuzzParseNeighbor(f *testing.F) {
	f.Add("192.0.2.1@65001")
	f.Add("[::1]:179@1.1")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNeighbor(s)
		if err == nil && (!n.Addr.IsValid() || n.ASN == 0) {
			t.Fatalf("%q: %+v", s, n)
		}
	})
}

func FuzzParseCommunity(f *testing.F) {
	f.Add("65535:666")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if err == nil && !strings.EqualFold(s, "blackhole") && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(s)), "no-") {
			if again, err := ParseCommunity(FormatCommunity(c)); err != nil || again != c {
				t.Fatalf("%q: %x does not round-trip", s, c)
			}
		}
	})
}
