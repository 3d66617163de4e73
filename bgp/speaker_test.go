package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wormsink/internal/testutil"
)

// peer is a router started by a test in its own namespace.
type peer struct {
	ns    testutil.Netns
	show  func(t *testing.T) string // the router's view of its BGP routes
	local netip.Addr                // our address on the link
	addr  netip.Addr                // the router's
	asn   uint32
}

// link makes a namespace with a veth to ours: 10.201.N.1 (us) and .2, and
// fd00:201:N::1 / ::2.
func link(t *testing.T, prefix string, n int) (testutil.Netns, netip.Addr, netip.Addr) {
	ns := testutil.NewNetns(t, prefix)
	host := fmt.Sprintf("%sh%d", prefix, os.Getpid()%100000)
	testutil.Veth(t, ns, host, "r0",
		[]string{fmt.Sprintf("10.201.%d.1/30", n), fmt.Sprintf("fd00:201:%d::1/64", n)},
		[]string{fmt.Sprintf("10.201.%d.2/30", n), fmt.Sprintf("fd00:201:%d::2/64", n)})
	return ns, netip.MustParseAddr(fmt.Sprintf("10.201.%d.1", n)), netip.MustParseAddr(fmt.Sprintf("10.201.%d.2", n))
}

// startBIRD runs BIRD 2 in a namespace of its own, peering with us.
func startBIRD(t *testing.T) *peer {
	bird := testutil.Need(t, "bird")
	birdc := testutil.Need(t, "birdc")
	ns, local, addr := link(t, "wsbird", 1+os.Getpid()%200)
	dir := t.TempDir()
	sock := filepath.Join(dir, "bird.ctl")
	conf := filepath.Join(dir, "bird.conf")
	// BIRD needs the device protocol to know its interfaces, and explicit
	// import and export filters on eBGP channels (RFC 8212).
	os.WriteFile(conf, []byte(fmt.Sprintf(`log "%s/bird.log" all;
router id %s;
protocol device {}
protocol bgp wormsink {
	local %s as 65001;
	neighbor %s as 65000;
	ipv4 { import all; export none; };
	ipv6 { import all; export none; };
}
`, dir, addr, addr, local)), 0o644)
	cmd := ns.Command(bird, "-f", "-c", conf, "-s", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	show := func(t *testing.T) string {
		out, _ := ns.Command(birdc, "-s", sock, "show", "route", "all").CombinedOutput()
		return string(out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := ns.Command(birdc, "-s", sock, "show", "protocols", "all", "wormsink").CombinedOutput()
			log, _ := os.ReadFile(filepath.Join(dir, "bird.log"))
			t.Logf("BIRD protocol:\n%s\nBIRD log:\n%s", out, log)
		}
	})
	// birdc's exit status does not tell a missing socket from an answer:
	// its "ready." greeting does.
	testutil.WaitFor(t, 20*time.Second, "BIRD's control socket", func() bool {
		out, _ := ns.Command(birdc, "-s", sock, "show", "status").CombinedOutput()
		return strings.Contains(string(out), "ready.")
	})
	return &peer{ns: ns, show: show, local: local, addr: addr, asn: 65001}
}

// startFRR runs FRR's bgpd (without zebra) in a namespace of its own.
func startFRR(t *testing.T) *peer {
	bgpd := "/usr/lib/frr/bgpd"
	if _, err := os.Stat(bgpd); err != nil {
		t.Fatal("FRR is not installed: run `make deps` (scripts/deps.sh)")
	}
	vtysh := testutil.Need(t, "vtysh")
	ns, local, addr := link(t, "wsfrr", 1+(os.Getpid()+100)%200)
	// bgpd drops to the frr user (root is not in its vty group): its
	// directory must be reachable by that user, which t.TempDir is not.
	dir, err := os.MkdirTemp("", "wsfrr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	conf := filepath.Join(dir, "bgpd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`frr defaults traditional
hostname wsfrr
router bgp 65002
 bgp router-id %s
 no bgp ebgp-requires-policy
 neighbor %s remote-as 65000
 address-family ipv6 unicast
  neighbor %s activate
 exit-address-family
`, addr, local, local)), 0o644)
	cmd := ns.Command(bgpd, "-f", conf, "-i", filepath.Join(dir, "bgpd.pid"), "--vty_socket", dir, "-Z", "-u", "frr", "-g", "frr", "-l", addr.String(), "-z", filepath.Join(dir, "zserv.api"))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	show := func(t *testing.T) string {
		var all []byte
		for _, c := range []string{"show bgp ipv4 unicast", "show bgp ipv6 unicast", "show bgp ipv4 unicast 100.64.8.8/32"} {
			o, _ := ns.Command(vtysh, "--vty_socket", dir, "-c", c).CombinedOutput()
			all = append(all, o...)
		}
		return string(all)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bgpd output:\n%s", out)
		}
	})
	testutil.WaitFor(t, 20*time.Second, "FRR's bgpd vty", func() bool {
		o, _ := ns.Command(vtysh, "--vty_socket", dir, "-c", "show bgp summary").CombinedOutput()
		return strings.Contains(string(o), "65002") || strings.Contains(string(o), "BGP router identifier")
	})
	return &peer{ns: ns, show: show, local: local, addr: addr, asn: 65002}
}

