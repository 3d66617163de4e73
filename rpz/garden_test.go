package rpz

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"wormsink/signatures"
)

func TestClientIPOwner(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "32.7.2.0.192.rpz-client-ip",
		"10.0.0.1":             "32.1.0.0.10.rpz-client-ip",
		"::ffff:100.64.1.2":    "32.2.1.64.100.rpz-client-ip",
		"2001:db8::7":          "128.7.zz.db8.2001.rpz-client-ip",
		"2001:db8:0:1::":       "128.zz.1.0.db8.2001.rpz-client-ip",
		"::1":                  "128.1.zz.rpz-client-ip",
		"2001:db8:1:2:3:4:5:6": "128.6.5.4.3.2.1.db8.2001.rpz-client-ip",
	} {
		if got := ClientIPOwner(netip.MustParseAddr(in)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// The walled garden's zones: the allow zone's passthru rules, the garden
// zone's client-IP triggers following SetQuarantined, each change a new
// serial; additions by IXFR, removals as the whole zone.
func TestGardenZones(t *testing.T) {
	notice := []netip.Addr{netip.MustParseAddr("192.0.2.80"), netip.MustParseAddr("2001:db8::80")}
	f := start(t, Config{Notice: notice, Passthru: []string{"windowsupdate.com", "*.example.org"}}, sigYAML(10, "a.example", "evil.windowsupdate.com"))
	allow, err := xfr(t, f.addr, axfrMsg("allow.rpz.wormsink."), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(allow, "\n")
	for _, want := range []string{"windowsupdate.com.allow.rpz.wormsink.\t60\tIN\tCNAME\trpz-passthru.",
		"*.windowsupdate.com.allow.rpz.wormsink.\t60\tIN\tCNAME\trpz-passthru.", "*.example.org.allow.rpz.wormsink.\t60\tIN\tCNAME\trpz-passthru."} {
		if !strings.Contains(text, want) {
			t.Errorf("allow zone lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "\nexample.org.allow") {
		t.Errorf("*.example.org passes example.org itself:\n%s", text)
	}
	// A listed name below an allowed one is sinkholed in the allow zone
	// itself (it comes first), and follows the signatures.
	if !strings.Contains(text, "evil.windowsupdate.com.allow.rpz.wormsink.\t60\tIN\tA\t192.0.2.7") ||
		strings.Contains(text, "evil.windowsupdate.com.allow.rpz.wormsink.\t60\tIN\tCNAME") {
		t.Errorf("the listed evil.windowsupdate.com is not sinkholed in the allow zone:\n%s", text)
	}
	allowSerial := f.srv.allow.Load().serial
	f.write(t, sigYAML(11, "a.example"))
	waitFor(t, "a new allow zone", func() bool { return f.srv.allow.Load().serial != allowSerial })
	allow, err = xfr(t, f.addr, axfrMsg("allow.rpz.wormsink."), nil, "")
	if text = strings.Join(allow, "\n"); err != nil || strings.Contains(text, "evil.windowsupdate.com") || !strings.Contains(text, "*.windowsupdate.com") {
		t.Errorf("allow zone after the listed name left: %v\n%s", err, text)
	}
	// The signatures' zone is unchanged by the garden.
	if got, err := xfr(t, f.addr, axfrMsg("rpz.wormsink."), nil, ""); err != nil || !strings.Contains(strings.Join(got, "\n"), "a.example.rpz.wormsink.") {
		t.Fatalf("signature zone: %q %v", got, err)
	}

	serial := func() uint32 { return f.srv.garden.Load().serial }
	s0 := serial()
	f.srv.SetQuarantined([]netip.Addr{netip.MustParseAddr("100.64.0.7")})
	s1 := serial()
	if s1 == s0 {
		t.Fatal("no new serial for a new quarantine")
	}
	f.srv.SetQuarantined([]netip.Addr{netip.MustParseAddr("100.64.0.7")})
	if serial() != s1 {
		t.Error("a new serial without a change")
	}
	got, err := xfr(t, f.addr, ixfrMsg("garden.rpz.wormsink.", s0), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	text = strings.Join(got, "\n")
	if strings.Contains(text, "\tNS\t") || !strings.Contains(text, "32.7.0.64.100.rpz-client-ip.garden.rpz.wormsink.\t60\tIN\tA\t192.0.2.80") ||
		!strings.Contains(text, "32.7.0.64.100.rpz-client-ip.garden.rpz.wormsink.\t60\tIN\tAAAA\t2001:db8::80") {
		t.Fatalf("IXFR of an addition is not incremental with both notice addresses:\n%s", text)
	}
	f.srv.SetQuarantined(nil)
	s2 := serial()
	got, err = xfr(t, f.addr, ixfrMsg("garden.rpz.wormsink.", s1), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	text = strings.Join(got, "\n")
	if len(got) != 3 || !strings.Contains(text, "\tNS\t") || strings.Contains(text, "rpz-client-ip") || !strings.Contains(got[0], " "+strconv.FormatUint(uint64(s2), 10)+" ") {
		t.Fatalf("IXFR of a removal is not the whole (empty) zone at %d:\n%s", s2, text)
	}
	// Another zone name is refused.
	if _, err := xfr(t, f.addr, axfrMsg("other.rpz.wormsink."), nil, ""); err == nil {
		t.Error("AXFR of an unknown zone answered")
	}
}

// BenchmarkSetQuarantined is one change of a 10,000-address quarantine:
// the garden zone rebuilt and diffed for its journal.
func BenchmarkSetQuarantined(b *testing.B) {
	s, err := newServer(Config{Listen: "127.0.0.1:0", Notice: []netip.Addr{netip.MustParseAddr("192.0.2.80")}}, staticSource{}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	addrs := make([]netip.Addr, 10001)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.SetQuarantined(addrs[i%2 : 10000+i%2]) // one address out, one in
	}
}

type staticSource struct{}

func (staticSource) Current() *signatures.Set             { return &signatures.Set{} }
func (staticSource) Subscribe() (<-chan struct{}, func()) { return nil, func() {} }