func startSpeaker(t *testing.T, p *peer, n int) *Speaker {
	s, err := New(Config{ASN: 65000, RouterID: netip.MustParseAddr("10.201.0.1"),
		Neighbors:   []Neighbor{{Addr: p.addr, ASN: p.asn}},
		Communities: []uint32{0xFFFF029A, 64512<<16 | 99},
		NextHops:    []netip.Addr{p.local, netip.MustParseAddr(fmt.Sprintf("fd00:201:%d::1", n))},
		Log:         zerolog.Nop(), ConnectRetry: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func TestAnnounceToBIRD(t *testing.T) {
	p := startBIRD(t)
	n := int(p.addr.As4()[2])
	s := startSpeaker(t, p, n)
	testutil.WaitFor(t, 60*time.Second, "the BGP session with BIRD", func() bool { return s.Stats().PeersUp == 1 })
	start := time.Now()
	s.Sync([]netip.Addr{netip.MustParseAddr("100.64.9.9"), netip.MustParseAddr("2001:db8:9::9")})
	waitRoutes(t, p, "BIRD", "100.64.9.9/32", "2001:db8:9::9/128")
	t.Logf("announced to BIRD in %v", time.Since(start))
	out := p.show(t)
	if !strings.Contains(out, "(65535,666)") || !strings.Contains(out, "(64512,99)") {
		t.Fatalf("communities missing at BIRD:\n%s", out)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("announcement took %v (goal 2 s)", time.Since(start))
	}
	start = time.Now()
	s.Sync([]netip.Addr{netip.MustParseAddr("2001:db8:9::9")})
	testutil.WaitFor(t, 20*time.Second, "the withdrawal at BIRD", func() bool { return !strings.Contains(p.show(t), "100.64.9.9/32") })
	t.Logf("withdrawn at BIRD in %v", time.Since(start))
	if !strings.Contains(p.show(t), "2001:db8:9::9/128") {
		t.Fatal("the /128 went with the /32")
	}
}

func TestAnnounceToFRR(t *testing.T) {
	p := startFRR(t)
	n := int(p.addr.As4()[2])
	s := startSpeaker(t, p, n)
	testutil.WaitFor(t, 60*time.Second, "the BGP session with FRR", func() bool { return s.Stats().PeersUp == 1 })
	start := time.Now()
	s.Sync([]netip.Addr{netip.MustParseAddr("100.64.8.8"), netip.MustParseAddr("2001:db8:8::8")})
	waitRoutes(t, p, "FRR", "100.64.8.8/32", "2001:db8:8::8/128")
	t.Logf("announced to FRR in %v", time.Since(start))
	out := p.show(t)
	// FRR names 65535:666 "blackhole".
	if !strings.Contains(out, "blackhole") || !strings.Contains(out, "64512:99") {
		t.Fatalf("communities missing at FRR:\n%s", out)
	}
	s.Sync(nil)
	testutil.WaitFor(t, 20*time.Second, "the withdrawal at FRR", func() bool {
		out := p.show(t)
		return !strings.Contains(out, "100.64.8.8/32") && !strings.Contains(out, "2001:db8:8::8/128")
	})
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

var _ = exec.Command

// waitRoutes waits until the router shows every prefix, and shows what it
// has when it does not.
func waitRoutes(t *testing.T, p *peer, name string, prefixes ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := p.show(t)
		missing := ""
		for _, pfx := range prefixes {
			if !strings.Contains(out, pfx) {
				missing = pfx
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %s; it has:\n%s", name, missing, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
